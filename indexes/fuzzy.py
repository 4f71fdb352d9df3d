"""Typo-tolerant prefix source: Damerau (optimal string alignment) distance to a phrase prefix.

The typed text matches a phrase when some prefix of the phrase lies within 1 edit (texts of 4+
characters) or 2 edits (8+) and the first characters agree (Lucene's FuzzySuggester default,
`nonFuzzyPrefix=1`: shoppers rarely mistype the first letter, and it cuts the search ~40x). The phrase trie is walked one level at a time with every surviving
node's DP row in one numpy array, computing only the diagonal band that can stay within budget.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexes._ranges import SortedKeys
from indexes.phrases import PhraseTable
from indexes.prefix import PrefixSource
from suggest.types import Candidate, Dataset

__all__ = ["TypoSource", "max_edits", "TYPO_DISCOUNT"]

TYPO_DISCOUNT = 0.1  # per edit: an exact match outranks a typo match of equal weight
MAX_DEPTH = 48       # the trie stores phrase prefixes up to this many characters


def max_edits(n_chars: int) -> int:
    return 2 if n_chars >= 8 else 1 if n_chars >= 4 else 0


class _Trie:
    """Character trie over sorted keys, nodes in depth-first order; node 0 is the root."""

    def __init__(self, char, depth, first_key, child_ptr, child_ids):
        self.char = char            # (n_nodes,) int32 code point of the edge into the node
        self.depth = depth          # (n_nodes,) int16
        self.first_key = first_key  # (n_nodes,) int32 first key below the node
        self.child_ptr = child_ptr  # (n_nodes + 1,) int64
        self.child_ids = child_ids  # (n_nodes - 1,) int32, grouped by parent, in char order

    @classmethod
    def build(cls, keys: list[str]) -> "_Trie":
        parent, char, depth, first = [-1], [0], [0], [0]
        stack, prev = [0], ""
        for i, key in enumerate(keys):
            key = key[:MAX_DEPTH]
            lcp = 0
            for a, b in zip(prev, key):
                if a != b:
                    break
                lcp += 1
            del stack[lcp + 1:]
            for ch in key[lcp:]:
                parent.append(stack[-1])
                char.append(ord(ch))
                depth.append(len(stack))
                first.append(i)
                stack.append(len(parent) - 1)
            prev = key
        parent_arr = np.array(parent[1:], dtype=np.int64)
        child_ids = (np.argsort(parent_arr, kind="stable") + 1).astype(np.int32)
        child_ptr = np.searchsorted(parent_arr[child_ids - 1], np.arange(len(parent) + 1)).astype(np.int64)
        return cls(np.array(char, np.int32), np.array(depth, np.int16), np.array(first, np.int32),
                   child_ptr, child_ids)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"char": self.char, "depth": self.depth, "first_key": self.first_key,
                "child_ptr": self.child_ptr, "child_ids": self.child_ids}

    def within(self, query: str, d: int) -> list[tuple[int, int]]:
        """(node, edits) for nodes whose prefix is within d edits of query and closer than any ancestor."""
        q = np.array([ord(c) for c in query], dtype=np.int32)
        n, cap = len(q), d + 1
        qp = np.concatenate([[-2, -2], q])  # qp[j + 1] is q[j - 1], qp[j] is q[j - 2]; -2 matches no char
        frontier = np.zeros(1, np.int64)
        rows = np.minimum(np.arange(n + 1), cap).astype(np.int16)[None, :]   # (m, n+1) DP rows
        parent_rows = rows.copy()                                          # rows of the frontier's parents
        chars = np.full(1, -1, np.int32)
        best = np.full(1, cap, np.int16)                                   # closest accepted ancestor
        found: list[tuple[int, int]] = []
        for t in range(1, n + d + 1):
            starts, ends = self.child_ptr[frontier], self.child_ptr[frontier + 1]
            counts = ends - starts
            total = int(counts.sum())
            if total == 0:
                break
            par = np.repeat(np.arange(len(frontier)), counts)
            children = self.child_ids[np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(total)]
            c = self.char[children][:, None]
            up = rows[par]
            lo, hi = max(1, t - d), min(n, t + d)
            cols = np.arange(lo, hi + 1)
            # Substitution and deletion for the whole band at once ...
            base = np.minimum(up[:, cols] + 1, up[:, cols - 1] + (c != qp[cols + 1]))
            if t >= 2:
                swap = (c == qp[cols]) & (chars[par][:, None] == qp[cols + 1])
                base = np.where(swap, np.minimum(base, parent_rows[par][:, cols - 2] + 1), base)
            # ... then insertions, a running minimum: D[j] = min_i (base[i] + j - i).
            new = np.full((total, n + 1), cap, np.int16)
            new[:, 0] = min(t, cap)
            left = new[:, lo - 1:lo] if lo == 1 else np.full((total, 1), cap, np.int16)
            band = np.concatenate([left, base], axis=1) - np.arange(lo - 1, hi + 1)
            new[:, lo:hi + 1] = np.minimum(np.minimum.accumulate(band, axis=1)[:, 1:] + cols, cap)
            last = new[:, n]
            accept = (last < best[par]) & ((c[:, 0] == q[0]) if t == 1 else True)
            if accept.any():
                found += zip(children[accept].tolist(), last[accept].tolist())
            best_here = np.where(accept, last, best[par])
            alive = np.minimum(new[:, lo:hi + 1].min(axis=1), new[:, 0]) <= d
            keep = alive & (best_here > 0)
            if t == 1:
                keep &= c[:, 0] == q[0]  # the first character is not fuzzy
            frontier, rows, parent_rows = children[keep].astype(np.int64), new[keep], up[keep]
            chars, best = c[keep, 0], best_here[keep]
        return found


class TypoSource:
    """Typo matches fill the list only when exact matches are too few: a misspelt popular phrase
    must not push out what the shopper actually typed ("organic gl" is not "organic bl...")."""

    name = "typo"
    fallback = True

    def __init__(self, table: PhraseTable, keys: SortedKeys, trie: _Trie):
        self.table, self.keys, self.trie = table, keys, trie

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset | None = None):
        keys = PrefixSource.build(table).keys
        return cls(table, keys, _Trie.build(keys.keys))

    def candidates(self, text, k, phrase_mask=None, user_id=None, hour=None) -> list[Candidate]:
        d = max_edits(len(text))
        if d == 0 or len(text) + d > MAX_DEPTH:
            return []
        edits: dict[int, tuple[int, int]] = {}  # phrase -> (edits, matched prefix length)
        for node, e in sorted(self.trie.within(text, d), key=lambda ne: ne[1]):
            depth = int(self.trie.depth[node])
            prefix = self.keys.keys[int(self.trie.first_key[node])][:depth]
            for i in self.keys.top(prefix, 2 * k, phrase_mask).tolist():
                phrase = int(self.keys.phrase[i])
                if phrase not in edits or edits[phrase][0] > e:
                    edits[phrase] = (e, depth)
        priors = self.table.priors
        out = [Candidate(p, self.name, float(priors[p]) * TYPO_DISCOUNT ** e, ((0, depth),), e)
               for p, (e, depth) in edits.items() if e > 0]
        out.sort(key=lambda c: (-c.prior, c.phrase_id))
        return out[:k]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.keys.save(directory, self.name)
        np.savez(directory / "trie.npz", **self.trie.arrays())

    @classmethod
    def load(cls, directory: Path, table: PhraseTable):
        with np.load(directory / "trie.npz", allow_pickle=False) as z:
            trie = _Trie(**{k: z[k] for k in z.files})
        return cls(table, SortedKeys.load(directory, cls.name), trie)

    def __len__(self) -> int:
        return len(self.keys)
