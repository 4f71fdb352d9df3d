"""BM25 product retrieval: hand-picked catalogs, a brute-force BM25 oracle, a brute-force speller, the real catalog."""

import math
import random
from itertools import combinations

import numpy as np
import pytest

from indexes.fuzzy import max_edits
from indexes.lexical import B, K1, LexicalIndex, analyze
from suggest.loaders import load_data
from suggest.types import Catalog, Dataset, Order, Product
from tests.test_oracles import osa


def catalog_index(rows, sales=None) -> LexicalIndex:
    """rows: (name, aisle, department); product ids 1..n; sales: product id -> units sold."""
    aisles = {n: a for n, a in enumerate(sorted({r[1] for r in rows}), 1)}
    departments = {n: d for n, d in enumerate(sorted({r[2] for r in rows}), 1)}
    aisle_id = {a: n for n, a in aisles.items()}
    department_id = {d: n for n, d in departments.items()}
    products = tuple(Product(i, name, aisle_id[a], department_id[d]) for i, (name, a, d) in enumerate(rows, 1))
    orders = tuple(Order(n, 1, n, (pid,) * units) for n, (pid, units) in enumerate((sales or {}).items(), 1))
    return LexicalIndex.build(Dataset(Catalog(products, aisles, departments), orders))


GROCERY = [
    ("Organic Whole Milk", "milk", "dairy eggs"),           # 1
    ("Greek Yogurt Plain", "yogurt", "dairy eggs"),         # 2
    ("Bananas", "fresh fruits", "produce"),                 # 3
    ("Honeycrisp Apple", "fresh fruits", "produce"),        # 4
    ("Banana Bread", "bread", "bakery"),                    # 5
    ("Chocolate Chip Cookies", "cookies cakes", "snacks"),  # 6
    ("Organic Kombucha Ginger", "tea", "beverages"),        # 7
    ("Organic Milk Chocolate Bar", "candy chocolate", "snacks"),  # 8
    ("Strawberry Yogurt", "yogurt", "dairy eggs"),          # 9
    ("Almond Milk Unsweetened", "milk", "dairy eggs"),      # 10
]


@pytest.fixture(scope="module")
def grocery():
    return catalog_index(GROCERY, sales={3: 50, 5: 2, 9: 7})


def ids(hits):
    return hits.product_ids.tolist()


def test_the_obvious_product_ranks_first(grocery):
    assert ids(grocery.search("whole milk", 5))[0] == 1        # only product with both words
    assert ids(grocery.search("greek yogurt", 5)) == [2]       # conjunctive: strawberry yogurt is not greek
    assert ids(grocery.search("chocolate chip cookies", 3))[0] == 6
    hits = grocery.search("milk", 10)
    assert set(ids(hits)) == {1, 8, 10} and list(hits.scores) == sorted(hits.scores, reverse=True)
    assert grocery.search("milk", 2).total == 3              # all that match, however few are asked for
    assert hits.product_ids.dtype == np.int64 and hits.scores.dtype == np.float32


def test_plural_and_singular_find_each_other(grocery):
    assert 4 in ids(grocery.search("apples", 5))               # "Honeycrisp Apple"
    assert 3 in ids(grocery.search("banana", 5))               # "Bananas"
    assert ids(grocery.search("Bananas!", 5)) == ids(grocery.search("banana", 5))
    assert analyze("Ben & Jerry's Cookies") == ["ben", "jerry", "cooky"]  # "&" is no term, 's dropped
    assert ids(grocery.search("cookie", 5)) == [6]             # "cookie" and "cookies" meet at "cooky"
    assert grocery.search("cokie", 5).corrections == (("cokie", "cookies"),)  # shown as the catalog spells it


def test_typo_is_corrected_and_reported(grocery):
    hits = grocery.search("bananna bread", 5)
    assert hits.corrections == (("bananna", "banana"),)
    assert ids(hits) == [5] and hits.query == "banana bread" and not hits.relaxed
    assert grocery.search("yogrut", 5).corrections == (("yogrut", "yogurt"),)       # a swap is one edit
    assert grocery.search("strwbery yogurt", 5).corrections == (("strwbery", "strawberry"),)  # 8 letters: 2 edits
    assert grocery.search("yugrot", 5).corrections == ()       # 6 letters: two edits is too far
    assert grocery.search("vanana", 5).corrections == ()       # the first letter is never corrected
    assert grocery.search("mlk", 5).corrections == ()          # three letters are too few to correct


