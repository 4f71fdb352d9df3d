"""The policy layer of both surfaces: scored candidates -> the list shown, under the business's rules.

Per surface a `SurfacePolicy` (constraints for `ranking.rerank` and an optional safe exploration
policy) is read from one TOML file:

    [suggest]
    max_per_aisle = 3
    [suggest.exploration]          # epsilon-greedy over slots first_slot.., items above the floor
    epsilon = 0.05
    first_slot = 3
    [search]
    max_sponsored = 2
    sponsored_positions = [0, 4]
    sponsored_relevance_floor = 0.02
    ads_weight = 1.0               # value of a sponsored placement = organic value + w * P(click) * bid

`PolicyLayer.arrange` builds the slate (aisle and brand of each item's first product, its brand's
campaign and bid, the store's out-of-stock products, the campaigns' budgets left), applies the
merchandising rules in force, explores if configured, and returns the list with the propensities
an off-policy estimator needs. Sponsored clicks spend their campaign's budget (`observe`).
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np

from ranking.rerank import RerankConfig, SafeEpsilonGreedy, Slate, explore, rerank
from ranking.rules import Rules
from suggest.text import normalize
from suggest.types import Campaign

__all__ = ["SurfacePolicy", "Arranged", "PolicyLayer", "load_policy", "DEFAULT_POLICY"]

SURFACES = ("suggest", "search")
_CONSTRAINTS = {f.name for f in fields(RerankConfig)} - {"k", "surface"}
_REMEMBERED_REQUESTS = 100_000  # responses whose sponsored slots a later click may charge


@dataclass(frozen=True)
class SurfacePolicy:
    constraints: RerankConfig                  # k is set per request
    exploration: SafeEpsilonGreedy | None = None
    ads_weight: float = 1.0                    # when the scorer's objective has no ads term


DEFAULT_POLICY = {"suggest": SurfacePolicy(RerankConfig(k=1, surface="suggest")),
                  "search": SurfacePolicy(RerankConfig(k=1, surface="search"))}


def load_policy(path: Path | str) -> dict[str, SurfacePolicy]:
    """Per surface policy from a TOML file (module docstring); errors name the file and the key."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the policy ({e})") from e
    if set(doc) - set(SURFACES):
        raise ValueError(f"{path}: unknown section(s) {sorted(set(doc) - set(SURFACES))}; expected {SURFACES}")
    out = dict(DEFAULT_POLICY)
    for surface, table in doc.items():
        table = dict(table)
        explore_table = table.pop("exploration", None)
        ads_weight = table.pop("ads_weight", 1.0)
        unknown = set(table) - _CONSTRAINTS
        if unknown:
            raise ValueError(f"{path}: {surface}.{sorted(unknown)[0]}: unknown setting; expected one of "
                             f"{sorted(_CONSTRAINTS | {'exploration', 'ads_weight'})}")
        if "sponsored_positions" in table:
            table["sponsored_positions"] = tuple(table["sponsored_positions"])
        if "blocked_products" in table:
            table["blocked_products"] = frozenset(table["blocked_products"])
        try:
            constraints = RerankConfig(k=1, surface=surface, **table)
            exploration = SafeEpsilonGreedy(**explore_table) if explore_table is not None else None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {surface}: {e}") from e
        if isinstance(ads_weight, bool) or not isinstance(ads_weight, (int, float)) or ads_weight < 0:
            raise ValueError(f"{path}: {surface}.ads_weight: expected a number >= 0, got {ads_weight!r}")
        out[surface] = SurfacePolicy(constraints, exploration, float(ads_weight))
    return out


@dataclass(frozen=True)
class Arranged:
    order: list[int]                       # candidate indices in display order
    sponsored: list[bool]
    product_ids: list[tuple[int, ...]]     # each shown item's products (blocked / out of stock dropped)
    propensities: list[float]              # P(this item at this position) under the policy
    list_propensity: float
    policy: str
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> candidates not shown for it


