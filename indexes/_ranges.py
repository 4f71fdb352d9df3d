"""Sorted keys with weight-ordered prefix lookups; the shared core of the trie-based sources.

Keys that share a prefix form one contiguous run of the sorted key list, so a prefix lookup is
two bisections and a top-k over the run. Runs longer than `heavy` (the short prefixes) have their
top `keep` phrases precomputed and found through a marisa-trie, so a one-letter prefix costs
about what a long one does.
"""

from __future__ import annotations

from bisect import bisect_left
from pathlib import Path

import marisa_trie
import numpy as np

_END = "\U0010ffff"


class SortedKeys:
    def __init__(self, keys: list[str], phrase: np.ndarray, offset: np.ndarray,
                 heavy: marisa_trie.Trie, heavy_top: np.ndarray):
        self.keys = keys              # sorted
        self.phrase = phrase          # (n_keys,) int32 phrase id of each key; ids are ranks, 0 = heaviest
        self.offset = offset          # (n_keys,) int32 char offset of the key inside its phrase
        self.heavy = heavy            # heavy prefix -> row of heavy_top
        self.heavy_top = heavy_top    # (n_heavy, keep) int32 key index, best distinct phrases first, -1 pad

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, entries: list[tuple[str, int, int]], heavy: int = 256, keep: int = 64) -> "SortedKeys":
        """entries: (key, phrase id, offset); phrase ids are ranks (PhraseTable sorts by weight)."""
        entries = sorted(entries)
        keys = [k for k, _, _ in entries]
        phrase = np.array([p for _, p, _ in entries], dtype=np.int32)
        offset = np.array([o for _, _, o in entries], dtype=np.int32)
        self = cls(keys, phrase, offset, marisa_trie.Trie(), np.zeros((0, keep), np.int32))
        heavy_prefixes: list[str] = []
        level = {""}
        depth = 0
        while level:
            depth += 1
            nxt = set()
            for parent in level:
                lo, hi = self.span(parent)
                for key in {k[:depth] for k in keys[lo:hi] if len(k) >= depth}:
                    a, b = self.span(key)
                    if b - a > heavy:
                        nxt.add(key)
            heavy_prefixes += sorted(nxt)
            level = nxt
        trie = marisa_trie.Trie(heavy_prefixes)
        top = np.full((len(trie), keep), -1, dtype=np.int32)
        for prefix in heavy_prefixes:
            best = self._scan(*self.span(prefix), keep, None)
            top[trie[prefix], :len(best)] = best
        self.heavy, self.heavy_top = trie, top
        return self

    def span(self, prefix: str) -> tuple[int, int]:
        keys = self.keys
        return bisect_left(keys, prefix), bisect_left(keys, prefix + _END)

    def top(self, prefix: str, k: int, phrase_mask: np.ndarray | None = None) -> np.ndarray:
        """Key indices of the k best distinct phrases whose key starts with prefix."""
        lo, hi = self.span(prefix)
        if hi - lo > 0 and prefix in self.heavy:
            row = self.heavy_top[self.heavy[prefix]]
            row = row[row >= 0]
            if phrase_mask is not None:
                row = row[phrase_mask[self.phrase[row]]]
            if len(row) >= k:
                return row[:k]
        return self._scan(lo, hi, k, phrase_mask)

    def _scan(self, lo: int, hi: int, k: int, phrase_mask: np.ndarray | None) -> np.ndarray:
        idx = np.arange(lo, hi, dtype=np.int32)
        if phrase_mask is not None:
            idx = idx[phrase_mask[self.phrase[idx]]]
        ranks = self.phrase[idx]
        if len(idx) > 4 * k:  # most of a long run cannot make the top k
            cut = ranks <= np.partition(ranks, 4 * k - 1)[4 * k - 1]
            best = self._distinct(idx[cut], ranks[cut])
            if len(best) >= k:
                return best[:k]
        return self._distinct(idx, ranks)[:k]

    @staticmethod
    def _distinct(idx: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        order = np.argsort(ranks, kind="stable")
        idx, ranks = idx[order], ranks[order]
        distinct = np.ones(len(idx), dtype=bool)
        distinct[1:] = ranks[1:] != ranks[:-1]  # one phrase's keys share its rank, so repeats are adjacent
        return idx[distinct]

    def save(self, directory: Path, name: str) -> None:
        (directory / f"{name}.keys.txt").write_text("\n".join(self.keys), encoding="utf-8")
        self.heavy.save(str(directory / f"{name}.heavy.marisa"))
        np.savez(directory / f"{name}.npz", phrase=self.phrase, offset=self.offset, heavy_top=self.heavy_top)

    @classmethod
    def load(cls, directory: Path, name: str) -> "SortedKeys":
        text = (directory / f"{name}.keys.txt").read_text(encoding="utf-8")
        keys = text.split("\n") if text else []
        heavy = marisa_trie.Trie()
        heavy.load(str(directory / f"{name}.heavy.marisa"))
        with np.load(directory / f"{name}.npz", allow_pickle=False) as z:
            return cls(keys, z["phrase"], z["offset"], heavy, z["heavy_top"])
