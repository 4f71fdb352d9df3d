"""The ranker's declared features, one featuriser per group, and the in-process feature store.

    query-candidate  how the candidate matched what was typed
    candidate        what the candidate is worth and how it has performed
    user             who is asking (real history), zero for anonymous requests
    context          surface, prefix length, time of day and week

Everything the featurisers read about items and users comes through a `FeatureStore`: a static half
(`CatalogFeatures`: products, stock, bids, idf) and live counters (items' impressions, clicks and
carts; users' purchases). `InMemoryFeatureStore` builds one from a dataset and logged impressions;
`ranking.feature_store` saves it as a snapshot and serves it from Redis to many replicas.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from suggest.events import Impression
from suggest.text import normalize, singular
from suggest.types import Dataset

__all__ = ["FEATURES", "FEATURE_GROUPS", "RankQuery", "RankCandidate", "UserStats", "ItemStats",
           "FeatureStore", "CatalogFeatures", "InMemoryFeatureStore", "featurize"]

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "query_candidate": ("match_prefix", "match_infix", "match_typo", "match_vector", "match_history", "edits",
                        "match_position", "term_overlap", "cosine"),
    "candidate": ("log_prior", "ctr", "atc_rate", "log_impressions", "log_price", "margin_rate", "availability",
                  "sponsored_bid"),
    "user": ("known_user", "aisle_affinity", "brand_affinity", "bought_before", "reorder_rate", "log_orders",
             "log_days_since_order"),
    "context": ("surface_search", "log_prefix_len", "hour_sin", "hour_cos", "dow_sin", "dow_cos"),
}
FEATURES: tuple[str, ...] = tuple(f for group in FEATURE_GROUPS.values() for f in group)
CTR_PRIOR = (1.0, 20.0)    # Beta(a, b) smoothing of click-through: ~5% until evidence says otherwise
ATC_PRIOR = (1.0, 50.0)


@dataclass(frozen=True, slots=True)
class RankQuery:
    text: str                       # as typed (normalised inside)
    surface: str = "suggest"        # "suggest" | "search"
    user_id: int | None = None
    hour: int = 12
    dow: int = 0
    store: str | None = None


@dataclass(frozen=True, slots=True)
class RankCandidate:
    item: str                              # suggestion text, or "product:<id>"
    product_ids: tuple[int, ...]           # what it leads to, best first
    prior: float = 0.0                     # popularity prior from candidate generation
    sources: tuple[str, ...] = ()
    edits: int = 0
    match_start: int = 0                   # where the typed text matched inside the item


@dataclass
class UserStats:
    orders: int = 0
    days_since_order: float | None = None
    reorder_rate: float = 0.0
    aisles: Counter = field(default_factory=Counter)      # aisle -> purchases
    brands: Counter = field(default_factory=Counter)      # brand -> purchases
    bought: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ItemStats:
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0


class FeatureStore(Protocol):
    def user(self, user_id: int | None) -> UserStats | None: ...
    def item(self, item: str) -> ItemStats: ...
    def items(self, items: Sequence[str]) -> list[ItemStats]:
        """ItemStats of each item, in order, in one read (one round trip for a remote store)."""
    def product(self, product_id: int) -> tuple[int, str | None, float, float]:
        """(aisle_id, brand, price, margin_rate) of a product."""
    def in_stock(self, product_id: int, store: str | None) -> bool: ...
    def bid(self, brand: str | None) -> float: ...
    def idf(self, word: str) -> float: ...
    def add_impression(self, imp: Impression) -> None: ...
    def add_purchase(self, user_id: int, product_ids: Sequence[int]) -> None: ...


@dataclass(frozen=True)
class CatalogFeatures:
    """The static half of a feature store: what each product is, where it is out of stock, bids, word idf."""

    products: dict[int, tuple[int, str | None, float, float]]  # product_id -> (aisle_id, brand, price, margin_rate)
    out_of_stock: dict[str, frozenset[int]]                    # store -> product ids
    bids: dict[str, float]                                     # normalised brand -> bid
    word_idf: dict[str, float]                                 # singular word -> idf
    unknown_idf: float                                         # idf of a word no product name has

    @classmethod
    def from_dataset(cls, data: Dataset) -> CatalogFeatures:
        cat = data.catalog
        products = {p.product_id: (p.aisle_id, p.brand, data.prices.get(p.product_id, 0.0),
                                   data.margin_rates.get(p.department_id, 0.0)) for p in cat.products}
        df: Counter = Counter()
        for p in cat.products:
            df.update({singular(w) for w in normalize(p.name).split()})
        return cls(products, dict(data.out_of_stock), {normalize(c.brand): c.bid for c in data.campaigns},
                   {w: math.log(1 + len(cat) / n) for w, n in df.items()}, math.log(1 + len(cat)))

    def product(self, product_id: int) -> tuple[int, str | None, float, float]:
        return self.products.get(product_id, (0, None, 0.0, 0.0))

    def in_stock(self, product_id: int, store: str | None) -> bool:
        return store is None or product_id not in self.out_of_stock.get(store, ())

    def bid(self, brand: str | None) -> float:
        return self.bids.get(normalize(brand), 0.0) if brand else 0.0

    def idf(self, word: str) -> float:
        return self.word_idf.get(singular(word), self.unknown_idf)

    def tally(self, product_ids: Iterable[int]) -> tuple[Counter, Counter]:
        """Purchases per aisle and per brand of some bought lines."""
        aisles, brands = Counter(), Counter()
        for pid in product_ids:
            aisle, brand, _, _ = self.product(pid)
            aisles[aisle] += 1
            if brand:
                brands[brand] += 1
        return aisles, brands

    def state(self) -> dict:
        """JSON-able, deterministic (sorted) form; `from_state` reads it back."""
        return {"products": [[pid, *info] for pid, info in sorted(self.products.items())],
                "out_of_stock": {s: sorted(ids) for s, ids in sorted(self.out_of_stock.items())},
                "bids": dict(sorted(self.bids.items())), "idf": dict(sorted(self.word_idf.items())),
                "unknown_idf": self.unknown_idf}

    @classmethod
    def from_state(cls, state: dict) -> CatalogFeatures:
        return cls({int(pid): (int(aisle), brand, float(price), float(margin))
                    for pid, aisle, brand, price, margin in state["products"]},
                   {s: frozenset(int(p) for p in ids) for s, ids in state["out_of_stock"].items()},
                   {b: float(v) for b, v in state["bids"].items()},
                   {w: float(v) for w, v in state["idf"].items()}, float(state["unknown_idf"]))


class InMemoryFeatureStore:
    """A FeatureStore from a dataset (catalog, users' orders, business data) and logged impressions."""

    def __init__(self, data: Dataset, impressions: Iterable = ()):
        self._catalog = CatalogFeatures.from_dataset(data)
        self._users: dict[int, UserStats] = {}
        self._lines: dict[int, tuple[int, int]] = {}   # user -> (reordered lines, lines with a reorder flag)
        self._user_stats(data)
        self._items: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for imp in impressions:
            self.add_impression(imp)

    def _user_stats(self, data: Dataset) -> None:
        by_user: dict[int, list] = defaultdict(list)
        for o in data.orders:
            by_user[o.user_id].append(o)
        for user, orders in by_user.items():
            flags = [r for o in orders for r in o.reordered if r is not None]
            aisles, brands = self._catalog.tally(pid for o in orders for pid in o.product_ids)
            self._users[user] = UserStats(orders=len(orders), days_since_order=orders[-1].days_since_prior,
                                          reorder_rate=sum(flags) / len(flags) if flags else 0.0,
                                          aisles=aisles, brands=brands,
                                          bought=frozenset(pid for o in orders for pid in o.product_ids))
            self._lines[user] = (sum(flags), len(flags))

    def add_impression(self, imp: Impression) -> None:
        """Count one logged impression into the items' performance."""
        for item in imp.items:
            stats = self._items[item.item]
            stats[0] += 1
            stats[1] += item.position in imp.clicks
            stats[2] += any(p in imp.add_to_carts for p in item.product_ids)

    def add_purchase(self, user_id: int, product_ids: Sequence[int]) -> None:
        """Count one order into the user's history: a line of a product bought before is a reorder."""
        product_ids = _purchase_lines(product_ids)
        s = self._users.setdefault(user_id, UserStats())
        reordered, flagged = self._lines.get(user_id, (0, 0))
        reordered += sum(p in s.bought for p in product_ids)
        flagged += len(product_ids)
        aisles, brands = self._catalog.tally(product_ids)
        s.orders += 1
        s.days_since_order = 0.0
        s.reorder_rate = reordered / flagged
        s.aisles.update(aisles)
        s.brands.update(brands)
        s.bought = s.bought | frozenset(product_ids)
        self._lines[user_id] = (reordered, flagged)

    def user(self, user_id):
        return self._users.get(user_id) if user_id is not None else None

    def item(self, item):
        i, c, a = self._items.get(item, (0, 0, 0))
        return ItemStats(i, c, a)

    def items(self, items):
        return [self.item(i) for i in items]

    def product(self, product_id):
        return self._catalog.product(product_id)

    def in_stock(self, product_id, store):
        return self._catalog.in_stock(product_id, store)

    def bid(self, brand):
        return self._catalog.bid(brand)

    def idf(self, word):
        return self._catalog.idf(word)

    def state(self) -> dict:
        """Everything the store holds, JSON-able and deterministic (sorted); `from_state` rebuilds it."""
        users = {}
        for uid, s in sorted(self._users.items()):
            reordered, flagged = self._lines.get(uid, (0, 0))
            users[str(uid)] = {"orders": s.orders, "days_since_order": s.days_since_order, "reordered": reordered,
                               "flagged": flagged, "aisles": {str(a): n for a, n in sorted(s.aisles.items())},
                               "brands": dict(sorted(s.brands.items())), "bought": sorted(s.bought)}
        return {"catalog": self._catalog.state(), "users": users,
                "items": {item: list(v) for item, v in sorted(self._items.items())}}

    @classmethod
    def from_state(cls, state: dict) -> InMemoryFeatureStore:
        """The store `state()` described, without the dataset (raises KeyError/TypeError/ValueError if malformed)."""
        self = cls.__new__(cls)
        self._catalog = CatalogFeatures.from_state(state["catalog"])
        self._users, self._lines = {}, {}
        for uid, u in state["users"].items():
            reordered, flagged = int(u["reordered"]), int(u["flagged"])
            days = u["days_since_order"]
            self._users[int(uid)] = UserStats(
                orders=int(u["orders"]), days_since_order=float(days) if days is not None else None,
                reorder_rate=reordered / flagged if flagged else 0.0,
                aisles=Counter({int(a): int(n) for a, n in u["aisles"].items()}),
                brands=Counter({b: int(n) for b, n in u["brands"].items()}),
                bought=frozenset(int(p) for p in u["bought"]))
            self._lines[int(uid)] = (reordered, flagged)
        self._items = defaultdict(lambda: [0, 0, 0])
        for item, (i, c, a) in state["items"].items():
            self._items[item] = [int(i), int(c), int(a)]
        return self


def _purchase_lines(product_ids: Sequence[int]) -> tuple[int, ...]:
    """The lines of one purchase, checked: an order has at least one product."""
    lines = tuple(int(p) for p in product_ids)
    if not lines:
        raise ValueError("product_ids: a purchase needs at least one product, got none")
    return lines


def featurize(query: RankQuery, candidates: Sequence[RankCandidate], store: FeatureStore,
              cosine: Callable[[str, Sequence[str]], np.ndarray] | None = None) -> np.ndarray:
    """(n_candidates, len(FEATURES)) float32, columns in FEATURES order.

    Runs on every request over up to a few hundred candidates, so per-product facts are read once
    per distinct product and the loop stays in plain Python arithmetic (numpy per row costs more).
    `cosine(text, items)` gives the query-candidate similarity on the search surface (0 without it).
    """
    text = normalize(query.text)
    words = text.split()
    idf = [store.idf(w) for w in words]
    idf_total = sum(idf)
    user = store.user(query.user_id)
    # Search only: there the query's embedding is already at hand (vector retrieval made it), while on
    # suggest every new prefix would pay an encoder pass (~10 ms on one core) for no measured gain.
    semantic = cosine is not None and text and query.surface == "search"
    cos = cosine(text, [c.item for c in candidates]).tolist() if semantic else [0.0] * len(candidates)
    hour, dow = 2 * math.pi * query.hour / 24, 2 * math.pi * query.dow / 7
    context = [float(query.surface == "search"), math.log1p(len(text)), math.sin(hour), math.cos(hour),
               math.sin(dow), math.cos(dow)]
    item_stats = store.items([c.item for c in candidates])   # one read for the whole list
    facts: dict[int, tuple] = {}                             # product -> (aisle, brand, price, margin, stock, bid)
    bids: dict[str | None, float] = {}
    for c in candidates:
        for p in c.product_ids[:8]:
            if p not in facts:
                aisle, brand, price, margin = store.product(p)
                if brand not in bids:
                    bids[brand] = store.bid(brand)
                facts[p] = (aisle, brand, price, margin, float(store.in_stock(p, query.store)), bids[brand])
    if user is not None:
        n_bought = max(sum(user.aisles.values()), 1)
        days = user.days_since_order
        user_const = [user.reorder_rate, math.log1p(user.orders),
                      math.log1p(days) if days is not None else math.log1p(30.0)]
    rows = []
    for c, cs, stats in zip(candidates, cos, item_stats):
        s = c.sources
        item_words = c.item.split()
        hit = sum(f for w, f in zip(words, idf) if any(x.startswith(w) for x in item_words))
        qc = [float("prefix" in s), float("infix" in s), float("typo" in s), float("vector" in s),
              float("history" in s), float(c.edits), c.match_start / max(len(c.item), 1),
              hit / idf_total if idf_total else 0.0, float(cs)]
        shown = c.product_ids[:8]
        info = [facts[p] for p in shown]
        prices = [i[2] for i in info if i[2] > 0]
        cand = [math.log(max(c.prior, 1e-9)),
                (stats.clicks + CTR_PRIOR[0]) / (stats.impressions + sum(CTR_PRIOR)),
                (stats.add_to_carts + ATC_PRIOR[0]) / (stats.impressions + sum(ATC_PRIOR)),
                math.log1p(stats.impressions),
                math.log(sum(prices) / len(prices)) if prices else 0.0,
                sum(i[3] for i in info) / len(info) if info else 0.0,
                sum(i[4] for i in info) / len(info) if info else 1.0,
                max((i[5] for i in info), default=0.0)]
        if user is None:
            u = [0.0] * len(FEATURE_GROUPS["user"])
        else:
            aisle = max((user.aisles[i[0]] for i in info), default=0) / n_bought
            brand = max((user.brands[i[1]] for i in info if i[1]), default=0) / n_bought
            u = [1.0, aisle, brand, float(any(p in user.bought for p in shown))] + user_const
        rows.append(qc + cand + u + context)
    return np.asarray(rows, dtype=np.float32).reshape(len(candidates), len(FEATURES))