class PolicyLayer:
    def __init__(self, policies: dict[str, SurfacePolicy], product_aisle: dict[int, int],
                 product_brand: dict[int, str | None], campaigns: Sequence[Campaign] = (),
                 out_of_stock: dict[str, frozenset[int]] | None = None, rules: Rules | None = None):
        self.policies, self.rules = policies, rules
        self.aisle_of, self.brand_of = product_aisle, product_brand
        self.campaign_of = {normalize(c.brand): c for c in campaigns}
        self.out_of_stock = out_of_stock or {}
        self._budget = {c.campaign_id: float(c.budget) for c in campaigns}
        self._served: OrderedDict[str, dict[int, tuple[str, float]]] = OrderedDict()
        self._lock = threading.Lock()
        self._by_raw_brand: dict[str | None, Campaign | None] = {}

    @classmethod
    def for_artifact(cls, artifact, policies: dict[str, SurfacePolicy] | None = None,
                     rules: Rules | None = None) -> "PolicyLayer":
        """The layer over an artifact's products, brands, campaigns and store stock."""
        table = artifact.table
        return cls(policies or DEFAULT_POLICY, dict(zip(table.product_ids.tolist(), table.product_aisle.tolist())),
                   artifact.catalog.brands, artifact.catalog.campaigns,
                   {s: frozenset(table.product_ids[~ok].tolist()) for s, ok in table.stores.items()}, rules)

    def _campaign(self, brand: str | None) -> Campaign | None:
        """The brand's campaign; memoised per raw brand, since normalising costs on every keystroke."""
        if brand not in self._by_raw_brand:
            self._by_raw_brand[brand] = self.campaign_of.get(normalize(brand)) if brand else None
        return self._by_raw_brand[brand]

    def budget_left(self) -> dict[str, float]:
        with self._lock:
            return dict(self._budget)

    def arrange(self, surface: str, keys: Sequence[str], value: np.ndarray, relevance: np.ndarray,
                product_ids: Sequence[tuple[int, ...]], k: int, store: str | None = None,
                ads: np.ndarray | None = None, request_id: str = "", now: datetime | None = None) -> Arranged:
        """The list to show. `ads`: the ads part of `value` from the objective (organic placements
        don't earn it); None: value is organic and a sponsored placement adds ads_weight * P(click) * bid."""
        policy = self.policies[surface]
        n = len(keys)
        brands = [self.brand_of.get(p[0]) if p else None for p in product_ids]
        campaigns = [self._campaign(b) for b in brands]
        bid = np.array([c.bid if c else 0.0 for c in campaigns])
        relevance = np.clip(np.asarray(relevance, dtype=np.float64), 0.0, 1.0)
        value = np.asarray(value, dtype=np.float64)
        if ads is None:
            organic, sponsored_value = value, value + policy.ads_weight * relevance * bid
        else:
            organic, sponsored_value = value - ads, value
        slate = Slate(tuple(keys), organic, relevance,
                      np.array([self.aisle_of.get(p[0], -1) if p else -1 for p in product_ids], dtype=np.int64),
                      tuple(brands), tuple(product_ids), bid, tuple(c.campaign_id if c else None for c in campaigns),
                      sponsored_value, self.budget_left(), self.out_of_stock.get(store, frozenset()) if store else
                      frozenset())
        config = replace(policy.constraints, k=k)
        now = now or datetime.now()
        if policy.exploration is not None and n:
            seed = int.from_bytes(hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little")
            ex = explore(slate, config, policy.exploration, np.random.default_rng(seed), self.rules, now)
            a, props, listp, name = ex.allocation, ex.ranking.item_propensity.tolist(), ex.ranking.list_propensity, \
                ex.policy
        else:
            a = rerank(slate, config, self.rules, now)
            props, listp, name = [1.0] * len(a.order), 1.0, "greedy"
        order = a.order.tolist()
        sponsored = a.sponsored.tolist()
        if request_id and any(sponsored):
            self._remember(request_id, {j: (slate.campaign[i], float(bid[i]))
                                        for j, (i, s) in enumerate(zip(order, sponsored)) if s})
        return Arranged(order, sponsored, [a.product_ids[i] for i in order], props, float(listp), name, a.dropped)

    def _remember(self, request_id: str, slots: dict[int, tuple[str, float]]) -> None:
        with self._lock:
            self._served[request_id] = slots
            while len(self._served) > _REMEMBERED_REQUESTS:
                self._served.popitem(last=False)

    def observe(self, record) -> None:
        """A click on a sponsored slot spends its bid from the campaign's budget (cost per click)."""
        if getattr(record, "type", None) != "click":
            return
        with self._lock:
            slot = self._served.get(record.request_id, {}).get(record.position)
            if slot is not None:
                campaign, bid = slot
                self._budget[campaign] = max(self._budget.get(campaign, 0.0) - bid, 0.0)
                del self._served[record.request_id][record.position]  # one charge per slot
