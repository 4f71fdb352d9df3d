"""Brute-force oracles on random data for the prefix, any-word and typo sources.

Random phrases over a four-letter alphabet make shared prefixes, repeats and near-misses common,
which is where the indexes' shortcuts (heavy-prefix tables, banded DP, pruning) could go wrong.
"""

import random

import numpy as np
import pytest

from indexes._ranges import SortedKeys
from indexes.fuzzy import TypoSource, max_edits
from indexes.phrases import PhraseTable
from indexes.prefix import InfixSource, PrefixSource


def osa(a: str, b: str) -> int:
    """Optimal string alignment distance, the textbook O(len(a) * len(b)) table."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def prefix_distance(query: str, phrase: str) -> int:
    return min(osa(query, phrase[:i]) for i in range(len(phrase) + 1))


def random_table(rng: random.Random, n: int) -> PhraseTable:
    texts = set()
    while len(texts) < n:
        words = ["".join(rng.choice("abcd") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 3))]
        texts.add(" ".join(words))
    texts = sorted(texts, key=lambda t: rng.random())  # ids are ranks: phrase 0 is the heaviest
    n = len(texts)
    return PhraseTable(texts, np.linspace(1.0, 0.01, n).astype(np.float32), np.zeros(n, np.uint8),
                       np.arange(n + 1, dtype=np.int64), np.arange(n, dtype=np.int32), np.arange(n, dtype=np.int32),
                       np.zeros(n, np.int32), np.zeros(n, np.int32), np.ones(n, np.float32), {})


def random_query(rng: random.Random, table: PhraseTable) -> str:
    text = rng.choice(table.texts)[: rng.randint(1, 12)]
    if rng.random() < 0.7 and len(text) > 1:  # make a typo or two
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(text))
            op = rng.choice("sidt")
            if op == "s":
                text = text[:i] + rng.choice("abcd ") + text[i + 1:]
            elif op == "i":
                text = text[:i] + rng.choice("abcd") + text[i:]
            elif op == "d" and len(text) > 1:
                text = text[:i] + text[i + 1:]
            elif i + 1 < len(text):
                text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text.strip() or "a"


@pytest.mark.parametrize("seed", range(4))
def test_prefix_and_infix_against_a_scan(seed):
    rng = random.Random(seed)
    table = random_table(rng, 400)
    # heavy=8 so that many prefixes go through the precomputed table, not only the scan
    prefix = PrefixSource(table, SortedKeys.build(PrefixSource._entries(table), heavy=8, keep=6))
    infix = InfixSource(table, SortedKeys.build(InfixSource._entries(table), heavy=8, keep=6))
    for _ in range(150):
        q = rng.choice(table.texts)[: rng.randint(1, 6)].strip() or "a"
        k = rng.choice([1, 3, 10, 40])
        mask = np.array([rng.random() < 0.5 for _ in table.texts]) if rng.random() < 0.5 else None
        ok = (lambda i: True) if mask is None else (lambda i: mask[i])
        want = [i for i, t in enumerate(table.texts) if t.startswith(q) and ok(i)][:k]
        assert [c.phrase_id for c in prefix.candidates(q, k, mask)] == want, q
        want = [i for i, t in enumerate(table.texts)
                if any(w.startswith(q) for w in [t[j + 1:] for j, ch in enumerate(t) if ch == " "]) and ok(i)][:k]
        assert [c.phrase_id for c in infix.candidates(q, k, mask)] == want, q


@pytest.mark.parametrize("seed", range(4))
def test_typo_against_brute_force_distance(seed):
    rng = random.Random(100 + seed)
    table = random_table(rng, 250)
    typo = TypoSource.build(table)
    for _ in range(60):
        q = random_query(rng, table)
        budget = max_edits(len(q))
        want = {}
        for i, t in enumerate(table.texts):
            e = prefix_distance(q, t)
            if 1 <= e <= budget and t[0] == q[0]:  # the first character is not fuzzy
                want[i] = e
        got = {c.phrase_id: c.edits for c in typo.candidates(q, 1000)}
        assert got == want, q


def test_distance_helper_sanity():
    assert osa("ab", "ba") == 1           # a transposition is one edit
    assert prefix_distance("bananna", "banana chips") == 1
    assert prefix_distance("xyz", "banana") == 3
