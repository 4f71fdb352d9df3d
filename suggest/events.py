"""The event schema Keystroke logs: one record per shown list, with what the shopper did with it.

The interaction simulator writes it, the live service will write it (`POST /v1/events`), and the
ranker and the off-policy estimators read it. JSON Lines, one object per line, each carrying
`schema_version`; a reader refuses other versions. Stdlib only.

    impression  request_id, session_id, user_id, surface ("suggest" | "search"), query (prefix or
                query as typed), step (keystroke index in the session), policy, list_propensity,
                items [{position, item, product_ids, propensity, sponsored}], clicks [positions],
                add_to_carts [product ids], revenue, margin
    visit       user_id, visit_id, sessions, purchases, revenue, returned (did the user order again)
    click       request_id (of the impression), position, user_id | null
    add_to_cart user_id, product_ids, request_id | null (the impression it came from, if any)
    purchase    user_id, product_ids, request_id | null

The last three are what a front end sends one at a time (`POST /v1/events`); the simulator folds them
into its impressions. `parse_events` validates a request body into records, naming the JSON path
of the first bad value; `read_events` trusts its own files and reads them fast.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Iterator, Union

from suggest.errors import DataError, InvalidQuery

__all__ = ["SCHEMA_VERSION", "SURFACES", "MAX_EVENTS", "ShownItem", "Impression", "Visit", "Click", "AddToCart",
           "Purchase", "Event", "EventWriter", "encode", "parse_events", "read_events"]

SCHEMA_VERSION = 1
SURFACES = ("suggest", "search")
MAX_EVENTS = 1000       # records in one request body
MAX_TEXT = 1000         # characters in one string field of a request


@dataclass(frozen=True, slots=True)
class ShownItem:
    position: int                 # 0 = top
    item: str                     # suggestion text, or "product:<id>" on the search surface
    product_ids: tuple[int, ...]  # what the item leads to
    propensity: float | None      # P(this item at this position) under the logging policy; None when
                                  # the policy logs only the list's propensity (Plackett-Luce in simulation)
    sponsored: bool = False
    score: float | None = None    # the candidate's prior when it was shown (for training on the logs)
    sources: tuple[str, ...] = () # which candidate sources found it (suggest surface)


@dataclass(frozen=True, slots=True)
class Impression:
    request_id: str
    session_id: str
    user_id: int | None
    surface: str
    query: str
    step: int
    policy: str
    list_propensity: float
    items: tuple[ShownItem, ...]
    clicks: tuple[int, ...] = ()          # positions clicked
    add_to_carts: tuple[int, ...] = ()    # product ids
    revenue: float = 0.0
    margin: float = 0.0
    type: str = field(default="impression", init=False)

    def __post_init__(self) -> None:
        if self.surface not in SURFACES:
            raise ValueError(f"surface must be one of {SURFACES}, got {self.surface!r}")


@dataclass(frozen=True, slots=True)
class Visit:
    user_id: int
    visit_id: str
    sessions: int
    purchases: int
    revenue: float
    returned: bool
    type: str = field(default="visit", init=False)


@dataclass(frozen=True, slots=True)
class Click:
    request_id: str               # the impression's
    position: int                 # of the clicked item in that impression, 0 = top
    user_id: int | None = None
    type: str = field(default="click", init=False)


@dataclass(frozen=True, slots=True)
class AddToCart:
    user_id: int
    product_ids: tuple[int, ...]
    request_id: str | None = None  # the impression it came from, when it came from one
    type: str = field(default="add_to_cart", init=False)


@dataclass(frozen=True, slots=True)
class Purchase:
    user_id: int
    product_ids: tuple[int, ...]
    request_id: str | None = None
    type: str = field(default="purchase", init=False)


Event = Union[Impression, Visit, Click, AddToCart, Purchase]
_KINDS: dict[str, type] = {"impression": Impression, "visit": Visit, "click": Click, "add_to_cart": AddToCart,
                           "purchase": Purchase}


def encode(record: Event) -> str:
    """One JSONL line of a record, without the newline."""
    return json.dumps({"schema_version": SCHEMA_VERSION, **asdict(record)}, separators=(",", ":"))


class EventWriter:
    """Appends records to a JSONL file (gzip when the name ends in .gz)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".gz":  # mtime=0: the same records give the same bytes
            self._f: IO[str] = io.TextIOWrapper(gzip.GzipFile(self.path, "ab", compresslevel=4, mtime=0),
                                               encoding="utf-8")
        else:
            self._f = open(self.path, "a", encoding="utf-8")
        self.count = 0

    def write(self, record: Event) -> None:
        self._f.write(encode(record) + "\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(obj: dict) -> Event:
    kind = obj.pop("type")
    obj.pop("schema_version")
    if kind == "visit":
        return Visit(**obj)
    if kind == "click":
        return Click(**obj)
    if kind in ("add_to_cart", "purchase"):
        return _KINDS[kind](**{**obj, "product_ids": tuple(obj["product_ids"])})
    if kind != "impression":
        raise ValueError(f"unknown type {kind!r}")
    obj["items"] = tuple(ShownItem(**{**i, "product_ids": tuple(i["product_ids"]),
                                      "sources": tuple(i.get("sources", ()))}) for i in obj["items"])
    obj["clicks"], obj["add_to_carts"] = tuple(obj["clicks"]), tuple(obj["add_to_carts"])
    return Impression(**obj)


def read_events(path: Path | str) -> Iterator[Event]:
    """Records of one log file, refusing other schema versions with the file and line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not JSON ({e.msg})", str(path), line_no) from None
            if obj.get("schema_version") != SCHEMA_VERSION:
                raise DataError(f"schema_version {obj.get('schema_version')!r}, expected {SCHEMA_VERSION}",
                                str(path), line_no)
            try:
                yield _decode(obj)
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"malformed record ({e})", str(path), line_no) from None


# What the types alone cannot say, by field name wherever the field appears (items included).
_NON_NEGATIVE = frozenset({"user_id", "position", "step", "sessions", "purchases", "clicks", "add_to_carts",
                           "product_ids"})
_PROBABILITY = frozenset({"propensity", "list_propensity"})
_CHOICES = {"surface": SURFACES}
_INT_LIMIT = 2 ** 63  # ids end up in int64 arrays


def parse_events(body: object) -> list[Event]:
    """A request body (one record, or a list of 1..MAX_EVENTS) as records; InvalidQuery names the JSON path."""
    if isinstance(body, dict):
        return [_record(body, "")]
    if not isinstance(body, list) or not body:
        raise InvalidQuery("", "the body must be an event object or a non-empty list of them")
    if len(body) > MAX_EVENTS:
        raise InvalidQuery("", f"at most {MAX_EVENTS} events per request, got {len(body)}")
    return [_record(obj, f"[{i}]") for i, obj in enumerate(body)]


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _record(obj: object, path: str) -> Event:
    if not isinstance(obj, dict):
        raise InvalidQuery(path, "must be an event object")
    kind = obj.get("type")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InvalidQuery(_at(path, "type"), f"must be one of {', '.join(_KINDS)}, got {kind!r}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidQuery(_at(path, "schema_version"), f"must be {SCHEMA_VERSION} (or left out), got {version!r}")
    record = _struct(cls, {k: v for k, v in obj.items() if k not in ("type", "schema_version")}, path)
    if isinstance(record, (AddToCart, Purchase)) and not record.product_ids:
        raise InvalidQuery(_at(path, "product_ids"), "at least one product id")
    return record


def _struct(cls: type, obj: object, path: str):
    if not isinstance(obj, dict):
        raise InvalidQuery(path, "must be an object")
    hints = _hints(cls)
    for name in obj:
        if name not in hints:
            raise InvalidQuery(_at(path, str(name)), f"unknown field of a {cls.__name__}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in obj:
            values[f.name] = _value(obj[f.name], hints[f.name], f.name, _at(path, f.name))
        elif f.init and f.default is dataclasses.MISSING:
            raise InvalidQuery(_at(path, f.name), "required")
    return cls(**values)


@functools.cache
def _hints(cls: type) -> dict[str, object]:
    """Field name -> resolved type, for the fields a request may set."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _value(v: object, tp, name: str, where: str):
    if typing.get_origin(tp) in (Union, types.UnionType):  # only `X | None` occurs
        if v is None:
            return None
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is tuple:
        if not isinstance(v, list):
            raise InvalidQuery(where, "must be a list")
        item = typing.get_args(tp)[0]
        return tuple(_value(x, item, name, f"{where}[{i}]") for i, x in enumerate(v))
    if dataclasses.is_dataclass(tp):
        return _struct(tp, v, where)
    if tp is bool:
        if not isinstance(v, bool):
            raise InvalidQuery(where, f"must be true or false, got {v!r}")
    elif tp is int:
        if isinstance(v, bool) or not isinstance(v, int) or not -_INT_LIMIT < v < _INT_LIMIT:
            raise InvalidQuery(where, f"must be a 64-bit integer, got {v!r}")
        if name in _NON_NEGATIVE and v < 0:
            raise InvalidQuery(where, f"must be non-negative, got {v}")
    elif tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InvalidQuery(where, f"must be a finite number, got {v!r}")
        v = float(v)
        if name in _PROBABILITY and not 0.0 <= v <= 1.0:
            raise InvalidQuery(where, f"must be a probability in [0, 1], got {v}")
    elif tp is str:
        if not isinstance(v, str):
            raise InvalidQuery(where, f"must be a string, got {v!r}")
        if len(v) > MAX_TEXT:
            raise InvalidQuery(where, f"at most {MAX_TEXT} characters, got {len(v)}")
        if name in _CHOICES and v not in _CHOICES[name]:
            raise InvalidQuery(where, f"must be one of {', '.join(_CHOICES[name])}, got {v!r}")
    return v
