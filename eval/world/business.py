"""Simulated business attributes: prices, margin rates, store stock and sponsored campaigns.

Only what the data lacks is simulated; real CSVs (prices.csv, margins.csv, stock.csv,
campaigns.csv) always win. Seeded: the same data and seed give the same attributes.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import replace

from eval.world.config import WorldConfig
from suggest.types import Campaign, Dataset

__all__ = ["with_business"]


def _prices(data: Dataset, cfg: WorldConfig, rng: random.Random) -> dict[int, float]:
    lo, hi = (math.log(v) for v in cfg.price_median_range)
    median = {a: math.exp(rng.uniform(lo, hi)) for a in sorted(data.catalog.aisles)}
    return {p.product_id: round(max(0.25, median[p.aisle_id] * math.exp(rng.gauss(0.0, cfg.price_sigma))), 2)
            for p in data.catalog.products}


def _campaigns(data: Dataset, cfg: WorldConfig, rng: random.Random) -> tuple[Campaign, ...]:
    brands = Counter(p.brand for p in data.catalog.products if p.brand)
    # sponsors come from brands with a real range of products, as in practice
    pool = sorted(b for b, n in brands.items() if n >= 3)
    chosen = rng.sample(pool, min(cfg.campaigns, len(pool)))
    return tuple(Campaign(f"c{i + 1}", brand, round(rng.uniform(*cfg.bid_range), 4),
                          round(rng.uniform(*cfg.budget_range), 2)) for i, brand in enumerate(chosen))


def with_business(data: Dataset, cfg: WorldConfig = WorldConfig(), seed: int = 0) -> Dataset:
    """The dataset with simulated prices, margins, stock and campaigns wherever it has none."""
    rng = random.Random(f"business:{seed}")
    prices = data.prices or _prices(data, cfg, rng)
    margins = data.margin_rates or {d: round(rng.uniform(*cfg.margin_range), 4) for d in sorted(data.catalog.departments)}
    stock = data.out_of_stock or {
        f"store-{s + 1}": frozenset(p.product_id for p in data.catalog.products if rng.random() < cfg.stockout_rates[s])
        for s in range(cfg.stores)}
    campaigns = data.campaigns or _campaigns(data, cfg, rng)
    return replace(data, prices=prices, margin_rates=margins, out_of_stock=stock, campaigns=campaigns)
