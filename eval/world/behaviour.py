"""How simulated shoppers look, click, buy and come back.

Examination is position-based (Craswell et al. 2008; Chuklin et al. 2015): position p is looked
at with probability 1 / (1 + p) ** eta, independently of what is shown. An examined item is
clicked with a logistic attraction in its relevance to the intent and the shopper's affinity
(from their real history). A clicked product goes into the cart with a probability set by its
relevance and lowered, on the logit scale, by how dear it is against its aisle's median price.
Retention: after a visit, the user orders again with a probability that rises with the share of
the visit's sessions that found what they wanted.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from eval.world.config import WorldConfig
from eval.world.intents import Intent
from suggest.types import Catalog

__all__ = ["UserProfile", "examination", "attraction", "relevance", "purchase_probability", "return_probability"]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def examination(k: int, eta: float) -> list[float]:
    return [1.0 / (1.0 + p) ** eta for p in range(k)]


@dataclass
class UserProfile:
    """What a user has bought so far (real history, then simulated purchases)."""

    bought: Counter = field(default_factory=Counter)        # product -> times
    aisles: Counter = field(default_factory=Counter)        # aisle -> times

    def add(self, product_id: int, aisle_id: int) -> None:
        self.bought[product_id] += 1
        self.aisles[aisle_id] += 1

    def affinity(self, product_ids, catalog: Catalog) -> float:
        """0..1: 1 when they bought one of these before, else their share of purchases in the aisle."""
        if not product_ids:
            return 0.0
        if any(p in self.bought for p in product_ids):
            return 1.0
        total = sum(self.aisles.values())
        if not total:
            return 0.0
        return max(self.aisles[catalog.get(p).aisle_id] for p in product_ids[:3]) / total


def relevance(intent: Intent, product_ids, cfg: WorldConfig) -> float:
    """1 if the item leads to the intended product, `partial_relevance` if to one that would do, else 0."""
    if intent.target in product_ids:
        return 1.0
    return cfg.partial_relevance if any(p in intent.acceptable for p in product_ids) else 0.0


def attraction(rel: float, affinity: float, cfg: WorldConfig, sponsored: bool = False) -> float:
    logit = cfg.attraction_bias + cfg.attraction_relevance * rel + cfg.attraction_affinity * affinity
    return _sigmoid(logit + (cfg.sponsored_bonus if sponsored else 0.0))


def purchase_probability(base: float, price_ratio: float, cfg: WorldConfig) -> float:
    """P(add to cart | clicked): `base` (by relevance) on the logit scale, less `price_sensitivity` per unit of
    log(price / reference price). The reference is the aisle's median price (a category's reference
    price, Kalyanaram & Winer 1995); at the reference, or with sensitivity 0, it is `base` itself."""
    if base <= 0.0 or base >= 1.0 or cfg.price_sensitivity == 0.0 or not price_ratio > 0.0:
        return base
    return _sigmoid(math.log(base / (1.0 - base)) - cfg.price_sensitivity * math.log(price_ratio))


def return_probability(success_rate: float, cfg: WorldConfig) -> float:
    base = math.log(cfg.base_return / (1.0 - cfg.base_return)) if 0 < cfg.base_return < 1 else (
        50.0 if cfg.base_return >= 1 else -50.0)
    return _sigmoid(base + cfg.return_satisfaction * (success_rate - 0.5))
