"""The constrained re-ranker of both surfaces: scored candidates in, the list shown out.

`rerank` is greedy: active pins first, then each position top-down takes the option (an item,
organic or sponsored) of highest score that keeps every constraint, where score = value (boosted,
`sponsored_value` for a sponsored placement) - mmr_lambda * max similarity to the items above.
Ties go to organic over sponsored, then to the lower index. The list ends at the first position
nothing can fill (pins below it move up), so it never has holes. Constraints, always honoured:

    k, dedupe          at most k items, no two with one key
    availability       a product out of stock at the store is dropped from every item's products; an
                       item whose products were all dropped is not shown (a product item, which
                       leads only to itself, so: out of stock -> not shown; an item with no products,
                       e.g. a generic suggestion, cannot be out of stock)
    quality            no item whose text holds a blocked term (whole words, plurals folded), blocked
                       products dropped like out-of-stock ones; organic items need relevance_floor
    sponsored          <= max_sponsored, only at sponsored_positions, only with relevance >=
                       sponsored_relevance_floor, bid > 0 and budget left (each placement spends bid)
    diversity          <= max_per_aisle per aisle, <= max_per_brand per brand (unknowns are exempt)
    pins               placed organically, only if every constraint above still holds

An item is labelled sponsored only where that scores higher (sponsored_value > value) or is the only
way it can be shown (relevance under the organic floor); otherwise it is organic and spends nothing.

Why a candidate is not shown (`Allocation.why`): blocked_term, blocked_product (every product it
leads to is blocked), out_of_stock (every product is blocked or unavailable, some unavailable),
below_floor (under the organic floor and not sponsorable: no bid, campaign, budget or slot),
duplicate (its key is shown), aisle_cap / brand_cap (its aisle / brand is full), outranked (it fit
but lost on score or ran past k), explored_out (exploration put another item in its slot).

The objective is sum_j w_j * score_j with w_j = 1 / log2(j + 2). `exact_rerank` maximises it by
brute force over every list the same rules could produce. The greedy is optimal under k + dedupe +
floors + blocks + stock + pins + boosts, for any values (one matroid, dedupe: every full list has
one length, and the value-sorted one is best). It is within 1/p of the optimum when values are >= 0,
nothing is sponsored, MMR is off, there are no pins, and p of {dedupe, aisle cap, brand cap} bind
(greedy on an intersection of p matroids, applied to every prefix); p = 1 is optimal again. It can
be worse with sponsored positions (the best organic item at a sponsored slot pushes out an ad that
fits nowhere else), with budgets (a knapsack), and with MMR.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ranking.exploration import Ranking
from ranking.rules import Rules, term_key
from suggest.events import SURFACES

__all__ = ["Slate", "RerankConfig", "Allocation", "SafeEpsilonGreedy", "Explored", "REASONS",
           "position_weights", "rerank", "exact_rerank", "explore"]

REASONS = ("blocked_term", "blocked_product", "out_of_stock", "below_floor", "duplicate", "aisle_cap",
           "brand_cap", "outranked", "explored_out")
EXACT_MAX = 8  # candidates exact_rerank will enumerate


def position_weights(k: int) -> np.ndarray:
    """(k,) float64 DCG-style weights 1 / log2(j + 2)."""
    return 1.0 / np.log2(np.arange(k) + 2.0)


def _array(name: str, value: object, n: int, dtype: type, default: object) -> np.ndarray:
    a = np.full(n, default, dtype=dtype) if value is None else np.asarray(value)
    if a.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {a.shape}")
    if dtype is np.float64 and not (np.issubdtype(a.dtype, np.number) and np.isfinite(a).all()):
        raise ValueError(f"{name}: expected finite numbers, got {a[:5].tolist()}")
    a = a.astype(dtype)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous
class Slate:
    """One request's candidates; every per-item field has n entries (None: the default shown)."""

    keys: tuple[str, ...]                 # dedup key: suggestion text or "product:<id>"
    value: np.ndarray                     # (n,) float64 expected value, higher is better
    relevance: np.ndarray                 # (n,) float64 calibrated P(relevant), for the floors
    aisle: np.ndarray | None = None       # (n,) int64; -1 (default) unknown
    brand: tuple[str | None, ...] | None = None
    product_ids: tuple[tuple[int, ...], ...] | None = None  # what each item leads to; default ()
    sponsored_bid: np.ndarray | None = None    # (n,) float64 cost of a sponsored placement; 0: none
    campaign: tuple[str | None, ...] | None = None
    sponsored_value: np.ndarray | None = None  # (n,) float64 value if sponsored; default: value
    budget: Mapping[str, float] = field(default_factory=dict)  # campaign -> spend left; absent: 0
    out_of_stock: frozenset[int] = frozenset()  # products unavailable at the requested store
    text: tuple[str, ...] | None = None   # shown text, matched against blocked terms; default: keys
    similarity: np.ndarray | None = None  # (n, n) float64, needed when mmr_lambda > 0

    def __post_init__(self) -> None:
        n = len(self.keys)
        put = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731
        put("keys", tuple(self.keys))
        if not all(isinstance(k, str) for k in self.keys):
            raise ValueError(f"keys: expected strings, got {self.keys[:5]!r}")
        put("value", _array("value", self.value, n, np.float64, 0.0))
        put("relevance", _array("relevance", self.relevance, n, np.float64, 0.0))
        if ((self.relevance < 0) | (self.relevance > 1)).any():
            raise ValueError(f"relevance: expected probabilities in [0, 1], got {self.relevance[:5].tolist()}")
        if self.aisle is not None and n and not np.issubdtype(np.asarray(self.aisle).dtype, np.integer):
            raise ValueError(f"aisle: expected integers, got dtype {np.asarray(self.aisle).dtype}")
        put("aisle", _array("aisle", self.aisle, n, np.int64, -1))
        put("sponsored_bid", _array("sponsored_bid", self.sponsored_bid, n, np.float64, 0.0))
        if (self.sponsored_bid < 0).any():
            raise ValueError(f"sponsored_bid: expected >= 0, got {self.sponsored_bid[:5].tolist()}")
        sv = self.value if self.sponsored_value is None else self.sponsored_value
        put("sponsored_value", _array("sponsored_value", sv, n, np.float64, 0.0))
        for name, default in (("brand", None), ("campaign", None), ("product_ids", ()), ("text", None)):
            v = getattr(self, name)
            v = tuple(self.keys if name == "text" else [default] * n) if v is None else tuple(v)
            if len(v) != n:
                raise ValueError(f"{name}: expected {n} entries, got {len(v)}")
            put(name, tuple(tuple(p) for p in v) if name == "product_ids" else v)
        if any(not math.isfinite(b) or b < 0 for b in self.budget.values()):
            raise ValueError(f"budget: expected finite spend >= 0, got {dict(self.budget)!r}")
        put("out_of_stock", frozenset(self.out_of_stock))
        if self.similarity is not None:
            s = np.asarray(self.similarity, dtype=np.float64)
            if s.shape != (n, n) or not np.isfinite(s).all():
                raise ValueError(f"similarity: expected a finite ({n}, {n}) matrix, got shape {s.shape}")
            put("similarity", s)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class RerankConfig:
    k: int                                 # positions to fill, >= 1
    surface: str = "search"                # "suggest" | "search": which rules apply
    max_sponsored: int = 0                 # sponsored items per list, >= 0
    sponsored_positions: tuple[int, ...] = ()  # 0-based positions a sponsored item may take
    sponsored_relevance_floor: float = 0.0  # relevance a sponsored item needs, in [0, 1]
    relevance_floor: float = 0.0           # relevance an organic item needs, in [0, 1]
    max_per_aisle: int | None = None       # items per aisle, >= 1; None: no cap
    max_per_brand: int | None = None       # items per brand, >= 1; None: no cap
    mmr_lambda: float = 0.0                # value lost per unit of max similarity to an item above; 0: off
    blocked_terms: tuple[str, ...] = ()    # words or phrases never shown (rules may add more)
    blocked_products: frozenset[int] = frozenset()  # products never shown (rules may add more)

    def __post_init__(self) -> None:
        def integer(name: str, low: int, none_ok: bool = False) -> None:
            v = getattr(self, name)
            if not (none_ok and v is None) and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise ValueError(f"{name}: expected an integer >= {low}{' or None' if none_ok else ''}, got {v!r}")

        def number(name: str, low: float, high: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low <= v <= high and math.isfinite(v)):
                raise ValueError(f"{name}: expected a finite number in [{low}, {high}], got {v!r}")

        integer("k", 1)
        integer("max_sponsored", 0)
        integer("max_per_aisle", 1, none_ok=True)
        integer("max_per_brand", 1, none_ok=True)
        number("sponsored_relevance_floor", 0.0, 1.0)
        number("relevance_floor", 0.0, 1.0)
        number("mmr_lambda", 0.0, math.inf)
        if self.surface not in SURFACES:
            raise ValueError(f"surface: expected one of {SURFACES}, got {self.surface!r}")
        pos = tuple(self.sponsored_positions)
        if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in pos) or len(set(pos)) < len(pos):
            raise ValueError(f"sponsored_positions: expected distinct integers >= 0, got {pos!r}")
        if self.max_sponsored and not pos:
            raise ValueError(f"sponsored_positions: max_sponsored={self.max_sponsored} needs positions, got ()")
        terms = (self.blocked_terms,) if isinstance(self.blocked_terms, str) else tuple(self.blocked_terms)
        if not all(isinstance(t, str) and term_key(t) for t in terms):
            raise ValueError(f"blocked_terms: expected a list of texts with a word each, got {terms!r}")
        ids = frozenset(self.blocked_products)
        if any(isinstance(p, bool) or not isinstance(p, int) for p in ids):
            raise ValueError(f"blocked_products: expected integer product ids, got {sorted(ids, key=str)!r}")
        object.__setattr__(self, "sponsored_positions", pos)
        object.__setattr__(self, "blocked_terms", terms)
        object.__setattr__(self, "blocked_products", ids)