def test_a_rare_spelling_also_reads_as_the_common_one_when_results_are_few():
    rows = [(f"Yoghurt v{i}", "dairy", "dairy") for i in range(10)] + \
           [(f"Yogurt v{i}", "dairy", "dairy") for i in range(200)]  # 20 times as frequent
    index = catalog_index(rows)
    hits = index.search("yoghurt", 20)                   # ten products hold it: enough, nothing added
    assert sorted(ids(hits)) == list(range(1, 11)) and hits.expansions == ()
    hits = index.search("yoghurt v3", 5)                 # one product holds both words: few
    assert hits.expansions == (("yoghurt", "yogurt"),) and hits.corrections == ()
    assert ids(hits) == [4, 14] and hits.query == "yoghurt v3" and not hits.relaxed  # the typed spelling first


def test_mask_is_respected_and_still_fills_k():
    rows = [(f"Yogurt {w}", "yogurt", "dairy") for w in "abcdefgh"] + \
           [(f"Frozen Yogurt Bar {w}", "ice cream", "frozen") for w in "abcdefgh"]
    index = catalog_index(rows)
    frozen = np.array([r[2] == "frozen" for r in rows])
    assert not frozen[index.search("yogurt", 5).product_ids - 1].any()   # unmasked, the short names win
    hits = index.search("yogurt", 5, product_mask=frozen)
    assert len(hits) == 5 and frozen[hits.product_ids - 1].all()


def test_zero_results_are_relaxed_to_the_best_query(grocery):
    hits = grocery.search("organic chocolate kombucha", 5)
    # no product holds all three; two products hold two; the kombucha one scores higher (rarer term)
    assert hits.relaxed and hits.dropped == ("chocolate",) and hits.query == "organic kombucha"
    assert ids(hits) == [7]
    assert grocery.relax("organic chocolate kombucha") == "organic kombucha"
    assert grocery.relax("greek yogurt") == "greek yogurt"      # nothing to relax
    hits = grocery.search("milk qqqqqqqqq", 5)                  # unknown and too far from any term
    assert hits.dropped == ("qqqqqqqqq",) and set(ids(hits)) == {1, 8, 10}
    empty = grocery.search("zzz qqq", 5)
    assert len(empty) == 0 and empty.query == "" and empty.dropped == ("zzz", "qqq")


def test_empty_queries_and_k(grocery):
    for text in ("", "   ", "!!! &"):
        hits = grocery.search(text, 5)
        assert len(hits) == 0 and hits.query == "" and not hits.relaxed
    assert len(grocery.search("milk", 0)) == 0
    assert len(grocery.search("milk", 2)) == 2


@pytest.mark.parametrize("kwargs, match", [
    ({"k": -1}, "k must be >= 0"),
    ({"k": 5, "product_mask": np.ones(3, bool)}, r"product_mask must have shape \(10,\)"),
])
def test_invalid_inputs(grocery, kwargs, match):
    with pytest.raises(ValueError, match=match):
        grocery.search("milk", **kwargs)


def test_score_ties_go_to_the_popular_product(grocery):
    # "Bananas" (3) and "Banana Bread" (5) both hold "banana" once in three terms: equal BM25
    hits = grocery.search("banana", 5)
    assert hits.scores[0] == hits.scores[1] and ids(hits) == [3, 5]
    assert ids(catalog_index(GROCERY, sales={5: 9}).search("banana", 5)) == [5, 3]


def test_save_load_round_trip(world, tmp_path):
    index = LexicalIndex.build(world)
    index.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    mask = np.arange(len(index)) % 3 == 0
    assert len(loaded) == len(index) == len(world.catalog)
    for q in ["banana", "greek yogurt", "bananna", "oat milks", "organic chocolate kombucha", "zz", ""]:
        for m in (None, mask):
            a, b = index.search(q, 10, m), loaded.search(q, 10, m)
            assert ids(a) == ids(b) and a.scores.tolist() == b.scores.tolist()
            assert (a.query, a.corrections, a.dropped) == (b.query, b.corrections, b.dropped)


# --- oracles -------------------------------------------------------------------------------------

