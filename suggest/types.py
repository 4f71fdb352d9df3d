"""Records passed between Keystroke's stages: small, frozen, stdlib + numpy only."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Product", "Catalog", "Order", "QueryLogEntry", "Campaign", "Dataset",
    "Query", "ContextFilter", "Candidate", "Suggestion", "MATCH_KINDS",
]


@dataclass(frozen=True, slots=True)
class Product:
    product_id: int
    name: str
    aisle_id: int
    department_id: int
    brand: str | None = None  # derived from the name, see suggest.loaders.derive_brands


@dataclass(frozen=True)
class Catalog:
    products: tuple[Product, ...]
    aisles: dict[int, str]
    departments: dict[int, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {p.product_id: p for p in self.products})

    def get(self, product_id: int) -> Product | None:
        return self._by_id.get(product_id)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.products)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int
    user_id: int
    order_number: int
    product_ids: tuple[int, ...]
    reordered: tuple[bool | None, ...] = ()  # per line; None where the source does not say
    dow: int | None = None  # 0..6
    hour: int | None = None  # 0..23
    days_since_prior: float | None = None


@dataclass(frozen=True, slots=True)
class QueryLogEntry:
    query: str
    count: int = 1
    user_id: int | None = None
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    """A sponsored campaign: the brand's products may take sponsored slots at `bid` per click."""

    campaign_id: str
    brand: str
    bid: float     # value of one sponsored click
    budget: float  # total spend allowed


@dataclass(frozen=True)
class Dataset:
    """Everything an artifact is built from."""

    catalog: Catalog
    orders: tuple[Order, ...] = ()
    anonymous_lines: dict[int, int] = field(default_factory=dict)  # product_id -> lines with no known user
    query_log: tuple[QueryLogEntry, ...] = ()
    out_of_stock: dict[str, frozenset[int]] = field(default_factory=dict)  # store -> product ids
    prices: dict[int, float] = field(default_factory=dict)         # product_id -> unit price
    margin_rates: dict[int, float] = field(default_factory=dict)   # department_id -> margin / price
    campaigns: tuple[Campaign, ...] = ()
    checksums: dict[str, str] = field(default_factory=dict)  # source file -> sha256
    name: str = "unnamed"


@dataclass(frozen=True, slots=True)
class ContextFilter:
    department_id: int | None = None
    aisle_id: int | None = None
    store: str | None = None

    @property
    def active(self) -> bool:
        return self.department_id is not None or self.aisle_id is not None or self.store is not None


@dataclass(frozen=True, slots=True)
class Query:
    text: str  # as typed
    k: int = 10
    user_id: int | None = None
    context: ContextFilter = ContextFilter()
    hour: int | None = None  # local hour for "popular now"; None = server clock


MATCH_KINDS = ("prefix", "infix", "typo", "zero")


@dataclass(frozen=True, slots=True)
class Candidate:
    phrase_id: int
    source: str
    prior: float  # popularity prior in [0, 1], already discounted for match quality
    highlight: tuple[tuple[int, int], ...] = ()
    edits: int = 0


@dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    score: float
    sources: tuple[str, ...]
    highlight: tuple[tuple[int, int], ...]
    product_ids: tuple[int, ...]
    explanation: dict | None = None  # per-task scores, contributions, attributions (explain=true)
    sponsored: bool = False
    propensity: float = 1.0          # P(this suggestion at this position) under the serving policy