@dataclass(frozen=True, eq=False)
class Allocation:
    order: np.ndarray       # (m,) int64 candidate indices in display order, m <= k
    sponsored: np.ndarray   # (m,) bool: labelled sponsored
    pinned: np.ndarray      # (m,) bool: placed by a pin
    product_ids: tuple[tuple[int, ...], ...]  # (n,) each candidate's products, blocked and out-of-stock dropped
    why: tuple[str | None, ...]  # (n,) the reason each candidate is not shown (REASONS); None: shown
    total: float            # the objective: sum_j w_j * score_j

    @property
    def dropped(self) -> dict[str, int]:
        """reason -> candidates not shown for it."""
        return dict(Counter(w for w in self.why if w is not None))

    @property
    def shown_products(self) -> tuple[tuple[int, ...], ...]:
        return tuple(self.product_ids[i] for i in self.order)


@dataclass
class _Problem:
    """A slate with rules applied: what may go where, and what each placement scores."""

    slate: Slate
    config: RerankConfig
    value: np.ndarray        # (n,) boosted organic value
    svalue: np.ndarray       # (n,) boosted sponsored value
    organic: np.ndarray      # (n,) bool may be shown organically
    sponsorable: np.ndarray  # (n,) bool may be shown sponsored (budget checked when placed)
    products: tuple[tuple[int, ...], ...]
    why: list[str | None]    # the filter that removed each candidate
    groups: list[tuple[np.ndarray, np.ndarray]]  # per cap: (n,) group id, (groups,) cap; dedupe first
    campaign: np.ndarray     # (n,) int64 campaign id, -1 none
    budget: np.ndarray       # (campaigns,) float64 spend left
    pins: dict[int, int]     # position -> candidate

    @property
    def n(self) -> int:
        return len(self.slate)


