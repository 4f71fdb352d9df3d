"""The event schema Keystroke logs: one record per shown list, with what the shopper did with it.

The interaction simulator writes it, the live service will write it (`POST /v1/events`), and the
ranker and the off-policy estimators read it. JSON Lines, one object per line, each carrying
`schema_version`; a reader refuses other versions. Stdlib only.

    impression  request_id, session_id, user_id, surface ("suggest" | "search"), query (prefix or
                query as typed), step (keystroke index in the session), policy, list_propensity,
                items [{position, item, product_ids, propensity, sponsored}], clicks [positions],
                add_to_carts [product ids], revenue, margin
    visit       user_id, visit_id, sessions, purchases, revenue, returned (did the user order again)
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Iterator

from suggest.errors import DataError

__all__ = ["SCHEMA_VERSION", "SURFACES", "ShownItem", "Impression", "Visit", "EventWriter", "read_events"]

SCHEMA_VERSION = 1
SURFACES = ("suggest", "search")


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


def _encode(record: Impression | Visit) -> str:
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

    def write(self, record: Impression | Visit) -> None:
        self._f.write(_encode(record) + "\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode(obj: dict) -> Impression | Visit:
    kind = obj.pop("type")
    obj.pop("schema_version")
    if kind == "visit":
        return Visit(**obj)
    obj["items"] = tuple(ShownItem(**{**i, "product_ids": tuple(i["product_ids"]),
                                      "sources": tuple(i.get("sources", ()))}) for i in obj["items"])
    obj["clicks"], obj["add_to_carts"] = tuple(obj["clicks"]), tuple(obj["add_to_carts"])
    return Impression(**obj)


def read_events(path: Path | str) -> Iterator[Impression | Visit]:
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
