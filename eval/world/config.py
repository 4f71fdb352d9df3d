"""Every parameter of the interaction world, documented once (see eval/WORLD.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

__all__ = ["WorldConfig", "INTENT_LEVELS"]

INTENT_LEVELS = ("product", "brand_type", "type", "aisle")


def _check(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi) or (isinstance(value, float) and math.isnan(value)):
        raise ValueError(f"WorldConfig.{name} must be in [{lo}, {hi}], got {value!r}")


@dataclass(frozen=True)
class WorldConfig:
    # --- business attributes (simulated; real CSVs replace them) ---
    price_median_range: tuple[float, float] = (1.5, 12.0)  # per-aisle median price, log-uniform in this range
    price_sigma: float = 0.45            # log-normal spread of prices inside an aisle
    margin_range: tuple[float, float] = (0.08, 0.40)  # per-department margin rate, uniform
    stores: int = 3                      # simulated stores
    stockout_rates: tuple[float, ...] = (0.03, 0.07, 0.12)  # share of products out of stock, per store
    campaigns: int = 12                  # sponsored brands
    bid_range: tuple[float, float] = (0.05, 0.60)  # value of a sponsored click
    budget_range: tuple[float, float] = (50.0, 500.0)

    # --- intent: what the shopper is after, for each real purchase ---
    intent_level_weights: dict[str, float] = field(default_factory=lambda: {
        "product": 0.45, "brand_type": 0.15, "type": 0.30, "aisle": 0.10})
    reorder_exact_boost: float = 1.5     # reorders are more often sought by exact name (habit)

    # --- typing ---
    typo_rate: float = 0.03              # per typed character: a neighbouring key, a swap or a dropped letter
    look_rate: float = 0.75              # probability the shopper looks at the suggestions after a keystroke
                                         # (a results page is always looked at)

    # --- behaviour: position-based examination, attraction, purchase ---
    examination_eta: float = 1.0         # P(examine position p) = 1 / (1 + p) ** eta  (p = 0 at the top)
    attraction_bias: float = -3.5        # logit of clicking an examined, irrelevant, unfamiliar item
    attraction_relevance: float = 4.5    # logit added per unit of relevance (1 = the intended product)
    attraction_affinity: float = 1.2     # logit added per unit of personal affinity (0..1)
    partial_relevance: float = 0.5       # relevance of an item that satisfies the intent but is not its product
    buy_target: float = 0.75             # P(add to cart | the intended product is on the page and clicked)
    buy_substitute: float = 0.30         # P(add to cart | an acceptable substitute was clicked)
    buy_other: float = 0.02              # P(add to cart | anything else was clicked)
    price_sensitivity: float = 1.5       # logit of add-to-cart lost per unit of log(price / the aisle's median price):
                                         # a clicked product dearer than the shopper's reference price is bought less
    sponsored_bonus: float = 0.0         # extra attraction logit of a sponsored item (banner blindness < 0)

    # --- retention: whether the user orders again after a visit ---
    base_return: float = 0.90            # P(next order) after a visit of average satisfaction
    return_satisfaction: float = 2.0     # logit added per unit of (visit success rate - 0.5)

    # --- lists ---
    k: int = 10                          # items shown per list
    pool: int = 20                       # candidates the policy chooses from

    def __post_init__(self) -> None:
        lo, hi = self.price_median_range
        _check("price_median_range[0]", lo, 0.01, 1e4)
        _check("price_median_range[1]", hi, lo, 1e4)
        _check("price_sigma", self.price_sigma, 0.0, 3.0)
        _check("margin_range[0]", self.margin_range[0], 0.0, 0.99)
        _check("margin_range[1]", self.margin_range[1], self.margin_range[0], 0.99)
        _check("stores", self.stores, 0, 1000)
        if len(self.stockout_rates) < self.stores:
            raise ValueError(f"WorldConfig.stockout_rates needs {self.stores} rates, got {self.stockout_rates!r}")
        for r in self.stockout_rates:
            _check("stockout_rates[]", r, 0.0, 1.0)
        _check("campaigns", self.campaigns, 0, 10_000)
        _check("bid_range[1]", self.bid_range[1], self.bid_range[0], 1e3)
        _check("budget_range[1]", self.budget_range[1], self.budget_range[0], 1e9)
        if set(self.intent_level_weights) - set(INTENT_LEVELS) or not any(self.intent_level_weights.values()):
            raise ValueError(f"WorldConfig.intent_level_weights needs keys from {INTENT_LEVELS}, "
                             f"got {self.intent_level_weights!r}")
        for name in ("typo_rate", "look_rate", "partial_relevance", "buy_target", "buy_substitute", "buy_other",
                     "base_return"):
            _check(name, getattr(self, name), 0.0, 1.0)
        _check("examination_eta", self.examination_eta, 0.0, 10.0)
        _check("price_sensitivity", self.price_sensitivity, 0.0, 10.0)
        _check("k", self.k, 1, 50)
        _check("pool", self.pool, self.k, 500)

    def to_dict(self) -> dict:
        return asdict(self)