def _groups(labels: list, cap: int | None, exempt: object) -> tuple[np.ndarray, np.ndarray]:
    """(n,) group id per label and (groups + 1,) caps, the exempt label in an uncapped last group."""
    ids: dict = {}
    gid = np.array([ids.setdefault(x, len(ids)) if x != exempt else -1 for x in labels], dtype=np.int64)
    caps = np.full(len(ids) + 1, np.iinfo(np.int64).max if cap is None else cap, dtype=np.int64)
    caps[-1] = np.iinfo(np.int64).max
    return np.where(gid < 0, len(ids), gid), caps


def _contains(words: list[str], phrase: list[str]) -> bool:
    m = len(phrase)
    return any(words[i:i + m] == phrase for i in range(len(words) - m + 1))


def _problem(slate: Slate, config: RerankConfig, rules: Rules | None, now: datetime | None) -> _Problem:
    if config.mmr_lambda > 0 and slate.similarity is None:
        raise ValueError("similarity: mmr_lambda > 0 needs Slate.similarity")
    rules = (rules or Rules()).in_force(config.surface, now)
    terms = [term_key(t).split() for t in (*config.blocked_terms, *(b.term for b in rules.blocks if b.term))]
    gone = config.blocked_products | {b.product for b in rules.blocks if b.product is not None}
    value, svalue = slate.value.copy(), slate.sponsored_value.copy()
    for b in rules.boosts:
        hit = (slate.aisle == b.aisle if b.aisle is not None
               else np.array([k == b.key for k in slate.keys] if b.key is not None
                             else [x == b.brand for x in slate.brand], dtype=bool))
        value[hit], svalue[hit] = value[hit] * b.multiply + b.add, svalue[hit] * b.multiply + b.add
    why: list[str | None] = []
    products = []
    for text, ids in zip(slate.text, slate.product_ids):
        kept = tuple(q for q in ids if q not in gone and q not in slate.out_of_stock) if gone or \
            slate.out_of_stock else ids
        products.append(kept)
        words = term_key(text).split() if terms else []  # normalising every text costs; only when needed
        why.append("blocked_term" if terms and any(_contains(words, t) for t in terms)
                   else None if kept or not ids
                   else "blocked_product" if all(q in gone for q in ids) else "out_of_stock")
    passed = np.array([w is None for w in why], dtype=bool)
    camps = sorted({c for c in slate.campaign if c is not None})
    campaign = np.array([camps.index(c) if c is not None else -1 for c in slate.campaign], dtype=np.int64)
    budget = np.array([float(slate.budget.get(c, 0.0)) for c in camps] + [0.0])
    organic = passed & (slate.relevance >= config.relevance_floor)
    sponsorable = (passed & (config.max_sponsored > 0) & (slate.sponsored_bid > 0) & (campaign >= 0)
                   & (slate.relevance >= config.sponsored_relevance_floor)
                   & (budget[campaign] >= slate.sponsored_bid)
                   & any(p < config.k for p in config.sponsored_positions))
    for i in np.flatnonzero(passed & ~organic & ~sponsorable):
        why[i] = "below_floor"
    groups = [_groups(list(slate.keys), 1, None), _groups(slate.aisle.tolist(), config.max_per_aisle, -1),
              _groups(list(slate.brand), config.max_per_brand, None)]
    p = _Problem(slate, config, value, svalue, organic, sponsorable, tuple(products), why, groups,
                 campaign, budget, {})
    state = _State(p)
    for pin in rules.pins:
        keyed = np.array([k == pin.key for k in slate.keys], dtype=bool)
        match = np.flatnonzero(organic & keyed & state.fits())
        if pin.position < config.k and pin.position not in p.pins and match.size:
            best = int(match[np.argmax(value[match])])  # a duplicated key: its best copy that fits
            state.place(best, sponsored=False)
            p.pins[pin.position] = best
    return p


