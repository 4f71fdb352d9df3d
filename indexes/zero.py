"""Zero-prefix and history source: the empty box, and the shopper's own phrases as they type.

Popular now: phrases ranked by purchases in the current part of the day (orders' hour of day).
Personal: for a known user, phrases that lead to what they buy, with recent orders and reorders
counting most. In the empty box the user's list comes first and popular phrases fill the rest;
once they type, their own phrases that match what was typed (on any word) are offered first.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from indexes.phrases import KINDS, PhraseTable
from suggest.types import Candidate, Dataset

__all__ = ["ZeroPrefixSource", "daypart"]

KEEP = 50                    # suggestions stored per user and per daypart
HALF_LIFE_ORDERS = 5.0       # a purchase this many orders ago counts half
_EMPTY_BOX_KINDS = {KINDS.index(k) for k in ("product", "type", "brand_type", "query")}


def daypart(hour: int) -> int:
    """0 night, 1 morning, 2 afternoon, 3 evening."""
    return hour // 6


def _top(scores: dict[int, float], keep: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]


class ZeroPrefixSource:
    name = "zero"
    fallback = False

    def __init__(self, table: PhraseTable, popular: np.ndarray, popular_score: np.ndarray,
                 users: np.ndarray, user_ptr: np.ndarray, user_phrase: np.ndarray, user_score: np.ndarray):
        self.table = table
        self.popular, self.popular_score = popular, popular_score  # (5, KEEP) int32 / float32; row 4 = all day
        self.users = users                # (n_users,) int64 sorted
        self.user_ptr = user_ptr          # (n_users + 1,) int64
        self.user_phrase = user_phrase    # (n_entries,) int32
        self.user_score = user_score      # (n_entries,) float32 in (0, 1]

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset):
        row_of = {int(pid): i for i, pid in enumerate(table.product_ids)}
        phrases_of: dict[int, list[int]] = defaultdict(list)  # product row -> empty-box phrases leading to it
        for ph in range(len(table)):
            if int(table.kinds[ph]) in _EMPTY_BOX_KINDS:
                for row in table.links(ph).tolist():
                    phrases_of[row].append(ph)
        specificity = 1.0 / np.sqrt(np.diff(table.link_ptr).clip(min=1))
        by_part = [defaultdict(float) for _ in range(5)]
        per_user: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
        last = defaultdict(int)
        for order in data.orders:
            last[order.user_id] = max(last[order.user_id], order.order_number)
        for order in data.orders:
            decay = 0.5 ** ((last[order.user_id] - order.order_number) / HALF_LIFE_ORDERS)
            reordered = order.reordered or (False,) * len(order.product_ids)
            for pid, again in zip(order.product_ids, reordered):
                row = row_of.get(pid)
                for ph in phrases_of.get(row, ()):
                    by_part[4][ph] += 1.0
                    if order.hour is not None:
                        by_part[daypart(order.hour)][ph] += 1.0
                    per_user[order.user_id][ph] += decay * (2.0 if again else 1.0) * specificity[ph]
        popular = np.full((5, KEEP), -1, np.int32)
        popular_score = np.zeros((5, KEEP), np.float32)
        if not by_part[4]:  # no orders at all: fall back to the phrases' own weights
            by_part[4] = {ph: float(table.weights[ph]) for ph in range(min(len(table), KEEP))}
        for part in range(5):
            top = _top(by_part[part] or by_part[4], KEEP)
            popular[part, :len(top)] = [p for p, _ in top]
            popular_score[part, :len(top)] = [s / top[0][1] for _, s in top]
        users = np.array(sorted(per_user), dtype=np.int64)
        ptr, phrase, score = [0], [], []
        for u in users.tolist():
            top = _top(per_user[u], KEEP)
            phrase += [p for p, _ in top]
            score += [s / top[0][1] for _, s in top]
            ptr.append(len(phrase))
        return cls(table, popular, popular_score, users, np.array(ptr, np.int64),
                   np.array(phrase, np.int32), np.array(score, np.float32))

    def history(self, user_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        if user_id is None or len(self.users) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        i = int(np.searchsorted(self.users, user_id))
        if i == len(self.users) or self.users[i] != user_id:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        lo, hi = self.user_ptr[i], self.user_ptr[i + 1]
        return self.user_phrase[lo:hi], self.user_score[lo:hi]

    def _typed(self, text: str, k: int, phrase_mask, user_id) -> list[Candidate]:
        out = []
        for ph, s in zip(*(a.tolist() for a in self.history(user_id))):
            start = (" " + self.table.texts[ph]).find(" " + text)
            if start >= 0 and (phrase_mask is None or phrase_mask[ph]):
                out.append(Candidate(ph, "history", 0.5 + 0.5 * s, ((start, start + len(text)),)))
                if len(out) == k:
                    break
        return out

    def candidates(self, text, k, phrase_mask=None, user_id=None, hour=None) -> list[Candidate]:
        if text:
            return self._typed(text, k, phrase_mask, user_id)
        part = daypart(hour) if hour is not None else 4
        lists = [(*self.history(user_id), "history", 0.5),
                 (self.popular[part], self.popular_score[part], "popular", 0.0)]
        out, seen = [], set()
        for phrases, scores, label, floor in lists:
            for ph, s in zip(phrases.tolist(), scores.tolist()):
                if ph < 0 or ph in seen or (phrase_mask is not None and not phrase_mask[ph]):
                    continue
                seen.add(ph)
                # History always outranks popularity: its priors lie in [0.5, 1], popular ones in [0, 0.5].
                out.append(Candidate(ph, label, floor + 0.5 * s))
                if len(out) == k:
                    return out
        if len(out) < k and phrase_mask is not None:  # a narrow filter: fall back to the filtered weights
            for ph in np.flatnonzero(phrase_mask)[: 4 * k].tolist():
                if ph not in seen:
                    out.append(Candidate(ph, "popular", 0.5 * float(self.table.priors[ph])))
                    seen.add(ph)
            out.sort(key=lambda c: (-c.prior, c.phrase_id))
        return out[:k]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "zero.npz", popular=self.popular, popular_score=self.popular_score, users=self.users,
                 user_ptr=self.user_ptr, user_phrase=self.user_phrase, user_score=self.user_score)

    @classmethod
    def load(cls, directory: Path, table: PhraseTable):
        with np.load(directory / "zero.npz", allow_pickle=False) as z:
            return cls(table, **{k: z[k] for k in z.files})

    def __len__(self) -> int:
        return len(self.users)
