"""Logged impressions -> the ranker's training rows: features, per-task labels and label masks.

    relevance  the item was clicked                          every shown item
    purchase   the item went into the cart                   search items (where carts happen)
    margin     the margin it earned                          purchased items only
    churn      the user did not order again after the visit  items of visits whose outcome is logged
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ranking.features import FEATURES, FeatureStore, RankCandidate, RankQuery, featurize
from suggest.events import Impression, Visit

__all__ = ["TASKS", "TrainingSet", "training_set"]

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

    def __len__(self) -> int:
        return len(self.X)


def _visit_of(session_id: str) -> str:
    return session_id.rsplit(".", 1)[0]  # simulator ids: <visit id>.<item index>


def training_set(events: Iterable[Impression | Visit], store: FeatureStore) -> TrainingSet:
    """Rows for every shown item of every impression; visits supply the churn labels."""
    impressions, returned = [], {}
    for e in events:
        if isinstance(e, Visit):
            returned[e.visit_id] = e.returned
        elif isinstance(e, Impression):   # served logs also hold clicks and purchases: not rows
            impressions.append(e)
    X, group, surface, position, prior = [], [], [], [], []
    labels = {t: [] for t in TASKS}
    masks = {t: [] for t in TASKS}
    for g, imp in enumerate(impressions):
        query = RankQuery(imp.query, imp.surface, imp.user_id)
        cands = [RankCandidate(i.item, i.product_ids, i.score or 0.0, i.sources) for i in imp.items]
        X.append(featurize(query, cands, store))
        back = returned.get(_visit_of(imp.session_id))
        for item in imp.items:
            bought = any(p in imp.add_to_carts for p in item.product_ids)
            labels["relevance"].append(float(item.position in imp.clicks))
            masks["relevance"].append(True)
            labels["purchase"].append(float(bought))
            masks["purchase"].append(imp.surface == "search")
            labels["margin"].append(imp.margin if bought else 0.0)
            masks["margin"].append(bought)
            labels["churn"].append(float(back is False))
            masks["churn"].append(back is not None)
            group.append(g)
            surface.append(imp.surface == "search")
            position.append(item.position)
            prior.append(item.score or 0.0)
    X = np.concatenate(X) if X else np.zeros((0, len(FEATURES)), np.float32)
    return TrainingSet(X, {t: np.asarray(v, np.float32) for t, v in labels.items()},
                       {t: np.asarray(v, bool) for t, v in masks.items()}, np.asarray(group, np.int64),
                       np.asarray(surface, np.int8), np.asarray(position, np.int16), np.asarray(prior, np.float32))
