"""Logged impressions -> the ranker's training rows: features, per-task labels and label masks.

    relevance  the item was clicked                          every shown item
    purchase   the item went into the cart (search), or      every shown item of a session that
               was clicked and leads to what the session     searched
               carted (suggest)
    margin     the margin it earned                          purchased items only
    churn      the user did not order again after the visit  items of visits whose outcome is logged
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from ranking.features import FEATURES, FeatureStore, RankCandidate, RankQuery, UserStats, featurize
from suggest.events import Impression, Visit
from suggest.types import Order

__all__ = ["TASKS", "TrainingSet", "training_set", "AsOfStore", "visit_number"]

TASKS = ("relevance", "purchase", "margin", "churn")


@dataclass(frozen=True)
class TrainingSet:
    X: np.ndarray                      # (n, n_features) float32
    labels: dict[str, np.ndarray]      # task -> (n,) float32
    masks: dict[str, np.ndarray]       # task -> (n,) bool: which rows carry the task's label
    group: np.ndarray                  # (n,) int64 impression index: rows of one shown list share it
    surface: np.ndarray                # (n,) int8, 0 suggest, 1 search
    position: np.ndarray               # (n,) int16 where the item was shown
    prior: np.ndarray                  # (n,) float32 the logged candidate score (the popularity baseline)
    user: np.ndarray                   # (n,) int64 who was shown the list, -1 when anonymous
    visit: np.ndarray                  # (n,) int64 index of the visit (one real order) the list was shown in;
                                       # churn is one label per visit, however many rows it showed

    def __len__(self) -> int:
        return len(self.X)


def visit_number(session_id: str) -> int | None:
    """Which of the user's orders a simulated session replays (ids <seed>.<shard>.<chain>.<visit>.<item>)."""
    parts = session_id.split(".")
    return int(parts[3]) if len(parts) == 5 and parts[3].isdigit() else None


class AsOfStore:
    """A feature store that sees a user as they were when a visit began: the orders before it only.

    A static store holds every order a user ever placed, the replayed one included, so "bought
    before" would say yes to exactly the product the session is about to buy: a label leak that
    inflates offline metrics. Features are taken as of the visit instead; everything but `user`
    is the wrapped store's.
    """

    def __init__(self, store: FeatureStore, orders: Iterable[Order]):
        self.store = store
        self._orders: dict[int, list[Order]] = defaultdict(list)
        for o in orders:
            self._orders[o.user_id].append(o)
        self._cache: dict[tuple[int, int], UserStats | None] = {}
        self._current: tuple[int, UserStats | None] | None = None

    def as_of(self, user_id: int, visit: int) -> UserStats | None:
        key = (user_id, visit)
        if key not in self._cache:
            history = self._orders.get(user_id, [])[:visit]
            if not history:
                self._cache[key] = None
            else:
                flags = [r for o in history for r in o.reordered if r is not None]
                aisles, brands = Counter(), Counter()
                for o in history:
                    for pid in o.product_ids:
                        aisle, brand, _, _ = self.store.product(pid)
                        aisles[aisle] += 1
                        if brand:
                            brands[brand] += 1
                here = self._orders[user_id][visit] if visit < len(self._orders[user_id]) else None
                self._cache[key] = UserStats(len(history), here.days_since_prior if here else None,
                                             sum(flags) / len(flags) if flags else 0.0, aisles, brands,
                                             frozenset(p for o in history for p in o.product_ids))
        return self._cache[key]

    def visiting(self, user_id: int | None, session_id: str) -> None:
        """The next featurised rows belong to this session (None: the static store's view)."""
        visit = visit_number(session_id)
        self._current = None if user_id is None or visit is None else (user_id, self.as_of(user_id, visit))

    def user(self, user_id):
        if self._current is not None and self._current[0] == user_id:
            return self._current[1]
        return self.store.user(user_id)

    def __getattr__(self, name):
        return getattr(self.store, name)


def _visit_of(session_id: str) -> str:
    return session_id.rsplit(".", 1)[0]  # simulator ids: <visit id>.<item index>


def training_set(events: Iterable[Impression | Visit], store: FeatureStore,
                 orders: Iterable[Order] | None = None,
                 cosine: Callable[[str, Sequence[str]], np.ndarray] | None = None) -> TrainingSet:
    """Rows for every shown item of every impression; visits supply the churn labels.

    With `orders` (the users' real orders the sessions replay) user features are taken as of each
    visit (AsOfStore), never from the visit itself or later. `cosine` computes the query-candidate
    similarity feature (0 without it), as `featurize` does when serving."""
    as_of = AsOfStore(store, orders) if orders is not None else None
    impressions, returned = [], {}
    carted: dict[str, set[int]] = {}    # session -> products its searches put in the cart
    for e in events:
        if isinstance(e, Visit):
            returned[e.visit_id] = e.returned
        elif isinstance(e, Impression):   # served logs also hold clicks and purchases: not rows
            impressions.append(e)
            if e.surface == "search":
                carted.setdefault(e.session_id, set()).update(e.add_to_carts)
    X, group, surface, position, prior, user, visit = [], [], [], [], [], [], []
    visits: dict[str, int] = {}
    labels = {t: [] for t in TASKS}
    masks = {t: [] for t in TASKS}
    for g, imp in enumerate(impressions):
        query = RankQuery(imp.query, imp.surface, imp.user_id)
        cands = [RankCandidate(i.item, i.product_ids, i.score or 0.0, i.sources) for i in imp.items]
        if as_of is not None:
            as_of.visiting(imp.user_id, imp.session_id)
        X.append(featurize(query, cands, as_of or store, cosine))
        visit_id = _visit_of(imp.session_id)
        back = returned.get(visit_id)
        v = visits.setdefault(visit_id, len(visits))
        # A suggestion is purchased when it was chosen and leads to what the session carted: as for a
        # product in search, a purchase is a click that ended in the cart, which the model's
        # P(cart) = P(click) P(cart | click) relies on.
        session_carts = carted.get(imp.session_id)
        for item in imp.items:
            bought = any(p in imp.add_to_carts for p in item.product_ids)
            labels["relevance"].append(float(item.position in imp.clicks))
            masks["relevance"].append(True)
            if imp.surface == "search":
                labels["purchase"].append(float(bought))
                masks["purchase"].append(True)
            else:
                labels["purchase"].append(float(item.position in imp.clicks and bool(session_carts)
                                                and any(p in session_carts for p in item.product_ids)))
                masks["purchase"].append(session_carts is not None)
            labels["margin"].append(imp.margin if bought else 0.0)
            masks["margin"].append(bought)
            labels["churn"].append(float(back is False))
            masks["churn"].append(back is not None)
            group.append(g)
            surface.append(imp.surface == "search")
            position.append(item.position)
            prior.append(item.score or 0.0)
            user.append(-1 if imp.user_id is None else imp.user_id)
            visit.append(v)
    X = np.concatenate(X) if X else np.zeros((0, len(FEATURES)), np.float32)
    return TrainingSet(X, {t: np.asarray(v, np.float32) for t, v in labels.items()},
                       {t: np.asarray(v, bool) for t, v in masks.items()}, np.asarray(group, np.int64),
                       np.asarray(surface, np.int8), np.asarray(position, np.int16), np.asarray(prior, np.float32),
                       np.asarray(user, np.int64), np.asarray(visit, np.int64))