def _bm25(docs, query):
    """Lucene BM25 without its constant (k1 + 1), term by term from the textbook definition."""
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for doc in docs:
        s = 0.0
        for t in set(query):
            tf, df = doc.count(t), sum(t in d for d in docs)
            if tf:
                s += math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + K1 * (1 - B + B * len(doc) / avgdl))
        out.append(s)
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_bm25_matches_a_brute_force_oracle(seed):
    """Words of 1-3 letters from "abcd": too short to correct, never plural, often shared."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice("abcd") for _ in range(rng.randint(1, 3))) for _ in range(14)})
    rows = [(" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))), "x", "y") for _ in range(40)]
    index = catalog_index(rows, sales={i: rng.randint(0, 3) for i in range(1, 41)})
    docs = [analyze(f"{name} {a} {d}") for name, a, d in rows]
    for _ in range(25):
        query = [rng.choice(words + ["ddd"]) for _ in range(rng.randint(1, 4))]  # "ddd" may be unknown
        expected = _bm25(docs, query)
        known = [t for t in dict.fromkeys(query) if t in index.vocab]
        if known:  # bm25s's own scores agree with the oracle
            np.testing.assert_allclose(index.bm25.get_scores_from_ids([index.vocab[t] for t in known]), expected,
                                       rtol=1e-5, atol=1e-6)
        # the best relaxed query: the most terms some product holds, then the best product's score
        held = {}
        for size in range(len(known), 0, -1):
            for kept in combinations(known, size):
                rows_ok = [i for i, doc in enumerate(docs) if all(t in doc for t in kept)]
                if rows_ok:
                    held[kept] = max(_bm25(docs, list(kept))[rows_ok])
            if held:
                break
        hits = index.search(" ".join(query), 40)
        if not held:
            assert len(hits) == 0
            continue
        best = max(held.values())
        assert math.isclose(float(hits.scores[0]), best, rel_tol=1e-5)
        kept = hits.query.split()
        assert tuple(kept) in held and math.isclose(held[tuple(kept)], best, rel_tol=1e-5)
        rows_ok = [i for i, doc in enumerate(docs) if all(t in doc for t in kept)]
        exp = _bm25(docs, kept)[[i - 1 for i in ids(hits)]]
        assert sorted(ids(hits)) == [i + 1 for i in rows_ok]
        np.testing.assert_allclose(hits.scores, exp, rtol=1e-5)
        assert np.all(np.diff(exp) <= 1e-5)  # best first


@pytest.mark.parametrize("seed", range(4))
def test_speller_matches_a_brute_force_scan(seed):
    """Random words over "abcde" (near-misses are common); document frequency decides ties."""
    rng = random.Random(seed)
    vocab = sorted({"".join(rng.choice("abcde") for _ in range(rng.randint(3, 10))) for _ in range(150)})
    rows = [(w, "", "") for w in vocab for _ in range(rng.randint(1, 3))]
    index = catalog_index(rows)
    df = dict(zip(index.terms, index.doc_freq.tolist()))
    for _ in range(300):
        word = rng.choice(vocab)
        for _ in range(rng.randint(1, 3)):  # one to three random edits past the first letter
            if len(word) < 3:
                break
            i, c, op = rng.randrange(1, len(word) - 1), rng.choice("abcde"), rng.choice("idst")
            word = {"i": word[:i] + c + word[i:], "d": word[:i] + word[i + 1:], "s": word[:i] + c + word[i + 1:],
                    "t": word[:i] + word[i + 1] + word[i] + word[i + 2:]}[op]
        if word in df:
            continue
        d = max_edits(len(word))
        near = sorted((osa(word, t), -df[t], t) for t in vocab if t[0] == word[0] and osa(word, t) <= d) if d else []
        expected = ((word, near[0][2]),) if near else ()
        assert index.search(word, 1).corrections == expected, word


# --- the real catalog ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_index(real_data_dir):
    data = load_data(real_data_dir)
    return data, LexicalIndex.build(data)


@pytest.mark.realdata
def test_real_catalog_typos_and_names(real_index):
    data, index = real_index
    assert len(index) == 49688
    names = {p.product_id: p.name.lower() for p in data.catalog.products}
    hits = index.search("bananna", 10)
    assert hits.corrections == (("bananna", "banana"),) and all("banana" in names[p] for p in ids(hits))
    hits = index.search("organic strawberies", 10)   # "strawberies" is itself a (rare) catalog word
    assert hits and all("strawber" in names[p] for p in ids(hits))
    for text, word in [("greek yoghurt", "yogurt"), ("chedar cheese", "cheddar"), ("avocadoes", "avocado"),
                       ("sparkling watr", "water")]:
        top = ids(index.search(text, 10))
        assert top and sum(word in names[p] for p in top) >= 5, (text, [names[p] for p in top])
    # a product's own name finds it (names repeat in the catalog, so among its top 10)
    rng = random.Random(0)
    sample = rng.sample(list(data.catalog.products), 300)
    found = sum(p.product_id in ids(index.search(p.name, 10)) for p in sample)
    assert found >= 0.95 * len(sample)