class _State:
    """What a partial list has used: items, group counts, sponsored slots, budget."""

    def __init__(self, p: _Problem):
        self.p = p
        self.used = np.zeros(p.n, dtype=bool)
        self.counts = [np.zeros(caps.size, dtype=np.int64) for _, caps in p.groups]
        self.n_sponsored, self.budget = 0, p.budget.copy()

    def copy(self) -> _State:
        s = object.__new__(_State)
        s.p, s.used, s.counts = self.p, self.used.copy(), [c.copy() for c in self.counts]
        s.n_sponsored, s.budget = self.n_sponsored, self.budget.copy()
        return s

    def fits(self) -> np.ndarray:
        """(n,) bool: unused, and no dedupe / diversity cap full."""
        ok = ~self.used
        for (gid, caps), count in zip(self.p.groups, self.counts):
            ok &= count[gid] < caps[gid]
        return ok

    def options(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(n,) bool organic and sponsored placements allowed at position j."""
        p, fits = self.p, self.fits()
        cfg = p.config
        sp = (fits & p.sponsorable & (self.budget[p.campaign] >= p.slate.sponsored_bid)
              if j in cfg.sponsored_positions and self.n_sponsored < cfg.max_sponsored else np.zeros(p.n, bool))
        return fits & p.organic, sp

    def place(self, i: int, sponsored: bool) -> None:
        self.used[i] = True
        for (gid, _), count in zip(self.p.groups, self.counts):
            count[gid[i]] += 1
        if sponsored:
            self.n_sponsored += 1
            self.budget[self.p.campaign[i]] -= self.p.slate.sponsored_bid[i]


def _penalty(p: _Problem, above: list[int]) -> np.ndarray:
    """(n,) mmr_lambda * max similarity to the items above (0 with none above or MMR off)."""
    lam = p.config.mmr_lambda
    if lam == 0 or not above:
        return np.zeros(p.n)
    return lam * p.slate.similarity[above].max(axis=0)


def _best(p: _Problem, state: _State, j: int, above: list[int]) -> tuple[int, bool] | None:
    """The first of `_choices`, in O(n) numpy."""
    org, sp = state.options(j)
    if not (org.any() or sp.any()):
        return None
    pen = _penalty(p, above)
    so, ss = np.where(org, p.value - pen, -np.inf), np.where(sp, p.svalue - pen, -np.inf)
    io, isp = int(np.argmax(so)), int(np.argmax(ss))  # argmax: the lowest index among equals
    return (isp, True) if sp.any() and (not org.any() or ss[isp] > so[io]) else (io, False)


def _choices(p: _Problem, state: _State, j: int, above: list[int]) -> list[tuple[float, int, bool]]:
    """Allowed (score, item, sponsored) at position j, best first: score, organic first, index."""
    org, sp = state.options(j)
    pen = _penalty(p, above)
    out = [(float(p.value[i] - pen[i]), int(i), False) for i in np.flatnonzero(org)]
    out += [(float(p.svalue[i] - pen[i]), int(i), True) for i in np.flatnonzero(sp)]
    return sorted(out, key=lambda c: (-c[0], c[2], c[1]))


def _finish(p: _Problem, slots: list[tuple[int, bool, bool]]) -> Allocation:
    """Allocation from (item, sponsored, pinned) in display order, with objective and reasons."""
    order = np.array([s[0] for s in slots], dtype=np.int64)
    sponsored = np.array([s[1] for s in slots], dtype=bool)
    w, total = position_weights(len(slots)), 0.0
    for j, (i, sp, _) in enumerate(slots):
        total += float(w[j] * ((p.svalue[i] if sp else p.value[i]) - _penalty(p, order[:j].tolist())[i]))
    state = _State(p)
    for i, sp, _ in slots:
        state.place(i, sp)
    why, shown = list(p.why), set(order.tolist())
    for i in range(p.n):
        if i in shown:
            why[i] = None
        elif why[i] is None:
            full = [c[g[i]] >= caps[g[i]] for (g, caps), c in zip(p.groups, state.counts)]
            why[i] = "duplicate" if full[0] else "aisle_cap" if full[1] else "brand_cap" if full[2] else "outranked"
    for a in (order, sponsored):
        a.setflags(write=False)
    pinned = np.array([s[2] for s in slots], dtype=bool)
    pinned.setflags(write=False)
    return Allocation(order, sponsored, pinned, p.products, tuple(why), total)


def _compact(p: _Problem, fills: list[tuple[int, bool]]) -> list[tuple[int, bool, bool]]:
    """Pins at their positions, fills in the free ones top-down, and no holes."""
    slots: list[tuple[int, bool, bool]] = []
    rest = iter(fills)
    for j in range(p.config.k):
        if j in p.pins:
            slots.append((p.pins[j], False, True))
        elif (nxt := next(rest, None)) is not None:
            slots.append((*nxt, False))
        else:  # the fill ended: only pins below remain
            slots += [(p.pins[q], False, True) for q in sorted(p.pins) if q > j]
            break
    return slots


def _above(p: _Problem, fills: list[tuple[int, bool]], j: int) -> list[int]:
    return [s[0] for s in _compact(p, fills)[:j]]


def rerank(slate: Slate, config: RerankConfig, rules: Rules | None = None,
           now: datetime | None = None) -> Allocation:
    """The greedy allocation; `now` is needed when a rule has a time window."""
    p = _problem(slate, config, rules, now)
    state, fills = _State(p), []
    for i in p.pins.values():
        state.place(i, sponsored=False)
    for j in range(config.k):
        if j in p.pins:
            continue
        best = _best(p, state, j, _above(p, fills, j))
        if best is None:
            break
        i, sp = best
        state.place(i, sp)
        fills.append((i, sp))
    return _finish(p, _compact(p, fills))


def exact_rerank(slate: Slate, config: RerankConfig, rules: Rules | None = None,
                 now: datetime | None = None) -> Allocation:
    """The optimal allocation by enumeration (n <= 8): the oracle for `rerank`."""
    if len(slate) > EXACT_MAX:
        raise ValueError(f"slate: exact_rerank enumerates lists of at most {EXACT_MAX} candidates, got {len(slate)}")
    p = _problem(slate, config, rules, now)
    start = _State(p)
    for i in p.pins.values():
        start.place(i, sponsored=False)
    free = [j for j in range(config.k) if j not in p.pins]
    best: list = [-math.inf, None]

    def walk(state: _State, fills: list[tuple[int, bool]]) -> None:
        options = _choices(p, state, free[len(fills)], _above(p, fills, free[len(fills)])) \
            if len(fills) < len(free) else []
        if not options:  # like the greedy, a list ends only where nothing fits
            a = _finish(p, _compact(p, fills))
            if a.total > best[0] + 1e-12:
                best[:] = [a.total, a]
            return
        for _, i, sp in options:
            nxt = state.copy()
            nxt.place(i, sp)
            walk(nxt, fills + [(i, sp)])

    walk(start, [])
    return best[1]


@dataclass(frozen=True)
class SafeEpsilonGreedy:
    """With probability epsilon, one organic, unpinned slot in [first_slot, last_slot] is swapped.

    The slot is uniform over the explorable ones (those with an alternative), the new item uniform
    over the slot's pool: its greedy item plus every unshown item that is organic-eligible, has
    relevance >= max(relevance_floor, config.relevance_floor) and keeps every constraint in that slot.
    """

    epsilon: float                 # in [0, 1]
    first_slot: int = 0            # earliest position explored
    last_slot: int | None = None   # latest; None: the last shown
    relevance_floor: float = 0.0   # extra floor for explored items, in [0, 1]

    def __post_init__(self) -> None:
        for name, v in (("epsilon", self.epsilon), ("relevance_floor", self.relevance_floor)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {v!r}")
        for name, v in (("first_slot", self.first_slot), ("last_slot", self.last_slot)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{name}: expected an integer >= 0, got {v!r}")
        if self.last_slot is not None and self.last_slot < self.first_slot:
            raise ValueError(f"last_slot: must be >= first_slot={self.first_slot}, got {self.last_slot}")

    @property
    def name(self) -> str:
        last = "" if self.last_slot is None else str(self.last_slot)
        floor = "" if not self.relevance_floor else f",floor={self.relevance_floor:g}"
        return f"safe-eps({self.epsilon:g},slots={self.first_slot}..{last}{floor})"


@dataclass(frozen=True, eq=False)
class Explored:
    allocation: Allocation     # what is shown
    greedy: Allocation         # what the greedy alone shows
    ranking: Ranking           # order; item_propensity[j] = P(order[j] at j); list_propensity = P(this list)
    probabilities: np.ndarray  # (n, m) float64 P(candidate i at position j); each column sums to 1
    policy: str                # the logged policy id


def explore(slate: Slate, config: RerankConfig, policy: SafeEpsilonGreedy, rng: np.random.Generator,
            rules: Rules | None = None, now: datetime | None = None) -> Explored:
    """The greedy list, explored by `policy`, with the exact propensities off-policy estimators need.

    Propensities are over the policy's randomness for this request (slate, rules, now fixed): the
    greedy list is deterministic, so P(i at j) is 1 - e/S + e/(S m_j) for slot j's greedy item,
    e/(S m_j) for the rest of its pool of m_j, and exactly 1 outside the S explorable slots.
    """
    p = _problem(slate, config, rules, now)
    greedy = rerank(slate, config, rules, now)
    m, order = greedy.order.size, greedy.order
    base = _State(p)
    for i, sp in zip(order, greedy.sponsored):
        base.place(int(i), bool(sp))
    floor = max(policy.relevance_floor, config.relevance_floor)
    last = m - 1 if policy.last_slot is None else min(policy.last_slot, m - 1)
    pools: dict[int, np.ndarray] = {}
    for j in range(policy.first_slot, last + 1):
        if greedy.sponsored[j] or greedy.pinned[j]:
            continue
        s = base.copy()  # take the slot's item back out, then ask what else fits there
        g = int(order[j])
        s.used[g] = False
        for (gid, _), count in zip(p.groups, s.counts):
            count[gid[g]] -= 1
        alt = np.flatnonzero(s.fits() & p.organic & (slate.relevance >= floor))
        alt = alt[alt != g]
        if alt.size:
            pools[j] = np.concatenate([[g], alt])
    prob = np.zeros((p.n, m))  # (n, m) float64
    prob[order, np.arange(m)] = 1.0
    eps, S = float(policy.epsilon), len(pools)
    for j, pool in pools.items():
        prob[pool, j] = eps / (S * pool.size)
        prob[pool[0], j] = 1.0 - eps / S + eps / (S * pool.size)
    shown = order.copy()
    if S and rng.random() < eps:
        j = sorted(pools)[int(rng.integers(S))]
        shown[j] = pools[j][int(rng.integers(pools[j].size))]
    explored = greedy
    if not np.array_equal(shown, order):
        fills = [(int(i), bool(sp)) for i, sp, pin in zip(shown, greedy.sponsored, greedy.pinned) if not pin]
        explored = _finish(p, _compact(p, fills))
        why = list(explored.why)
        why[int(order[j])] = "explored_out"
        explored = Allocation(explored.order, explored.sponsored, explored.pinned, explored.product_ids,
                              tuple(why), explored.total)
    item = prob[shown, np.arange(m)].copy()
    moved = np.flatnonzero(shown != order)
    listp = float(item[moved[0]]) if moved.size else (
        1.0 - eps + sum(eps / (S * pool.size) for pool in pools.values()) if S else 1.0)
    prob.setflags(write=False)
    return Explored(explored, greedy, Ranking(shown, item, listp), prob, policy.name)
