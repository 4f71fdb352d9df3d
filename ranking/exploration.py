"""Logging policies: turn a scored candidate list into the k shown, with exact propensities.

Off-policy estimators need, for each logged list, the probability the logging policy had of
showing it (`list_propensity`) and of showing each item where it stood (`item_propensity`); to
evaluate a target policy on logged lists they need the same numbers from `list_probability` and
`position_probabilities`. Every policy here computes them exactly:

    Greedy         top-k by score, ties to the lower index; propensities 1
    EpsilonGreedy  greedy, but with probability epsilon one slot holds a uniform draw from the pool
    PlackettLuce   k draws without replacement, P(i) proportional to exp(score_i / temperature)

Randomness comes only from the `numpy.random.Generator` passed to `rank`. When k exceeds the
number of candidates n, all n are shown; every array below has that many columns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Ranking", "Policy", "Greedy", "EpsilonGreedy", "PlackettLuce"]


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare fields explicitly
class Ranking:
    order: np.ndarray            # (k,) int64 indices into the candidate list, position 0 first
    item_propensity: np.ndarray  # (k,) float64 P(order[j] is shown at position j)
    list_propensity: float       # P(this exact ordered list)
    exact: bool = True           # False where item_propensity is a Monte Carlo estimate

    def __post_init__(self) -> None:
        self.order.setflags(write=False)
        self.item_propensity.setflags(write=False)


@runtime_checkable
class Policy(Protocol):
    @property
    def name(self) -> str:
        """The logged policy id, e.g. "eps-greedy(0.1)"."""

    def rank(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Ranking: ...

    def list_probability(self, scores: np.ndarray, k: int, order: np.ndarray) -> float:
        """P(the policy shows exactly `order`), for evaluating it on lists another policy logged."""

    def position_probabilities(self, scores: np.ndarray, k: int) -> np.ndarray:
        """(n, k) float64: P(candidate i is shown at position j)."""


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    return float(value)


def _index(field: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{field}: expected an integer >= {low}, got {value!r}")


def _short(x: float) -> str:
    """The shortest spelling that still names x exactly: names are policy ids."""
    return f"{x:g}" if float(f"{x:g}") == x else repr(float(x))


def _inputs(scores: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Validated (n,) float64 scores and the number shown, min(k, n)."""
    _index("k", k, 1)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores: expected a non-empty 1-D array, got shape {s.shape}")
    if not np.isfinite(s).all():  # inf - inf is NaN inside every softmax below
        raise ValueError(f"scores: must be finite, got {s[~np.isfinite(s)][:3].tolist()}")
    return s, min(int(k), s.size)


def _order(order: np.ndarray, n: int, k: int) -> np.ndarray:
    o = np.asarray(order)
    if o.shape != (k,) or not np.issubdtype(o.dtype, np.integer):
        raise ValueError(f"order: expected {k} integer indices, got {o.tolist()!r}")
    if ((o < 0) | (o >= n)).any() or np.unique(o).size != k:
        raise ValueError(f"order: indices must be distinct and in 0..{n - 1}, got {o.tolist()}")
    return o.astype(np.int64)


def _greedy(s: np.ndarray) -> np.ndarray:
    return np.argsort(-s, kind="stable")  # stable: ties go to the lower index


