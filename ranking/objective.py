"""What a shown item is worth: a weighted sum of calibrated quantities, configured per surface and arm.

    relevance  P(click | shown)                                  the relevance head
    gtv        P(cart | shown) * price                           = P(click) P(buy | click) price
    margin     P(cart | shown) * expected margin given purchase  the purchase and margin heads
    ads        P(click | shown) * bid                            sponsored value, sponsorable items only
    retention  -P(user does not come back)                       the churn head (long-horizon value)
    habit      P(cart | shown) * [bought before]                 reorders are what brings shoppers back

One TOML file configures every surface and experiment arm:

    [suggest]            # the default arm of a surface
    relevance = 1.0
    [search]
    relevance = 1.0
    gtv = 0.05
    [arms.margin-first.search]   # an experiment arm overrides the weights it names
    margin = 0.5

The file names the quantities, so a typo fails at start-up instead of silently weighing nothing.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["QUANTITIES", "SURFACES", "Objective", "Objectives", "load_objectives", "quantities"]

QUANTITIES = ("relevance", "gtv", "margin", "ads", "retention", "habit")
SURFACES = ("suggest", "search")


def _weights(where: str, table: object) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: expected a table of quantity = weight, got {table!r}")
    out = {}
    for name, w in table.items():
        if name not in QUANTITIES:
            raise ValueError(f"{where}.{name}: unknown quantity; expected one of {QUANTITIES}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"{where}.{name}: expected a finite number, got {w!r}")
        out[name] = float(w)
    return out


@dataclass(frozen=True)
class Objective:
    weights: Mapping[str, float] = field(default_factory=lambda: {"relevance": 1.0})

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _weights("weights", self.weights))

    def contributions(self, q: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{quantity: (n,) weight * quantity} for the quantities this objective weighs."""
        return {name: w * q[name] for name, w in self.weights.items() if w != 0.0}

    def value(self, q: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(q.values()))) if q else 0
        return sum(self.contributions(q).values(), np.zeros(n))  # (n,) float64


def quantities(scores: Mapping[str, np.ndarray], price: np.ndarray, bid: np.ndarray,
               bought_before: np.ndarray) -> dict[str, np.ndarray]:
    """Every quantity of QUANTITIES from the ranker's per-task scores and the items' business data."""
    click, cart = scores["relevance"], scores["purchase"]
    margin = np.maximum(scores.get("margin", np.zeros_like(cart)), 0.0)
    churn = scores.get("churn", np.zeros_like(cart))
    return {"relevance": click, "gtv": cart * price, "margin": cart * margin, "ads": click * bid,
            "retention": -churn, "habit": cart * bought_before}


@dataclass(frozen=True)
class Objectives:
    """Per surface a default objective, and per arm the overrides."""

    default: Mapping[str, Objective]
    arms: Mapping[str, Mapping[str, Objective]] = field(default_factory=dict)

    def get(self, surface: str, arm: str | None = None) -> Objective:
        if surface not in SURFACES:
            raise ValueError(f"surface: expected one of {SURFACES}, got {surface!r}")
        if arm is not None and arm not in self.arms:
            raise ValueError(f"arm: unknown experiment arm {arm!r}; known: {sorted(self.arms)}")
        return self.arms.get(arm, {}).get(surface) or self.default[surface]


DEFAULT_OBJECTIVES = Objectives({"suggest": Objective({"relevance": 1.0}), "search": Objective({"relevance": 1.0})})


def load_objectives(path: Path | str) -> Objectives:
    """Objectives from a TOML file (see the module docstring); errors name the file and the key."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read objectives ({e})") from e
    unknown = set(doc) - set(SURFACES) - {"arms"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; expected {SURFACES} and 'arms'")
    try:
        default = {s: Objective(_weights(s, doc.get(s, {"relevance": 1.0}))) for s in SURFACES}
        arms = {}
        for arm, surfaces in doc.get("arms", {}).items():
            if not isinstance(surfaces, Mapping) or set(surfaces) - set(SURFACES):
                raise ValueError(f"arms.{arm}: expected sub-tables among {SURFACES}")
            arms[arm] = {s: Objective({**default[s].weights, **_weights(f"arms.{arm}.{s}", t)})
                         for s, t in surfaces.items()}
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    return Objectives(default, arms)
