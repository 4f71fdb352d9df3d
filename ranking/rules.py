"""Merchandising rules: pins, boosts and blocks, each optionally limited to a surface and a time window.

A rules file is TOML with three arrays of tables; every field but the target is optional:

    [[pin]]                      # show this item at this 0-based position
    key = "bananas"              # the item key: suggestion text, or "product:<id>"
    position = 0
    surface = "suggest"          # "suggest" | "search"; omitted: both
    start = 2024-11-20T00:00:00  # window, TOML datetimes or ISO strings; end is exclusive
    end = "2024-11-28T00:00:00"
    hours = [6, 11]              # and daily, from 06:00 to 11:00 (end exclusive; [22, 2] wraps midnight)

    [[boost]]                    # exactly one of key / aisle / brand
    aisle = 24
    multiply = 1.2               # value * multiply + add, applied in rule order
    add = 0.0

    [[block]]                    # exactly one of term / product
    term = "energy drink"

Naive datetimes are wall-clock times in `now`'s zone; aware ones are instants (and then `now` must
be aware too). Errors name the file, the rule (`pin[2]`, 0-based) and the field.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import MISSING, dataclass, fields
from datetime import date, datetime, time
from pathlib import Path

from suggest.errors import DataError
from suggest.events import SURFACES
from suggest.text import fold_key, normalize

__all__ = ["Window", "Pin", "Boost", "Block", "Rules", "load_rules", "term_key"]


def term_key(text: str) -> str:
    """The form blocked terms and shown text are compared in: normalised, plurals folded."""
    return fold_key(normalize(text))


def _when(name: str, value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):  # a TOML date: from its midnight
        return datetime.combine(value, time())
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name}: expected an ISO datetime, got {value!r}")


def _surface(value: object) -> None:
    if value is not None and value not in SURFACES:
        raise ValueError(f"surface: expected one of {SURFACES} or omitted, got {value!r}")


def _int(name: str, value: object, low: int, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: expected an integer in {low}..{high}, got {value!r}")


@dataclass(frozen=True)
class Window:
    """When a rule is in force; every part left as None is unbounded."""

    start: datetime | None = None       # in force from this instant
    end: datetime | None = None         # until this one (exclusive)
    hours: tuple[int, int] | None = None  # and daily within [from, to) hours; from > to wraps midnight

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _when("start", self.start))
        object.__setattr__(self, "end", _when("end", self.end))
        if self.start and self.end and (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError(f"end: mixes a naive and an aware datetime with start, got {self.end!r}")
        if self.start and self.end and self.end <= self.start:
            raise ValueError(f"end: must be after start {self.start.isoformat()}, got {self.end.isoformat()}")
        if self.hours is not None:
            if not isinstance(self.hours, (list, tuple)) or len(self.hours) != 2:
                raise ValueError(f"hours: expected [from, to], got {self.hours!r}")
            for h in self.hours:
                _int("hours", h, 0, 24)
            if self.hours[0] == self.hours[1]:
                raise ValueError(f"hours: from and to must differ, got {list(self.hours)}")
            object.__setattr__(self, "hours", tuple(self.hours))

    @property
    def always(self) -> bool:
        return self.start is None and self.end is None and self.hours is None

    def contains(self, now: datetime) -> bool:
        for edge, inside in ((self.start, lambda t: now >= t), (self.end, lambda t: now < t)):
            if edge is not None:
                if edge.tzinfo is not None and now.tzinfo is None:
                    raise ValueError(f"now: must be timezone-aware for a rule window at {edge.isoformat()}")
                if not inside(edge if edge.tzinfo is not None else edge.replace(tzinfo=now.tzinfo)):
                    return False
        if self.hours is None:
            return True
        lo, hi, h = self.hours[0], self.hours[1], now.hour
        return lo <= h < hi if lo < hi else (h >= lo or h < hi)


@dataclass(frozen=True)
class Pin:
    key: str                     # the item key
    position: int                # 0-based display position
    surface: str | None = None   # None: both surfaces
    window: Window = Window()

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"key: expected a non-empty string, got {self.key!r}")
        _int("position", self.position, 0)
        _surface(self.surface)


@dataclass(frozen=True)
class Boost:
    """value * multiply + add for the items it targets: one key, one aisle or one brand."""

    key: str | None = None
    aisle: int | None = None
    brand: str | None = None
    multiply: float = 1.0        # >= 0
    add: float = 0.0
    surface: str | None = None
    window: Window = Window()

    def __post_init__(self) -> None:
        targets = [f for f in ("key", "aisle", "brand") if getattr(self, f) is not None]
        if len(targets) != 1:
            raise ValueError(f"key: exactly one of key / aisle / brand is needed, got {targets or 'none'}")
        if self.aisle is not None:
            _int("aisle", self.aisle, 0)
        for f in ("key", "brand"):
            if getattr(self, f) is not None and not isinstance(getattr(self, f), str):
                raise ValueError(f"{f}: expected a string, got {getattr(self, f)!r}")
        for f, low in (("multiply", 0.0), ("add", -math.inf)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= v < math.inf):
                raise ValueError(f"{f}: expected a finite number >= {low}, got {v!r}")
        _surface(self.surface)


@dataclass(frozen=True)
class Block:
    """Never show an item whose text holds `term` (whole words), or that leads to `product`."""

    term: str | None = None
    product: int | None = None
    surface: str | None = None
    window: Window = Window()

    def __post_init__(self) -> None:
        if (self.term is None) == (self.product is None):
            raise ValueError(f"term: exactly one of term / product is needed, got {self.term!r}, {self.product!r}")
        if self.term is not None and (not isinstance(self.term, str) or not term_key(self.term)):
            raise ValueError(f"term: expected text with a word in it, got {self.term!r}")
        if self.product is not None:
            _int("product", self.product, 0)
        _surface(self.surface)


@dataclass(frozen=True)
class Rules:
    pins: tuple[Pin, ...] = ()
    boosts: tuple[Boost, ...] = ()
    blocks: tuple[Block, ...] = ()
    source: str = ""             # the file they came from, for explanations

    def in_force(self, surface: str, now: datetime | None) -> Rules:
        """The rules that apply to `surface` at `now`; a windowed rule needs `now`."""
        def on(rule: Pin | Boost | Block) -> bool:
            if rule.surface not in (None, surface):
                return False
            if rule.window.always:
                return True
            if now is None:
                raise ValueError(f"now: required, {self.source or 'the rules'} have time windows")
            return rule.window.contains(now)
        return Rules(tuple(filter(on, self.pins)), tuple(filter(on, self.boosts)),
                     tuple(filter(on, self.blocks)), self.source)


_TABLES = {"pin": Pin, "boost": Boost, "block": Block}
_WINDOW = ("start", "end", "hours")


def load_rules(path: str | Path) -> Rules:
    """Parse and validate a rules file; any problem raises DataError naming file, rule and field."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise DataError(f"cannot read rules: {e.strerror}", path) from e
    except tomllib.TOMLDecodeError as e:
        raise DataError(f"invalid TOML: {e}", path) from e
    unknown = sorted(set(doc) - set(_TABLES))
    if unknown:
        raise DataError(f"{unknown[0]}: unknown table, expected [[pin]], [[boost]] or [[block]]", path)
    out: dict[str, list] = {}
    for table, cls in _TABLES.items():
        rows = doc.get(table, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{table}: expected an array of tables [[{table}]]", path)
        allowed = {f.name for f in fields(cls)} - {"window"} | set(_WINDOW)
        out[table] = []
        for i, row in enumerate(rows):
            bad = sorted(set(row) - allowed)
            if bad:
                raise DataError(f"{table}[{i}].{bad[0]}: unknown field, expected one of {sorted(allowed)}", path)
            missing = [f.name for f in fields(cls) if f.default is MISSING and f.name not in row]
            if missing:
                raise DataError(f"{table}[{i}].{missing[0]}: required", path)
            try:
                window = Window(**{k: row[k] for k in _WINDOW if k in row})
                out[table].append(cls(**{k: v for k, v in row.items() if k not in _WINDOW}, window=window))
            except ValueError as e:
                raise DataError(f"{table}[{i}].{e}", path) from e
    return Rules(tuple(out["pin"]), tuple(out["boost"]), tuple(out["block"]), path)
