"""Lexical product retrieval for search: BM25 over product text, typo correction, query relaxation.

A product's text is its name, aisle and department ("Organic Bananas fresh fruits produce"),
normalised and singularised (suggest.text) so that "apples" finds "apple"; apostrophes are dropped
("jerry's" = "jerrys" = "jerry") and "-ie" meets singular()'s "-y" ("cookie" = "cookies" = "cooky").
Scores are bm25s's Lucene variant with k1 = 1.5, b = 0.75: idf = ln(1 + (N - df + 0.5) / (df + 0.5))
times tf / (tf + k1 (1 - b + b |d| / avgdl)), Lucene's formula without its constant factor (k1 + 1),
so it ranks the same.

A search is conjunctive: a product matches when it holds every query term, and matches are ordered
by score, then popularity, then catalog order. First each term missing from the vocabulary becomes
its closest vocabulary term (Damerau distance 1, 2 from 8 characters, first letter exact, the most
frequent term among the closest: SymSpell's symmetric deletes, built once). When fewer than
FEW_RESULTS products hold every term, a term the catalog holds is also read as such a neighbour
held EXPAND_RATIO times as often: the catalog has rare spellings of its own ("yoghurt" in 24
products, "yogurt" in 1338), and a typo can land on one. When no allowed product
holds every term the query is relaxed to the largest set of its terms that some product holds, and
among those sets the one whose best product scores highest. That keeps the specific word: for
"organic chocolate kombucha" it keeps "kombucha", where dropping the rarest term first would drop it.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from indexes.fuzzy import max_edits
from suggest.text import normalize, singular
from suggest.types import Dataset

__all__ = ["LexicalIndex", "LexicalHits", "analyze", "K1", "B", "MAX_TERMS"]

K1, B, METHOD = 1.5, 0.75, "lucene"
MAX_TERMS = 16     # query terms beyond this many are ignored (each match is kept as a bit set)
EXPAND_RATIO = 20  # a known term is also read as a neighbour this many times more frequent ...
FEW_RESULTS = 10   # ... when fewer products than this hold every term as typed


@dataclass(frozen=True, eq=False)
class LexicalHits:
    """What a search found, and what it searched for once corrected and relaxed."""

    product_ids: np.ndarray                   # (n,) int64, best first, n <= k
    scores: np.ndarray                        # (n,) float32 BM25 of the query actually searched
    total: int                                # products that match, of which these are the best k
    query: str                                # the text searched: corrections made, dropped words gone
    corrections: tuple[tuple[str, str], ...]  # (typed word unknown to the catalog, the term read instead)
    dropped: tuple[str, ...]                  # words relaxed away because no product held them all
    expansions: tuple[tuple[str, str], ...]   # (known but rare word, frequent term also matched)

    @property
    def relaxed(self) -> bool:
        """True when the results are for `query` rather than the text as typed ("showing results for")."""
        return bool(self.dropped)

    def __len__(self) -> int:
        return len(self.product_ids)


def _words(text: str) -> list[tuple[str, str]]:
    """(word as typed and normalised, index term) for each word holding a letter or digit."""
    out = []
    for word in normalize(text).split():
        term = singular(word.replace("'", ""))
        if len(term) >= 5 and term.endswith("ie"):
            term = term[:-2] + "y"  # singular() reads "cookies" as "cooky": "cookie" must meet it there
        if any(c.isalnum() for c in term):
            out.append((word, term))
    return out


def analyze(text: str) -> list[str]:
    """The index terms of a text, in order: what documents and queries are both reduced to."""
    return [term for _, term in _words(text)]


def _deletes(word: str, d: int) -> set[str]:
    """The word and every string d or fewer deleted characters away from it."""
    out = frontier = {word}
    for _ in range(d):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out = out | frontier
    return out


def _osa_within(a: str, b: str, cap: int) -> int:
    """Optimal string alignment distance of a and b, or cap + 1 once it must exceed cap."""
    if abs(len(a) - len(b)) > cap:
        return cap + 1
    prev2, prev = [], list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        if min(row) > cap:
            return cap + 1
        prev2, prev = prev, row
    return prev[-1]


class _Speller:
    """Symmetric deletes over the vocabulary (SymSpell): a word and a term within d edits share a
    string d deletions from each, so candidates come from a sorted array of hashed deletions and
    the true distance decides. The first letter is never edited, so deletions skip it."""

    def __init__(self, terms: list[str], freq: np.ndarray):
        self.terms, self.freq = terms, freq
        keys, ids = [], []
        for i, t in enumerate(terms):  # hash() is salted per process: rebuilt on load, never saved
            if len(t) >= 3 and t.isalpha():
                # a word within 2 edits of a term has 8+ characters only if the term has 6+
                for s in _deletes(t[1:], 2 if len(t) >= 6 else 1):
                    keys.append(hash((t[0], s)))
                    ids.append(i)
        keys_arr = np.array(keys, dtype=np.int64)
        order = np.argsort(keys_arr, kind="stable")
        self._keys = keys_arr[order]                          # (n_deletions,) int64, sorted
        self._ids = np.array(ids, dtype=np.int32)[order]      # (n_deletions,) int32 term id

    def correct(self, word: str, min_freq: int = 0) -> str | None:
        """The closest other vocabulary term within max_edits(len(word)) held by min_freq or more
        products, the most frequent on a tie."""
        d = max_edits(len(word))
        if d == 0 or not word.isalpha():
            return None
        probes = np.array([hash((word[0], s)) for s in _deletes(word[1:], d)], dtype=np.int64)
        lo, hi = np.searchsorted(self._keys, probes, "left"), np.searchsorted(self._keys, probes, "right")
        best = None
        for i in {int(i) for a, b in zip(lo.tolist(), hi.tolist()) for i in self._ids[a:b]}:
            term = self.terms[i]
            if term == word or self.freq[i] < min_freq:
                continue
            e = _osa_within(word, term, d)
            if e <= d and (best is None or (e, -self.freq[i], term) < best):
                best = (e, -self.freq[i], term)
        return None if best is None else best[2]


class LexicalIndex:
    name = "lexical"

    def __init__(self, bm25: bm25s.BM25, product_ids: np.ndarray, popularity: np.ndarray, shown: list[str]):
        self.bm25 = bm25
        self.product_ids = product_ids    # (n_products,) int64, rows in catalog order (as PhraseTable's)
        self.popularity = popularity      # (n_products,) float32 sales: breaks ties in score
        self.vocab: dict[str, int] = bm25.vocab_dict
        self.terms = sorted(self.vocab, key=self.vocab.get)
        self.shown = shown                # per term id: how a correction to it is written ("cooky" -> "cookies")
        self._indices, self._indptr = bm25.scores["indices"], bm25.scores["indptr"]
        self.doc_freq = np.diff(self._indptr)  # (n_terms,) products holding each term
        self._speller = _Speller(self.terms, self.doc_freq)
        self._neighbours: dict[int, int] = {}  # term id -> _frequent_neighbour, filled as queries ask
        by_popularity = np.lexsort((np.arange(len(product_ids)), -popularity))
        self._tie = np.empty(len(product_ids), np.int64)   # (n_products,) rank by popularity
        self._tie[by_popularity] = np.arange(len(product_ids))

    @classmethod
    def build(cls, data: Dataset) -> "LexicalIndex":
        catalog = data.catalog
        docs = [_words(f"{p.name} {catalog.aisles.get(p.aisle_id, '')} {catalog.departments.get(p.department_id, '')}")
                for p in catalog.products]
        spellings: dict[str, Counter] = {}
        for doc in docs:
            for word, term in doc:
                spellings.setdefault(term, Counter())[word] += 1
        vocab = {t: i for i, t in enumerate(sorted(spellings))}  # sorted: byte-stable builds
        shown = [t if t in spellings[t] else min(spellings[t].items(), key=lambda wn: (-wn[1], wn[0]))[0]
                 for t in vocab]  # how the catalog most often spells each term
        bm25 = bm25s.BM25(k1=K1, b=B, method=METHOD)
        bm25.index(([[vocab[t] for _, t in doc] for doc in docs], vocab), create_empty_token=False, show_progress=False)
        sales: Counter = Counter(data.anonymous_lines)
        for order in data.orders:
            sales.update(order.product_ids)
        return cls(bm25, np.array([p.product_id for p in catalog.products], dtype=np.int64),
                   np.array([sales[p.product_id] for p in catalog.products], dtype=np.float32), shown)

    def _frequent_neighbour(self, tid: int) -> int:
        """A term within reach that the catalog holds EXPAND_RATIO times as often ("yoghurt" -> "yogurt"), or -1."""
        if tid not in self._neighbours:
            near = self._speller.correct(self.terms[tid], min_freq=EXPAND_RATIO * int(self.doc_freq[tid]))
            self._neighbours[tid] = -1 if near is None else self.vocab[near]
        return self._neighbours[tid]

    def _read(self, text: str, expand: bool) -> tuple[list[tuple[str, tuple[int, ...]]], list, list]:
        """([(word shown, term ids that satisfy it: none when unknown)], corrections, expansions) for the
        first MAX_TERMS distinct words; with `expand`, known terms also take their frequent neighbours."""
        seen, words, corrections, expansions = set(), [], [], []
        for word, term in _words(text):
            tid = self.vocab.get(term, -1)
            if tid >= 0:
                near = self._frequent_neighbour(tid) if expand else -1
                alts = (tid,) if near < 0 else (tid, near)
            else:
                fixed = self._speller.correct(term)
                alts = () if fixed is None else (self.vocab[fixed],)
            key = alts or term
            if key in seen or len(words) == MAX_TERMS:
                continue
            seen.add(key)
            if len(alts) == 2:
                expansions.append((word, self.shown[alts[1]]))
            elif alts and alts[0] != tid:
                corrections.append((word, self.shown[alts[0]]))
                word = self.shown[alts[0]]
            words.append((word, alts))
        return words, corrections, expansions

    def search(self, text: str, k: int, product_mask: np.ndarray | None = None) -> LexicalHits:
        """The k best products holding every (corrected) term, among those product_mask allows
        ((n_products,) bool, rows as `product_ids`); relaxed when none holds them all."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k!r}")
        if product_mask is not None and np.shape(product_mask) != (len(self),):
            raise ValueError(f"product_mask must have shape ({len(self)},), got {np.shape(product_mask)}")
        mask = None if product_mask is None else np.asarray(product_mask, dtype=bool)
        words, corrections, expansions = self._read(text, expand=False)
        bits, scores, full = self._match(words, mask)
        if np.count_nonzero(bits == full) < FEW_RESULTS:
            wider = self._read(text, expand=True)
            if wider[0] != words:
                words, corrections, expansions = wider
                bits, scores, full = self._match(words, mask)
        wanted = full if full and (bits == full).any() else self._best_subset(bits, scores)
        matched = np.flatnonzero(bits == wanted) if wanted else np.zeros(0, np.int64)
        rows = self._top(matched, scores, k)
        known = [i for i, (_, alts) in enumerate(words) if alts]
        kept = {i for bit, i in enumerate(known) if int(wanted) >> bit & 1}
        return LexicalHits(self.product_ids[rows], scores[rows].astype(np.float32), len(matched),
                           " ".join(w for i, (w, _) in enumerate(words) if i in kept), tuple(corrections),
                           tuple(w for i, (w, _) in enumerate(words) if i not in kept), tuple(expansions))

    def _match(self, words, mask) -> tuple[np.ndarray, np.ndarray, np.uint32]:
        """(which known words each allowed product holds as bits, BM25 scores, the bits of all known words)."""
        known = [alts for _, alts in words if alts]
        bits = np.zeros(len(self), np.uint32)  # (n_products,)
        for bit, alts in enumerate(known):
            for tid in alts:
                bits[self._indices[self._indptr[tid]:self._indptr[tid + 1]]] |= np.uint32(1 << bit)
        if mask is not None:
            bits[~mask] = 0
        tids = sorted({tid for alts in known for tid in alts})
        scores = self.bm25.get_scores_from_ids(tids) if tids else np.zeros(len(self), np.float32)  # (n_products,)
        return bits, scores, np.uint32((1 << len(known)) - 1)

    def relax(self, text: str, product_mask: np.ndarray | None = None) -> str:
        """The best query with results that keeps the most of the text ("" when no word is known)."""
        return self.search(text, 1, product_mask).query

    def _best_subset(self, bits: np.ndarray, scores: np.ndarray) -> np.uint32:
        """The term set of the best-scoring product among those holding the most terms (0: none)."""
        rows = np.flatnonzero(bits)
        if len(rows) == 0:
            return np.uint32(0)
        held = np.unpackbits(bits[rows].view(np.uint8).reshape(-1, 4), axis=1).sum(axis=1)  # (n,) popcount
        rows = rows[held == held.max()]
        return bits[self._top(rows, scores, 1)[0]]

    def _top(self, rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        """The k of `rows` with the highest score, ties to the more popular, then the earlier row."""
        if len(rows) > k > 0:
            floor = np.partition(scores[rows], len(rows) - k)[len(rows) - k]
            rows = rows[scores[rows] >= floor]  # keeps every row tied at the k-th score
        return rows[np.lexsort((self._tie[rows], -scores[rows]))][:k]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.bm25.save(directory / "bm25", show_progress=False)
        np.save(directory / "product_ids.npy", self.product_ids)
        np.save(directory / "popularity.npy", self.popularity)
        (directory / "shown.txt").write_text("\n".join(self.shown), encoding="utf-8")
        (directory / "lexical.json").write_text(json.dumps(
            {"k1": K1, "b": B, "method": METHOD, "products": len(self), "terms": len(self.terms)}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        directory = Path(directory)
        meta = json.loads((directory / "lexical.json").read_text())
        bm25 = bm25s.BM25.load(directory / "bm25", show_progress=False)
        index = cls(bm25, np.load(directory / "product_ids.npy"), np.load(directory / "popularity.npy"),
                    (directory / "shown.txt").read_text(encoding="utf-8").split("\n"))
        if len(index) != meta["products"]:
            raise ValueError(f"{directory} holds {len(index)} products, its lexical.json says {meta['products']}")
        return index

    def __len__(self) -> int:
        return len(self.product_ids)
