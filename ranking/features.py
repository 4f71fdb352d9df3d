"""The ranker's declared features, one featuriser per group, and the in-process feature store.

    query-candidate  how the candidate matched what was typed
    candidate        what the candidate is worth and how it has performed
    user             who is asking (real history), zero for anonymous requests
    context          surface, prefix length, time of day and week

Everything the featurisers read about items and users comes through a `FeatureStore` (the seam a
Redis-backed store for multi-replica serving will also implement); `InMemoryFeatureStore` builds
one from a dataset and logged impressions.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from suggest.text import normalize, singular
from suggest.types import Dataset

__all__ = ["FEATURES", "FEATURE_GROUPS", "RankQuery", "RankCandidate", "UserStats", "ItemStats",
           "FeatureStore", "InMemoryFeatureStore", "featurize"]

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
    def product(self, product_id: int) -> tuple[int, str | None, float, float]:
        """(aisle_id, brand, price, margin_rate) of a product."""
    def in_stock(self, product_id: int, store: str | None) -> bool: ...
    def bid(self, brand: str | None) -> float: ...
    def idf(self, word: str) -> float: ...


class InMemoryFeatureStore:
    """A FeatureStore from a dataset (catalog, users' orders, business data) and logged impressions."""

    def __init__(self, data: Dataset, impressions: Iterable = ()):
        cat = data.catalog
        self._products = {p.product_id: (p.aisle_id, p.brand, data.prices.get(p.product_id, 0.0),
                                         data.margin_rates.get(p.department_id, 0.0)) for p in cat.products}
        self._out = {s: ids for s, ids in data.out_of_stock.items()}
        self._bids = {normalize(c.brand): c.bid for c in data.campaigns}
        df: Counter = Counter()
        for p in cat.products:
            df.update({singular(w) for w in normalize(p.name).split()})
        self._idf = {w: math.log(1 + len(cat) / n) for w, n in df.items()}
        self._idf_unknown = math.log(1 + len(cat))
        self._users = self._user_stats(data)
        self._items: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for imp in impressions:
            self.add_impression(imp)

    def _user_stats(self, data: Dataset) -> dict[int, UserStats]:
        by_user: dict[int, list] = defaultdict(list)
        for o in data.orders:
            by_user[o.user_id].append(o)
        out = {}
        for user, orders in by_user.items():
            s = UserStats(orders=len(orders), days_since_order=orders[-1].days_since_prior)
            flags = [r for o in orders for r in o.reordered if r is not None]
            s.reorder_rate = sum(flags) / len(flags) if flags else 0.0
            bought = set()
            for o in orders:
                for pid in o.product_ids:
                    aisle, brand, _, _ = self._products[pid]
                    s.aisles[aisle] += 1
                    if brand:
                        s.brands[brand] += 1
                    bought.add(pid)
            s.bought = frozenset(bought)
            out[user] = s
        return out

    def add_impression(self, imp) -> None:
        """Count one logged impression (suggest.events.Impression) into the items' performance."""
        for item in imp.items:
            stats = self._items[item.item]
            stats[0] += 1
            stats[1] += item.position in imp.clicks
            stats[2] += any(p in imp.add_to_carts for p in item.product_ids)

    def user(self, user_id):
        return self._users.get(user_id) if user_id is not None else None

    def item(self, item):
        i, c, a = self._items.get(item, (0, 0, 0))
        return ItemStats(i, c, a)

    def product(self, product_id):
        return self._products.get(product_id, (0, None, 0.0, 0.0))

    def in_stock(self, product_id, store):
        return store is None or product_id not in self._out.get(store, ())

    def bid(self, brand):
        return self._bids.get(normalize(brand), 0.0) if brand else 0.0

    def idf(self, word):
        return self._idf.get(singular(word), self._idf_unknown)


def _term_overlap(query_words: list[str], item: str, store: FeatureStore) -> float:
    """idf-weighted share of the typed words that start a word of the item (BM25's term evidence, binary)."""
    if not query_words:
        return 0.0
    words = item.split()
    total = sum(store.idf(w) for w in query_words)
    hit = sum(store.idf(w) for w in query_words if any(x.startswith(w) for x in words))
    return hit / total if total else 0.0


def featurize(query: RankQuery, candidates: Sequence[RankCandidate], store: FeatureStore,
              cosine: Callable[[str, Sequence[str]], np.ndarray] | None = None) -> np.ndarray:
    """(n_candidates, len(FEATURES)) float32, columns in FEATURES order."""
    text = normalize(query.text)
    words = text.split()
    user = store.user(query.user_id)
    cos = cosine(text, [c.item for c in candidates]) if cosine and text else np.zeros(len(candidates))
    hour, dow = 2 * math.pi * query.hour / 24, 2 * math.pi * query.dow / 7
    context = [float(query.surface == "search"), math.log1p(len(text)), math.sin(hour), math.cos(hour),
               math.sin(dow), math.cos(dow)]
    rows = []
    for c, cs in zip(candidates, cos):
        s = set(c.sources)
        qc = [float("prefix" in s), float("infix" in s), float("typo" in s), float("vector" in s),
              float("history" in s), float(c.edits), c.match_start / max(len(c.item), 1),
              _term_overlap(words, c.item, store), float(cs)]
        stats = store.item(c.item)
        shown = c.product_ids[:8]
        info = [store.product(p) for p in shown]
        prices = [i[2] for i in info if i[2] > 0]
        cand = [math.log(max(c.prior, 1e-9)),
                (stats.clicks + CTR_PRIOR[0]) / (stats.impressions + sum(CTR_PRIOR)),
                (stats.add_to_carts + ATC_PRIOR[0]) / (stats.impressions + sum(ATC_PRIOR)),
                math.log1p(stats.impressions),
                math.log(np.mean(prices)) if prices else 0.0,
                float(np.mean([i[3] for i in info])) if info else 0.0,
                float(np.mean([store.in_stock(p, query.store) for p in shown])) if shown else 1.0,
                max((store.bid(i[1]) for i in info), default=0.0)]
        if user is None:
            u = [0.0] * len(FEATURE_GROUPS["user"])
        else:
            n = max(sum(user.aisles.values()), 1)
            aisle = max((user.aisles[i[0]] for i in info), default=0) / n
            brand = max((user.brands[i[1]] for i in info if i[1]), default=0) / n
            days = user.days_since_order
            u = [1.0, aisle, brand, float(any(p in user.bought for p in shown)), user.reorder_rate,
                 math.log1p(user.orders), math.log1p(days) if days is not None else math.log1p(30.0)]
        rows.append(qc + cand + u + context)
    return np.asarray(rows, dtype=np.float32).reshape(len(candidates), len(FEATURES))
