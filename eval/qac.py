"""Query auto-completion metrics, as pure functions over ranked suggestion lists.

The replay protocol (Bar-Yossef & Kraus, "Context-sensitive query auto-completion", WWW 2011):
a shopper who wants one product types its name one character at a time, and after each
character the system shows a ranked list. A suggestion *hits* when the target product id is in
its `product_ids`. Bar-Yossef & Kraus score each list by the reciprocal rank of the target and
use Most Popular Completion (MPC, rank the completions of the prefix by past frequency) as the
baseline; we do the same.

    hit rank            1-based rank of the first hitting suggestion in the top k; 0 when none
    RR@k                1 / hit rank, 0 when none
    success@k           1 if some suggestion in the top k hits, else 0
    keystrokes saved@k  (n - i) / n for the first typed length i (1..n) at which the target is in
                        the top k, n = len(text); 0 if it never is (finding it only once the whole
                        text is typed saves nothing)

Aggregation: a target's MRR@k (success@k) is the mean of its RR@k (success@k) over the typed
prefix lengths 1..n, and the reported value is the mean over targets, so long names do not weigh
more than short ones. `/len=L` keys are the means at prefix length L over the targets at least L
characters long; `len=0` is the empty box (zero-prefix suggestions), kept out of the overall means.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from suggest.types import Suggestion

__all__ = ["hit_rank", "reciprocal_rank", "success", "keystrokes_saved", "aggregate", "mrr_by_length",
           "REPORTED_LENGTHS"]

REPORTED_LENGTHS = (0, 1, 2, 3, 5, 8)


def hit_rank(target: int, ranked: Sequence[Suggestion], k: int) -> int:
    """1-based rank of the first suggestion in the top k that leads to the target; 0 when none does."""
    for rank, s in enumerate(ranked[:k], start=1):
        if target in s.product_ids:
            return rank
    return 0


def reciprocal_rank(target: int, ranked: Sequence[Suggestion], k: int) -> float:
    rank = hit_rank(target, ranked, k)
    return 1.0 / rank if rank else 0.0


def success(target: int, ranked: Sequence[Suggestion], k: int) -> float:
    return 1.0 if hit_rank(target, ranked, k) else 0.0


def keystrokes_saved(target: int, per_prefix: Sequence[Sequence[Suggestion]], k: int) -> float:
    """per_prefix[i - 1] is the list shown after typing i characters of an n = len(per_prefix) character text."""
    return _saved([hit_rank(target, ranked, k) for ranked in per_prefix])


def _saved(typed_ranks: Sequence[int]) -> float:
    n = len(typed_ranks)
    first = next((i for i, rank in enumerate(typed_ranks, start=1) if rank), n)
    return (n - first) / n if n else 0.0


def aggregate(ranks: Sequence[Sequence[int]], k: int) -> dict[str, float]:
    """Metrics keyed by short names; ranks[t][i] is target t's `hit_rank(..., k)` at prefix length i (0 = empty box)."""
    rr = [np.array([1.0 / r if r else 0.0 for r in row]) for row in ranks]  # (n_i + 1,) per target
    typed = [row[1:] for row in rr if len(row) > 1]
    out = {
        f"mrr@{k}": float(np.mean([row.mean() for row in typed])) if typed else 0.0,
        f"success@{k}": float(np.mean([(row > 0).mean() for row in typed])) if typed else 0.0,
    }
    for length in REPORTED_LENGTHS:
        at = np.array([row[length] for row in rr if len(row) > length])
        out[f"mrr@{k}/len={length}"] = float(at.mean()) if len(at) else 0.0
        out[f"success@{k}/len={length}"] = float((at > 0).mean()) if len(at) else 0.0
    out[f"keystrokes_saved@{k}"] = float(np.mean([_saved(row[1:]) for row in ranks])) if ranks else 0.0
    return out


def mrr_by_length(ranks: Sequence[Sequence[int]], max_length: int) -> list[tuple[int, float, int]]:
    """(prefix length, MRR, targets that long) for lengths 0..max_length; for plots."""
    out = []
    for length in range(max_length + 1):
        at = [1.0 / row[length] if row[length] else 0.0 for row in ranks if len(row) > length]
        if at:
            out.append((length, float(np.mean(at)), len(at)))
    return out
