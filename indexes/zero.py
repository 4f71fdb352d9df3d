"""Zero-prefix and history source: the empty box, and the shopper's own phrases as they type.

Popular now: phrases ranked by purchases in the current part of the day (orders' hour of day).
Personal: for a known user, phrases that lead to what they buy, with recent orders and reorders
counting most. In the empty box the user's list comes first and popular phrases fill the rest;
once they type, their own phrases that match what was typed (on any word) are offered first.
`observe(Purchase)` counts a purchase as the shopper's newest order at once, as a rebuild would
(but for the phrases beyond the KEEP stored per user, and the reorder bonus the event cannot say);
popular lists change only with a rebuild.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

from indexes.phrases import KINDS, PhraseTable
from suggest.events import Purchase
from suggest.types import Candidate, Dataset

__all__ = ["ZeroPrefixSource", "daypart"]

KEEP = 50                    # suggestions stored per user and per daypart
HALF_LIFE_ORDERS = 5.0       # a purchase this many orders ago counts half
_AGE = 0.5 ** (1.0 / HALF_LIFE_ORDERS)  # what one newer order does to the weight of the older ones
_EMPTY_BOX_KINDS = [KINDS.index(k) for k in ("product", "type", "brand_type", "query")]


def daypart(hour: int) -> int:
    """0 night, 1 morning, 2 afternoon, 3 evening."""
    return hour // 6


def _top(scores: dict[int, float], keep: int) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]


def _phrases_by_product(table: PhraseTable) -> list[list[int]]:
    """For each product row, the empty-box phrases leading to it, in phrase order."""
    phrase_of_link = np.repeat(np.arange(len(table), dtype=np.int32), np.diff(table.link_ptr))
    keep = np.isin(table.kinds[phrase_of_link], _EMPTY_BOX_KINDS)
    rows, phrases = table.link_idx[keep], phrase_of_link[keep]
    order = np.argsort(rows, kind="stable")
    ptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(table.product_ids)))])
    phrases = phrases[order].tolist()
    return [phrases[ptr[r]:ptr[r + 1]] for r in range(len(table.product_ids))]


def _specificity(table: PhraseTable) -> np.ndarray:
    """(n_phrases,) float64: a phrase leading to many products says less about what was bought."""
    return 1.0 / np.sqrt(np.diff(table.link_ptr).clip(min=1))


class ZeroPrefixSource:
    name = "zero"
    fallback = False

    def __init__(self, table: PhraseTable, popular: np.ndarray, popular_score: np.ndarray,
                 users: np.ndarray, user_ptr: np.ndarray, user_phrase: np.ndarray, user_score: np.ndarray,
                 user_norm: np.ndarray | None = None):
        self.table = table
        self.popular, self.popular_score = popular, popular_score  # (5, KEEP) int32 / float32; row 4 = all day
        self.users = users                # (n_users,) int64 sorted
        self.user_ptr = user_ptr          # (n_users + 1,) int64
        self.user_phrase = user_phrase    # (n_entries,) int32
        self.user_score = user_score      # (n_entries,) float32 in (0, 1]
        # (n_users,) float32: the raw weight a score of 1 stands for (older artifacts lack it: 1)
        self.user_norm = user_norm if user_norm is not None else np.ones(len(users), np.float32)
        # user -> (phrases, scores, norm) after observed purchases; replaced whole, so readers need no lock
        self._live: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        self._lock = threading.Lock()
        self._index: tuple[dict[int, int], list[list[int]], np.ndarray] | None = None

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset):
        row_of = {int(pid): i for i, pid in enumerate(table.product_ids)}
        phrases_of = _phrases_by_product(table)
        specificity = _specificity(table)
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
                for ph in phrases_of[row] if row is not None else ():
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
        return cls(table, popular, popular_score, users, *_csr(_top(per_user[u], KEEP) for u in users.tolist()))

    def history(self, user_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        phrases, scores, _ = self._entry(user_id)
        return phrases, scores

    def _entry(self, user_id: int | None) -> tuple[np.ndarray, np.ndarray, float]:
        live = self._live.get(user_id) if user_id is not None else None
        if live is not None:
            return live
        i = self._entry_index(user_id) if user_id is not None else None
        if i is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32), 1.0
        lo, hi = self.user_ptr[i], self.user_ptr[i + 1]
        return self.user_phrase[lo:hi], self.user_score[lo:hi], float(self.user_norm[i])

    def observe(self, record) -> None:
        """A purchase, as the user's newest order: older ones age by one order, its phrases join."""
        if not isinstance(record, Purchase):
            return
        with self._lock:  # one writer at a time; `history` reads the dict without it
            if self._index is None:
                self._index = ({int(p): i for i, p in enumerate(self.table.product_ids)},
                               _phrases_by_product(self.table), _specificity(self.table))
            row_of, phrases_of, specificity = self._index
            gain: dict[int, float] = defaultdict(float)
            for pid in record.product_ids:
                row = row_of.get(pid)
                for ph in phrases_of[row] if row is not None else ():
                    gain[ph] += specificity[ph]
            if not gain:  # nothing it bought leads to a phrase (unknown products)
                return
            phrases, scores, norm = self._entry(record.user_id)
            raw = {p: s * norm * _AGE for p, s in zip(phrases.tolist(), scores.tolist())}
            for ph, g in gain.items():
                raw[ph] = raw.get(ph, 0.0) + g
            top = _top(raw, KEEP)
            self._live[record.user_id] = (np.array([p for p, _ in top], np.int32),
                                          np.array([s / top[0][1] for _, s in top], np.float32), float(top[0][1]))

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
        users, ptr, phrase, score, norm = self.users, self.user_ptr, self.user_phrase, self.user_score, self.user_norm
        if self._live:  # observed purchases are kept too
            users = np.array(sorted(set(self.users.tolist()) | set(self._live)), np.int64)
            entries = (self._entry(u) for u in users.tolist())
            ptr, phrase, score, norm = _csr([list(zip(p.tolist(), (s * n).tolist())) for p, s, n in entries])
        np.savez(directory / "zero.npz", popular=self.popular, popular_score=self.popular_score, users=users,
                 user_ptr=ptr, user_phrase=phrase, user_score=score, user_norm=norm)

    @classmethod
    def load(cls, directory: Path, table: PhraseTable):
        with np.load(directory / "zero.npz", allow_pickle=False) as z:
            return cls(table, **{k: z[k] for k in z.files})

    def __len__(self) -> int:
        return len(self.users) + sum(1 for u in self._live if self._entry_index(u) is None)

    def _entry_index(self, user_id: int) -> int | None:
        i = int(np.searchsorted(self.users, user_id))
        return i if i < len(self.users) and self.users[i] == user_id else None


def _csr(tops) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ptr, phrase, score, norm) arrays from each user's [(phrase, raw weight)], best first."""
    ptr, phrase, score, norm = [0], [], [], []
    for top in tops:
        phrase += [p for p, _ in top]
        score += [s / top[0][1] for _, s in top]
        norm.append(top[0][1])
        ptr.append(len(phrase))
    return (np.array(ptr, np.int64), np.array(phrase, np.int32), np.array(score, np.float32),
            np.array(norm, np.float32))