@dataclass(frozen=True)
class Greedy:
    """The top k by score; deterministic, so every propensity is 1 (or 0 off the list)."""

    @property
    def name(self) -> str:
        return "greedy"

    def rank(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Ranking:
        s, k = _inputs(scores, k)
        return Ranking(_greedy(s)[:k].astype(np.int64), np.ones(k), 1.0)

    def list_probability(self, scores: np.ndarray, k: int, order: np.ndarray) -> float:
        s, k = _inputs(scores, k)
        return float(np.array_equal(_order(order, s.size, k), _greedy(s)[:k]))

    def position_probabilities(self, scores: np.ndarray, k: int) -> np.ndarray:
        s, k = _inputs(scores, k)
        out = np.zeros((s.size, k))  # (n, k) float64
        out[_greedy(s)[:k], np.arange(k)] = 1.0
        return out


@dataclass(frozen=True)
class EpsilonGreedy:
    """The greedy list; with probability `epsilon` one slot holds a uniform draw from the pool.

    The pool is every candidate not shown at another position (so it holds the greedy item for
    the slot, which keeps probability 1 - epsilon + epsilon / m), cut to the top `explore_from`
    by score when that is set. A `slot` past the shown list explores the last position.
    """

    epsilon: float                   # probability of exploring, in [0, 1]
    slot: int | None = None          # position explored; None: the last shown position
    explore_from: int | None = None  # pool depth in greedy ranks; None: every candidate

    def __post_init__(self) -> None:
        if not 0.0 <= _number("epsilon", self.epsilon) <= 1.0:
            raise ValueError(f"epsilon: must be in [0, 1], got {self.epsilon!r}")
        if self.slot is not None:
            _index("slot", self.slot, 0)
        if self.explore_from is not None:
            _index("explore_from", self.explore_from, 1)

    @property
    def name(self) -> str:
        slot = "" if self.slot is None else f",slot={self.slot}"
        depth = "" if self.explore_from is None else f",from={self.explore_from}"
        return f"eps-greedy({_short(self.epsilon)}{slot}{depth})"

    def _plan(self, s: np.ndarray, k: int) -> tuple[np.ndarray, int, np.ndarray, float, float]:
        """Greedy list (k,), slot, pool (m,) with the greedy item first, P(stay), P(each move)."""
        ranked = _greedy(s).astype(np.int64)
        j = k - 1 if self.slot is None else min(self.slot, k - 1)
        depth = s.size if self.explore_from is None else min(s.size, max(self.explore_from, k))
        pool = np.concatenate([ranked[j:j + 1], ranked[k:depth]])
        m, eps = pool.size, float(self.epsilon)
        # 1 - eps * (m-1)/m rather than 1 - eps + eps/m: exactly 1 when the pool is one item
        return ranked[:k], j, pool, 1.0 - eps * (m - 1) / m, eps / m

    def rank(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Ranking:
        s, k = _inputs(scores, k)
        greedy, j, pool, stay, move = self._plan(s, k)
        order = greedy.copy()
        if rng.random() < self.epsilon:
            order[j] = pool[rng.integers(pool.size)]
        prop = np.ones(k)
        prop[j] = stay if order[j] == greedy[j] else move
        return Ranking(order, prop, float(prop[j]))

    def list_probability(self, scores: np.ndarray, k: int, order: np.ndarray) -> float:
        s, k = _inputs(scores, k)
        o = _order(order, s.size, k)
        greedy, j, pool, stay, move = self._plan(s, k)
        if not np.array_equal(np.delete(o, j), np.delete(greedy, j)) or o[j] not in pool:
            return 0.0
        return stay if o[j] == greedy[j] else move

    def position_probabilities(self, scores: np.ndarray, k: int) -> np.ndarray:
        s, k = _inputs(scores, k)
        greedy, j, pool, stay, move = self._plan(s, k)
        out = np.zeros((s.size, k))  # (n, k) float64
        out[greedy, np.arange(k)] = 1.0
        out[pool, j] = move
        out[greedy[j], j] = stay
        return out


# Position marginals: enumerated up to _ENUMERATE_MAX candidates, else by quadrature (see _race).
_ENUMERATE_MAX = 8
_LOG_T_LO = math.log(1e-18)  # the mass any item has before this time is < 1e-18
_MAX_LOG_SPAN = 400.0        # weights spanning more than ~e^355 near the top k: Monte Carlo instead
_CHUNK = 1 << 21             # float64 elements per working array
_MC_SAMPLES, _MC_SEED = 20_000, 0


@dataclass(frozen=True)
class PlackettLuce:
    """k draws without replacement, each with P(i) proportional to exp(score_i / temperature).

    `list_propensity` and `list_probability` are the exact product of the sequential choice
    probabilities. `position_probabilities` (and so `item_propensity`) are exact: enumerated over
    all ordered lists for n <= 8; for larger n, a quadrature of the exponential-race integral that
    matches enumeration to ~1e-12 relative. Only when the weights that decide the top k span more
    than ~e^355 is it a seeded Monte Carlo estimate (20,000 Gumbel-top-k samples), and then
    `Ranking.exact` is False; such an estimate can be 0 for an item that was shown.
    """

    temperature: float  # > 0; low approaches greedy, high approaches uniform
    # False: skip the per-item marginals (about a millisecond each list) and log the exact list
    # propensity only; item_propensity is then NaN and Ranking.exact False. For fast simulation.
    item_propensities: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < _number("temperature", self.temperature) < np.inf:
            raise ValueError(f"temperature: must be finite and > 0, got {self.temperature!r}")

    @property
    def name(self) -> str:
        return f"pl(t={_short(self.temperature)})"  # item_propensities changes what is logged, not the policy

    def _walk(self, s: np.ndarray, k: int,
              pick: Callable[[int, np.ndarray, np.ndarray], int]) -> tuple[np.ndarray, np.ndarray]:
        """(k,) int64 order, (k,) float64 choice probabilities; pick(step, rest, p) -> i in rest."""
        alive = np.ones(s.size, dtype=bool)
        order, probs = np.empty(k, dtype=np.int64), np.empty(k)
        for step in range(k):
            rest = np.flatnonzero(alive)
            w = np.exp((s[rest] - s[rest].max()) / self.temperature)  # the best remaining weighs 1
            p = w / w.sum()
            i = pick(step, rest, p)
            order[step], probs[step] = rest[i], p[i]
            alive[rest[i]] = False
        return order, probs

    def rank(self, scores: np.ndarray, k: int, rng: np.random.Generator) -> Ranking:
        s, k = _inputs(scores, k)
        z = (s - s.max()) / self.temperature
        # Gumbel-top-k draws an ordered list with exactly the sequential Plackett-Luce law, in one step.
        order = np.argsort(-(z + rng.gumbel(size=z.size)), kind="stable")[:k].astype(np.int64)
        list_propensity = self.list_probability(s, k, order)  # the same arithmetic an estimator will redo
        if not self.item_propensities:
            return Ranking(order, np.full(k, np.nan), list_propensity, exact=False)
        item, exact = self._marginals(s, k, order, cols=np.arange(k))
        return Ranking(order, item, list_propensity, exact)

    def list_probability(self, scores: np.ndarray, k: int, order: np.ndarray) -> float:
        s, k = _inputs(scores, k)
        o = _order(order, s.size, k)
        _, probs = self._walk(s, k, lambda step, rest, p: int(np.searchsorted(rest, o[step])))
        return float(np.prod(probs))

    def position_probabilities(self, scores: np.ndarray, k: int) -> np.ndarray:
        s, k = _inputs(scores, k)
        return self._marginals(s, k, np.arange(s.size))[0]

    def _marginals(self, s: np.ndarray, k: int, rows: np.ndarray,
                   cols: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        """P(rows[r] at position j): (len(rows), k), or (len(rows),) at j = cols[r]; and exact?"""
        def pick(p: np.ndarray) -> np.ndarray:
            return p[rows] if cols is None else p[rows, cols]
        if s.size <= _ENUMERATE_MAX:
            return pick(self._enumerate(s, k)), True
        z = (s - s.max()) / self.temperature  # log-weights, the best is 0
        # Once k items at least this heavy have arrived, nothing lighter can still be in the top k.
        z_ref = np.sort(z)[::-1][min(k, s.size - 1)]
        span = math.log(50.0) - z_ref - _LOG_T_LO  # log-time range holding all but ~e^-50 of it
        if not span <= _MAX_LOG_SPAN:
            return pick(_monte_carlo(z, k)), False
        # The integrand narrows like 1/sqrt(position); this step held ~1e-13 relative up to k=50.
        step = min(0.25, 0.5 / math.sqrt(k))
        log_t = _LOG_T_LO + step * np.arange(int(span / step) + 2)
        return _race(z, k, rows, log_t, cols), True

    def _enumerate(self, s: np.ndarray, k: int) -> np.ndarray:
        """(n, k) by summing every ordered k-list's probability, computed as _walk does."""
        lists = np.array(list(itertools.permutations(range(s.size), k)), dtype=np.int64)  # (L, k)
        at = np.arange(len(lists))
        alive = np.ones((len(lists), s.size), dtype=bool)
        prob = np.ones(len(lists))
        for step in range(k):
            rest = np.where(alive, s, -np.inf)  # (L, n)
            w = np.exp((rest - rest.max(axis=1, keepdims=True)) / self.temperature)
            prob *= w[at, lists[:, step]] / w.sum(axis=1)
            alive[at, lists[:, step]] = False
        out = np.zeros((s.size, k))
        np.add.at(out, (lists, np.broadcast_to(np.arange(k), lists.shape)), prob[:, None])
        return out


def _race(z: np.ndarray, k: int, rows: np.ndarray, log_t: np.ndarray,
          cols: np.ndarray | None) -> np.ndarray:
    """P(rows[r] at position j) under Plackett-Luce with log-weights z, by quadrature.

    (len(rows), k) for every j, or (len(rows),) at j = cols[r]. Plackett-Luce is an exponential
    race: item i arrives at E_i ~ Exp(e^z_i) and the list is the arrival order. So P(i at j) is
    the integral of i's arrival density times P(exactly j others arrived by then), a
    Poisson-binomial whose leave-i-out counts join the counts among the items before i and after
    it. In log-time the integrand is analytic in a strip of half-width pi/2, so the trapezoid rule
    on the evenly spaced `log_t` converges like exp(-pi^2 / step) for a fixed position; every term
    is positive, so there is no cancellation.
    """
    n, step = z.size, log_t[1] - log_t[0]
    out = np.zeros((rows.size, k) if cols is None else rows.size)
    width = max(1, _CHUNK // (rows.size * k))
    for lo in range(0, log_t.size, width):
        u = np.minimum(z[:, None] + log_t[None, lo:lo + width], 700.0)  # (n, q) log(rate * time)
        rate_t = np.exp(u)
        stay, gone = np.exp(-rate_t), -np.expm1(-rate_t)  # P(not yet / already arrived)
        before = _arrival_counts(stay, gone, k, rows)                      # (r, k, q) items < i
        after = _arrival_counts(stay[::-1], gone[::-1], k, n - 1 - rows)   # (r, k, q) items > i
        density = step * np.exp(u[rows] - rate_t[rows])  # (r, q) rate * t * e^(-rate t) dlog t
        if cols is None:
            others = np.zeros_like(before)               # (r, k, q) counts among the others
            for c in range(k):
                others[:, c:] += before[:, c, None] * after[:, :k - c]
            out += np.einsum("rq,rcq->rc", density, others)
        else:  # only the coefficient cols[r] of each row's convolution: r * q * k, not * k
            lag = cols[:, None] - np.arange(k)           # (r, k) index into `after`; < 0: no term
            mirrored = np.take_along_axis(after, np.maximum(lag, 0)[:, :, None], axis=1)
            out += np.einsum("rq,rcq,rc->r", density, before * mirrored, lag >= 0)
    return out


def _arrival_counts(stay: np.ndarray, gone: np.ndarray, k: int, at: np.ndarray) -> np.ndarray:
    """(len(at), k, q) P(c of the first l items arrived) for l in `at` (distinct), c < k."""
    n, q = stay.shape
    slot = np.full(n, -1)
    slot[at] = np.arange(at.size)
    out = np.empty((at.size, k, q))
    counts = np.zeros((k, q))  # over the items so far; count-major keeps each update contiguous
    counts[0] = 1.0
    for item in range(int(at.max()) + 1):
        if slot[item] >= 0:
            out[slot[item]] = counts
        moved = counts[:-1] * gone[item]
        counts *= stay[item]
        counts[1:] += moved
    return out


def _monte_carlo(z: np.ndarray, k: int) -> np.ndarray:
    """(n, k) position frequencies of Gumbel-top-k samples, seeded so the estimate is a function."""
    rng = np.random.default_rng(_MC_SEED)
    counts = np.zeros((z.size, k))
    batch = max(1, _CHUNK // z.size)
    for done in range(0, _MC_SAMPLES, batch):
        keys = z + rng.gumbel(size=(min(batch, _MC_SAMPLES - done), z.size))  # (b, n)
        top = np.argsort(-keys, axis=1)[:, :k]                               # (b, k)
        np.add.at(counts, (top, np.broadcast_to(np.arange(k), top.shape)), 1.0)
    return counts / _MC_SAMPLES
