"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009) of ranked id lists.

An item's fused score is the sum over the lists holding it of weight / (k + rank), rank from 1.
It needs no score calibration between retrievers (BM25 scores and cosines are not comparable),
only their orders; k = 60 is the paper's value, which damps the weight of the very top ranks.
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["reciprocal_rank_fusion", "RRF_K"]

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: float = RRF_K,
                           weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """(id, fused score) for every id in any ranking, best first.

    An id repeated within one ranking counts at its first position (the others keep theirs). Equal scores go to the id
    with the better best rank, then to the one whose best rank is in the earlier ranking, then
    to the smaller id, so the order never depends on hashing or on float summation order."""
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    elif len(weights) != len(rankings):
        raise ValueError(f"weights has {len(weights)} entries for {len(rankings)} rankings")
    elif not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)!r}")
    parts: dict[int, list[float]] = {}
    best: dict[int, tuple[int, int]] = {}  # id -> (best rank, ranking that has it)
    for r, (ranking, w) in enumerate(zip(rankings, weights)):
        seen: set[int] = set()
        for rank, item in enumerate(ranking, start=1):
            item = int(item)
            if item in seen:
                continue
            seen.add(item)
            parts.setdefault(item, []).append(w / (k + rank))
            if item not in best or rank < best[item][0]:
                best[item] = (rank, r)
    fused = [(item, math.fsum(p)) for item, p in parts.items()]  # fsum: exact, so order-free
    fused.sort(key=lambda x: (-x[1], best[x[0]], x[0]))
    return fused
