"""The constrained re-ranker: invariants under hypothesis, hand-picked cases, and brute force as the oracle."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranking.rerank import (
    REASONS,
    Allocation,
    RerankConfig,
    SafeEpsilonGreedy,
    Slate,
    exact_rerank,
    explore,
    position_weights,
    rerank,
)
from ranking.rules import Block, Boost, Pin, Rules, Window, load_rules, term_key
from suggest.errors import DataError

NOW = datetime(2024, 11, 25, 14, 30)
WORDS = ["apple", "apples", "apple juice", "banana", "vodka", "red wine", "red wines", "wineberry",
         "milk", "oat milk", "bread", "product:1", "product:2", "product:3"]
TERMS = ["vodka", "juice", "red wine"]
CAMPAIGNS = [None, "c1", "c2", "c3"]  # c3 never has a budget
fast = settings(max_examples=150, deadline=None)


def W(j: int) -> float:
    return float(position_weights(j + 1)[j])


def slate(keys, value, relevance=None, **kw) -> Slate:
    n = len(keys)
    return Slate(tuple(keys), np.asarray(value, dtype=float),
                 np.full(n, 0.9) if relevance is None else np.asarray(relevance, dtype=float), **kw)


def same(a: Allocation, b: Allocation) -> bool:
    return (np.array_equal(a.order, b.order) and np.array_equal(a.sponsored, b.sponsored)
            and np.array_equal(a.pinned, b.pinned) and a.why == b.why and a.total == b.total)


# --- the independent constraint check ---------------------------------------------------------

def assert_valid(a: Allocation, s: Slate, cfg: RerankConfig, rules: Rules | None, now) -> None:
    """Every constraint, recomputed from the inputs without the allocator's code."""
    active = (rules or Rules()).in_force(cfg.surface, now)
    terms = [term_key(t) for t in (*cfg.blocked_terms, *(b.term for b in active.blocks if b.term))]
    blocked = cfg.blocked_products | {b.product for b in active.blocks if b.product is not None}
    order, m = a.order.tolist(), a.order.size
    assert m <= cfg.k and a.sponsored.shape == a.pinned.shape == (m,)
    assert len({s.keys[i] for i in order}) == m                        # dedupe (and no item twice)
    assert a.sponsored.sum() <= cfg.max_sponsored
    assert not (a.sponsored & a.pinned).any()

    def available(i: int) -> tuple[int, ...]:
        return tuple(p for p in s.product_ids[i] if p not in blocked and p not in s.out_of_stock)

    def clean(i: int) -> bool:
        return not any(f" {t} " in f" {term_key(s.text[i])} " for t in terms) and bool(
            available(i) or not s.product_ids[i])

    spend: Counter = Counter()
    for j, i in enumerate(order):
        assert clean(i), (s.keys[i], s.product_ids[i])                 # blocked / out of stock
        assert a.product_ids[i] == available(i)
        if a.sponsored[j]:
            assert j in cfg.sponsored_positions and s.relevance[i] >= cfg.sponsored_relevance_floor
            assert s.sponsored_bid[i] > 0 and s.campaign[i] is not None
            spend[s.campaign[i]] += s.sponsored_bid[i]
        else:
            assert s.relevance[i] >= cfg.relevance_floor
    for c, spent in spend.items():
        assert spent <= s.budget.get(c, 0.0) + 1e-9
    for labels, cap, unknown in ((s.aisle.tolist(), cfg.max_per_aisle, -1), (s.brand, cfg.max_per_brand, None)):
        counts = Counter(labels[i] for i in order if labels[i] != unknown)
        assert cap is None or max(counts.values(), default=0) <= cap
    assert all((w is None) == (i in order) for i, w in enumerate(a.why)) and set(a.why) <= {None, *REASONS}
    # pins: each pinned item is an active pin's, at its position unless the list ran short above it
    for j in np.flatnonzero(a.pinned):
        key = s.keys[order[j]]
        assert any(p.key == key and (p.position == j if m == cfg.k else p.position >= j) for p in active.pins)
    if cfg.max_per_aisle is None and cfg.max_per_brand is None:  # no caps: every eligible pin is placed
        claimed: dict[int, str] = {}
        for p in active.pins:
            if p.position < cfg.k and p.position not in claimed and p.key not in claimed.values() and any(
                    s.keys[i] == p.key and clean(i) and s.relevance[i] >= cfg.relevance_floor for i in range(len(s))):
                claimed[p.position] = p.key
        assert [s.keys[order[j]] for j in np.flatnonzero(a.pinned)] == [claimed[q] for q in sorted(claimed)]
        if m == cfg.k:
            assert all(a.pinned[q] and s.keys[order[q]] == key for q, key in claimed.items())


# --- strategies ------------------------------------------------------------------------------

@st.composite
def slates(draw, max_n=40, nonnegative=False):
    n = draw(st.integers(0, max_n))
    col = lambda elem: draw(st.lists(elem, min_size=n, max_size=n))  # noqa: E731
    value = np.array(col(st.floats(0 if nonnegative else -2, 10, allow_nan=False)))
    bid = np.array(col(st.sampled_from([0.0, 0.5, 1.0, 2.5])))
    relevance = np.array(col(st.floats(0, 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.normal(size=(n, 3))
    return Slate(tuple(col(st.sampled_from(WORDS))), value, relevance,
                 aisle=np.array(col(st.integers(-1, 4)), dtype=np.int64),
                 brand=tuple(col(st.sampled_from([None, "a", "b", "c"]))),
                 product_ids=tuple(col(st.lists(st.integers(0, 15), max_size=3).map(tuple))),
                 sponsored_bid=bid, campaign=tuple(col(st.sampled_from(CAMPAIGNS))),
                 sponsored_value=value + bid * draw(st.sampled_from([0.0, 1.0, 3.0, 3.0])),
                 budget={c: draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0])) for c in ("c1", "c2")},
                 out_of_stock=frozenset(draw(st.lists(st.integers(0, 15), max_size=6))),
                 similarity=np.tanh(x @ x.T / 3))


@st.composite
def configs(draw, max_k=12):
    k, n_sp = draw(st.integers(1, max_k)), draw(st.integers(0, 3))
    positions = draw(st.lists(st.integers(0, k + 1), min_size=1 if n_sp else 0, max_size=5, unique=True))
    floor = st.sampled_from([0.0, 0.2, 0.5, 0.8])
    return RerankConfig(
        k=k, surface=draw(st.sampled_from(["search", "suggest"])),
        max_sponsored=n_sp, sponsored_positions=tuple(positions), sponsored_relevance_floor=draw(floor),
        relevance_floor=draw(floor), max_per_aisle=draw(st.none() | st.integers(1, 3)),
        max_per_brand=draw(st.none() | st.integers(1, 3)), mmr_lambda=draw(st.sampled_from([0.0, 0.5, 2.0])),
        blocked_terms=tuple(draw(st.lists(st.sampled_from(TERMS), max_size=2))),
        blocked_products=frozenset(draw(st.lists(st.integers(0, 15), max_size=4))))


def _windows(inside: bool | None):
    """Windows holding NOW (inside=True), not holding it (False), or either (None)."""
    day, hour = timedelta(days=1), NOW.hour
    holding = [Window(), Window(start=NOW - day), Window(end=NOW + day), Window(NOW - day, NOW + day),
               Window(hours=(hour, hour + 1)), Window(hours=(22, hour + 1))]
    outside = [Window(end=NOW), Window(start=NOW + timedelta(minutes=1)), Window(NOW - 3 * day, NOW - day),
               Window(hours=(hour + 1, hour + 3)), Window(hours=(hour + 1, hour)), Window(hours=(0, hour))]
    return st.sampled_from({True: holding, False: outside, None: holding + outside}[inside])


@st.composite
def rule_sets(draw, inside: bool | None = None):
    surface = st.sampled_from([None, "search", "suggest"])
    win = _windows(inside)
    pins = st.builds(Pin, st.sampled_from(WORDS), st.integers(0, 12), surface, win)
    target = st.one_of(st.builds(lambda k: {"key": k}, st.sampled_from(WORDS)),
                       st.builds(lambda a: {"aisle": a}, st.integers(0, 4)),
                       st.builds(lambda b: {"brand": b}, st.sampled_from(["a", "b", "c"])))
    boosts = st.builds(lambda t, mul, add, sf, w: Boost(**t, multiply=mul, add=add, surface=sf, window=w),
                       target, st.sampled_from([0.0, 0.5, 1.0, 3.0]), st.sampled_from([-1.0, 0.0, 2.0]), surface, win)
    blocks = st.one_of(
        st.builds(lambda t, sf, w: Block(term=t, surface=sf, window=w), st.sampled_from(TERMS), surface, win),
        st.builds(lambda p, sf, w: Block(product=p, surface=sf, window=w), st.integers(0, 15), surface, win))
    return Rules(tuple(draw(st.lists(pins, max_size=4))), tuple(draw(st.lists(boosts, max_size=3))),
                 tuple(draw(st.lists(blocks, max_size=2))), "drawn")


# --- every constraint, always ----------------------------------------------------------------

@fast
@given(slates(), configs(), st.none() | rule_sets())
def test_every_constraint_holds_on_any_slate(s, cfg, rules):
    a = rerank(s, cfg, rules, NOW)
    assert_valid(a, s, cfg, rules, NOW)
    assert a.order.dtype == np.int64 and sum(a.dropped.values()) == len(s) - a.order.size


@fast
@given(slates(), configs(), st.none() | rule_sets(),
       st.builds(SafeEpsilonGreedy, st.sampled_from([0.0, 0.3, 1.0]), st.integers(0, 3),
                 st.none() | st.integers(3, 12), st.sampled_from([0.0, 0.5])),
       st.integers(0, 2**32 - 1))
def test_exploration_keeps_every_constraint_and_logs_exact_propensities(s, cfg, rules, policy, seed):
    x = explore(s, cfg, policy, np.random.default_rng(seed), rules, NOW)
    a, g = x.allocation, x.greedy
    assert_valid(a, s, cfg, rules, NOW)
    assert same(g, rerank(s, cfg, rules, NOW))
    moved = np.flatnonzero(a.order != g.order)
    assert moved.size <= 1 and np.array_equal(a.sponsored, g.sponsored) and np.array_equal(a.pinned, g.pinned)
    for j in moved:  # one organic, unpinned slot inside the range, refilled above both floors
        assert policy.first_slot <= j <= (policy.last_slot if policy.last_slot is not None else j)
        assert not g.sponsored[j] and not g.pinned[j]
        assert s.relevance[a.order[j]] >= max(policy.relevance_floor, cfg.relevance_floor)
        assert a.why[g.order[j]] == "explored_out"
    m = a.order.size
    assert x.probabilities.shape == (len(s), m) and x.policy == policy.name
    np.testing.assert_allclose(x.probabilities.sum(axis=0), 1.0, atol=1e-12)
    assert (x.probabilities >= 0).all()
    assert ((x.ranking.item_propensity > 0) & (x.ranking.item_propensity <= 1)).all()
    np.testing.assert_array_equal(x.ranking.order, a.order)
    np.testing.assert_allclose(x.ranking.item_propensity, x.probabilities[a.order, np.arange(m)])
    assert 0 < x.ranking.list_propensity <= 1
    if policy.epsilon == 0:
        assert same(a, g) and x.ranking.list_propensity == 1.0


@fast
@given(slates(), configs(), rule_sets(), rule_sets(inside=False))
def test_a_rule_outside_its_window_has_no_effect(s, cfg, rules, dormant):
    mixed = Rules(rules.pins + dormant.pins, dormant.boosts + rules.boosts, rules.blocks + dormant.blocks)
    assert same(rerank(s, cfg, mixed, NOW), rerank(s, cfg, rules, NOW))


@fast
@given(slates(), configs(), rule_sets(inside=True))
def test_a_rule_inside_its_window_acts_as_if_it_had_none(s, cfg, rules):
    always = Rules(*(tuple(type(r)(**{**r.__dict__, "window": Window()}) for r in group)
                     for group in (rules.pins, rules.boosts, rules.blocks)))
    assert same(rerank(s, cfg, rules, NOW), rerank(s, cfg, always, None))


# --- hand-picked cases ------------------------------------------------------------------------

def test_plain_top_k_is_sorted_by_value_and_optimal():
    # nothing but k: the rearrangement inequality makes sorting by value optimal
    s = slate(["a", "b", "c", "d"], [1.0, 4.0, 3.0, 2.0])
    a, e = rerank(s, RerankConfig(k=3)), exact_rerank(s, RerankConfig(k=3))
    assert a.order.tolist() == e.order.tolist() == [1, 2, 3]
    assert a.total == pytest.approx(4 + 3 * W(1) + 2 * W(2)) and a.dropped == {"outranked": 1}


def test_dedupe_keeps_the_better_copy_and_stays_optimal():
    # two "milk" candidates (say, from two sources): one per key is a matroid, greedy is optimal
    s = slate(["milk", "bread", "milk"], [1.0, 2.0, 5.0])
    a = rerank(s, RerankConfig(k=3))
    assert a.order.tolist() == [2, 1] and a.why[0] == "duplicate"
    assert a.total == pytest.approx(exact_rerank(s, RerankConfig(k=3)).total)


def test_relevance_floor_drops_a_valuable_but_irrelevant_item():
    # value 9 but P(relevant) 0.1 < floor 0.3: quality wins over value
    s = slate(["a", "b", "c"], [9.0, 2.0, 1.0], [0.1, 0.5, 0.9])
    a = rerank(s, RerankConfig(k=3, relevance_floor=0.3))
    assert a.order.tolist() == [1, 2] and a.why[0] == "below_floor"
    assert same(a, exact_rerank(s, RerankConfig(k=3, relevance_floor=0.3)))


def test_a_pin_takes_its_position_and_the_rest_is_optimal_around_it():
    # pinned "c" at 0 is fixed; the free positions 1, 2 hold the two best of the rest, sorted
    s = slate(["a", "b", "c", "d"], [5.0, 4.0, 0.5, 3.0])
    rules = Rules(pins=(Pin("c", 0),))
    a, e = rerank(s, RerankConfig(k=3), rules), exact_rerank(s, RerankConfig(k=3), rules)
    assert a.order.tolist() == e.order.tolist() == [2, 0, 1] and a.pinned.tolist() == [True, False, False]


def test_an_ineligible_pin_is_not_placed_and_a_short_list_moves_pins_up():
    s = slate(["a", "b", "product:7"], [5.0, 4.0, 1.0], product_ids=((), (), (7,)), out_of_stock=frozenset({7}))
    # "product:7" is out of stock: its pin at 0 is skipped, the list is plain top-k
    a = rerank(s, RerankConfig(k=3), Rules(pins=(Pin("product:7", 0),)))
    assert a.order.tolist() == [0, 1] and not a.pinned.any() and a.why[2] == "out_of_stock"
    # pin at 4 of k=5 with two other items: no holes, so the pinned item moves up to position 2
    a = rerank(s, RerankConfig(k=5), Rules(pins=(Pin("b", 4),)))
    assert a.order.tolist() == [0, 1] and a.pinned.tolist() == [False, True]


def test_greedy_is_suboptimal_with_two_diversity_caps_and_exact_finds_the_optimum():
    # A takes both its aisle and its brand: greedy shows A alone (10); B + C shows 9 + 9 w_1
    s = slate(["A", "B", "C"], [10.0, 9.0, 9.0], aisle=np.array([1, 1, 2]), brand=("x", "y", "x"))
    cfg = RerankConfig(k=2, max_per_aisle=1, max_per_brand=1)
    g, e = rerank(s, cfg), exact_rerank(s, cfg)
    assert g.order.tolist() == [0] and g.dropped == {"aisle_cap": 1, "brand_cap": 1}
    assert e.order.tolist() == [1, 2] and e.total == pytest.approx(9 + 9 * W(1))
    assert g.total >= e.total / 2  # two binding matroids: the 1/2 bound


def test_greedy_is_suboptimal_with_a_sponsored_slot_and_exact_finds_the_optimum():
    # the ad S may only go at 0 and only as sponsored (under the organic floor); greedy puts O there
    s = slate(["O", "S", "O2"], [10.0, 0.0, 1.0], [0.9, 0.1, 0.9], sponsored_value=np.array([10.0, 5.0, 1.0]),
              sponsored_bid=np.array([0.0, 1.0, 0.0]), campaign=(None, "c", None), budget={"c": 1.0})
    cfg = RerankConfig(k=2, max_sponsored=1, sponsored_positions=(0,), relevance_floor=0.5)
    g, e = rerank(s, cfg), exact_rerank(s, cfg)
    assert g.order.tolist() == [0, 2] and g.total == pytest.approx(10 + W(1))
    assert e.order.tolist() == [1, 0] and e.sponsored.tolist() == [True, False]
    assert e.total == pytest.approx(5 + 10 * W(1))


def test_greedy_is_suboptimal_with_a_budget_and_exact_finds_the_optimum():
    # budget 2: the greedy spends all of it on S1 (5), exact on S2 + S3 (4 + 4 w_1)
    s = slate(["S1", "S2", "S3", "O"], [0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.9],
              sponsored_value=np.array([5.0, 4.0, 4.0, 1.0]), sponsored_bid=np.array([2.0, 1.0, 1.0, 0.0]),
              campaign=("c", "c", "c", None), budget={"c": 2.0})
    cfg = RerankConfig(k=2, max_sponsored=2, sponsored_positions=(0, 1), relevance_floor=0.5)
    g, e = rerank(s, cfg), exact_rerank(s, cfg)
    assert g.order.tolist() == [0, 3] and g.sponsored.tolist() == [True, False]
    assert e.order.tolist() == [1, 2] and e.total == pytest.approx(4 + 4 * W(1))


def test_sponsored_label_only_where_it_pays_or_is_the_only_way_in():
    # equal values: organic, nothing spent; a higher sponsored value: labelled and spent
    kw = dict(sponsored_bid=np.array([1.0, 0.0]), campaign=("c", None), budget={"c": 1.0})
    cfg = RerankConfig(k=2, max_sponsored=1, sponsored_positions=(0, 1))
    assert not rerank(slate(["ad", "x"], [3.0, 1.0], **kw), cfg).sponsored.any()
    a = rerank(slate(["ad", "x"], [3.0, 1.0], sponsored_value=np.array([4.0, 1.0]), **kw), cfg)
    assert a.sponsored.tolist() == [True, False]
    # sponsored floor above the ad's relevance: never labelled, shown organically
    low = RerankConfig(k=2, max_sponsored=1, sponsored_positions=(0, 1), sponsored_relevance_floor=0.95)
    assert not rerank(slate(["ad", "x"], [3.0, 1.0], sponsored_value=np.array([4.0, 1.0]), **kw), low).sponsored.any()


def test_suggestions_keep_their_available_products_and_products_are_dropped_whole():
    # a suggestion loses only its out-of-stock / blocked products; with none left it is dropped
    s = slate(["milk", "oat milk", "bread", "product:5"], [4.0, 3.0, 2.0, 1.0],
              product_ids=((1, 2, 3), (4,), (5, 6), (5,)), out_of_stock=frozenset({2, 4, 6}))
    a = rerank(s, RerankConfig(k=4, blocked_products=frozenset({5})))
    assert a.order.tolist() == [0] and a.shown_products == ((1, 3),)
    assert a.why[1:] == ("out_of_stock", "out_of_stock", "blocked_product")


def test_blocked_terms_match_whole_words_and_plurals():
    # "red wine" blocks "Red Wines!" (normalised, plural folded) but not "wineberry"
    s = slate(["Red Wines!", "wineberry", "redwine"], [3.0, 2.0, 1.0])
    a = rerank(s, RerankConfig(k=3, blocked_terms=("red wine",)))
    assert a.order.tolist() == [1, 2] and a.why[0] == "blocked_term"
    # the shown text, not the key, is what is matched (a product's key is its id)
    s = slate(["product:1", "product:2"], [2.0, 1.0], text=("Vodka Tonic", "Tonic Water"))
    assert rerank(s, RerankConfig(k=2, blocked_terms=("vodka",))).order.tolist() == [1]


def test_boosts_multiply_then_add_and_respect_windows():
    s = slate(["a", "b", "c"], [3.0, 2.0, 1.0], aisle=np.array([1, 2, 3]), brand=(None, None, "z"))
    rules = Rules(boosts=(Boost(aisle=3, multiply=2.5), Boost(brand="z", add=1.0)))  # c: 1 * 2.5 + 1
    a = rerank(s, RerankConfig(k=3), rules)
    assert a.order.tolist() == [2, 0, 1] and a.total == pytest.approx(3.5 + 3 * W(1) + 2 * W(2))
    late = Rules(boosts=(Boost(key="c", add=10.0, window=Window(hours=(20, 23))),))
    assert rerank(s, RerankConfig(k=3), late, NOW).order.tolist() == [0, 1, 2]


def test_mmr_spreads_near_duplicates():
    # a and b are the same thing (similarity 1): with lambda 2 the second slot goes to c
    sim = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    s = slate(["a", "b", "c"], [3.0, 2.9, 2.0], similarity=sim)
    assert rerank(s, RerankConfig(k=2)).order.tolist() == [0, 1]
    a = rerank(s, RerankConfig(k=2, mmr_lambda=2.0))
    assert a.order.tolist() == [0, 2] and a.total == pytest.approx(3 + 2 * W(1))


def test_an_empty_slate_and_an_all_blocked_one():
    assert rerank(slate([], []), RerankConfig(k=3)).order.size == 0
    a = rerank(slate(["vodka"], [1.0]), RerankConfig(k=3, blocked_terms=("vodka",)))
    assert a.order.size == 0 and a.dropped == {"blocked_term": 1} and a.total == 0.0


def test_exploration_propensities_by_hand_and_by_sampling():
    # slots 1..2 of [0, 1, 2]; slot 1's pool {1, 3} (4 is under the floor), slot 2's {2, 3}: S = 2
    s = slate(list("abcde"), [5.0, 4.0, 3.0, 2.0, 1.0], [0.9, 0.9, 0.9, 0.9, 0.1])
    cfg, policy = RerankConfig(k=3, relevance_floor=0.5), SafeEpsilonGreedy(0.4, first_slot=1)
    x = explore(s, cfg, policy, np.random.default_rng(0))
    expect = np.zeros((5, 3))
    expect[0, 0] = 1.0
    expect[[1, 3], 1] = [1 - 0.2 + 0.1, 0.1]  # 1 - e/S + e/(S m), e/(S m) with e = 0.4, S = m = 2
    expect[[2, 3], 2] = [0.9, 0.1]
    np.testing.assert_allclose(x.probabilities, expect)
    rng, counts, lists = np.random.default_rng(7), np.zeros((5, 3)), Counter()
    for _ in range(4000):
        r = explore(s, cfg, policy, rng).ranking
        counts[r.order, np.arange(3)] += 1
        lists[tuple(r.order.tolist())] += 1
        assert r.list_propensity == pytest.approx({(0, 1, 2): 0.6 + 0.4 / 2, (0, 3, 2): 0.1, (0, 1, 3): 0.1}[
            tuple(r.order.tolist())])
    np.testing.assert_allclose(counts / 4000, expect, atol=0.02)  # ~4 standard errors at 4000 draws


def test_nothing_to_explore_means_propensity_one():
    # every slot is pinned or sponsored, or has no alternative: the greedy list, surely
    s = slate(["a", "b"], [2.0, 1.0])
    x = explore(s, RerankConfig(k=2), SafeEpsilonGreedy(1.0), np.random.default_rng(0), Rules(pins=(Pin("b", 1),)))
    assert x.allocation.order.tolist() == [0, 1] and x.ranking.list_propensity == 1.0
    assert x.ranking.item_propensity.tolist() == [1.0, 1.0]


def test_exact_refuses_large_slates_and_mmr_needs_similarity_and_windows_need_now():
    with pytest.raises(ValueError, match="slate: exact_rerank .* 9"):
        exact_rerank(slate(list("abcdefghi"), np.ones(9)), RerankConfig(k=2))
    with pytest.raises(ValueError, match="similarity"):
        rerank(slate(["a", "b"], [1.0, 1.0]), RerankConfig(k=2, mmr_lambda=1.0))
    with pytest.raises(ValueError, match="now: required"):
        rerank(slate(["a"], [1.0]), RerankConfig(k=1), Rules(pins=(Pin("a", 0, window=Window(end=NOW)),)))
    aware = Rules(pins=(Pin("a", 0, window=Window(start=NOW.replace(tzinfo=timezone.utc))),))
    with pytest.raises(ValueError, match="now: must be timezone-aware"):
        rerank(slate(["a"], [1.0]), RerankConfig(k=1), aware, NOW)


# --- brute force over random small instances --------------------------------------------------

def _instance(rng: np.random.Generator, regime: str) -> tuple[Slate, RerankConfig, Rules | None]:
    n = int(rng.integers(0, 8))
    keys = tuple(rng.choice(WORDS[:7], n).tolist())
    value = rng.uniform(0 if regime != "floors" else -2, 10, n).round(1)
    bid = rng.choice([0.0, 1.0, 2.0], n)
    brand = tuple(None if b == "-" else str(b) for b in rng.choice(["a", "b", "-"], n))
    kw = dict(aisle=rng.integers(-1, 3, n), brand=brand,
              product_ids=tuple(tuple(rng.integers(0, 6, rng.integers(0, 3)).tolist()) for _ in range(n)),
              out_of_stock=frozenset(rng.integers(0, 6, 2).tolist()))
    if regime == "all":
        x = rng.normal(size=(n, 2))
        kw.update(sponsored_bid=bid, campaign=tuple(rng.choice(["c1", "c2"], n).tolist()),
                  sponsored_value=value + bid * rng.uniform(0, 3), budget={"c1": 2.0, "c2": float(rng.integers(0, 4))},
                  similarity=np.tanh(x @ x.T))
    s = Slate(keys, value, rng.uniform(0, 1, n).round(2), **kw)
    more = {} if regime == "floors" else dict(max_per_aisle=int(rng.integers(1, 3)), max_per_brand=int(rng.integers(1, 3)))
    if regime == "all":
        more.update(max_sponsored=int(rng.integers(0, 3)), sponsored_positions=(0, 2),
                    mmr_lambda=float(rng.choice([0.0, 1.0])))
    cfg = RerankConfig(k=int(rng.integers(1, 5)), relevance_floor=float(rng.choice([0.0, 0.3])),
                       blocked_terms=("juice",), **more)
    rules = None if regime == "caps" else Rules(
        pins=tuple(Pin(str(rng.choice(WORDS[:7])), int(rng.integers(0, 5))) for _ in range(rng.integers(0, 3))),
        boosts=(Boost(aisle=1, multiply=float(rng.uniform(0, 2))),))
    return s, cfg, rules


def _binding(s: Slate, cfg: RerankConfig) -> int:
    """How many of dedupe / aisle cap / brand cap can bind among the organically eligible items."""
    ok = [i for i in range(len(s)) if s.relevance[i] >= cfg.relevance_floor and "juice" not in s.keys[i]
          and (not s.product_ids[i] or set(s.product_ids[i]) - s.out_of_stock)]
    groups = [([s.keys[i] for i in ok], 1), ([s.aisle[i] for i in ok if s.aisle[i] >= 0], cfg.max_per_aisle),
              ([s.brand[i] for i in ok if s.brand[i] is not None], cfg.max_per_brand)]
    return sum(max(Counter(labels).values(), default=0) > cap for labels, cap in groups)


@pytest.mark.parametrize("regime", ["floors", "caps", "all"])
def test_greedy_against_brute_force(regime):
    """floors (k, dedupe, floors, blocks, stock, pins, boosts): equal. caps: within 1/p, equal when
    p <= 1. all (sponsored, budgets, MMR too): never better than exact, both valid."""
    rng, worse = np.random.default_rng({"floors": 1, "caps": 2, "all": 3}[regime]), 0
    for _ in range(300):
        s, cfg, rules = _instance(rng, regime)
        g, e = rerank(s, cfg, rules), exact_rerank(s, cfg, rules)
        assert_valid(e, s, cfg, rules, None)
        assert g.total <= e.total + 1e-9
        if regime == "floors":
            assert g.total == pytest.approx(e.total, abs=1e-9)
        elif regime == "caps":
            p = _binding(s, cfg)
            assert g.total >= e.total / max(p, 1) - 1e-9
            if p <= 1:
                assert g.total == pytest.approx(e.total, abs=1e-9)
        worse += g.total < e.total - 1e-9
    assert regime == "floors" or worse > 0  # the oracle does find the cases where greedy falls short


# --- invalid inputs -----------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"k": 0}, r"k: .*got 0"),
    ({"k": 2.5}, r"k: .*got 2\.5"),
    ({"k": True}, r"k: .*got True"),
    ({"surface": "web"}, r"surface: .*'web'"),
    ({"max_sponsored": -1}, r"max_sponsored: .*got -1"),
    ({"max_sponsored": 2}, r"sponsored_positions: max_sponsored=2"),
    ({"sponsored_positions": (1, 1)}, r"sponsored_positions: .*\(1, 1\)"),
    ({"sponsored_positions": (-1,)}, r"sponsored_positions: .*\(-1,\)"),
    ({"sponsored_relevance_floor": 1.5}, r"sponsored_relevance_floor: .*1\.5"),
    ({"relevance_floor": -0.1}, r"relevance_floor: .*-0\.1"),
    ({"relevance_floor": math.nan}, r"relevance_floor: .*nan"),
    ({"max_per_aisle": 0}, r"max_per_aisle: .*got 0"),
    ({"max_per_brand": 1.5}, r"max_per_brand: .*got 1\.5"),
    ({"mmr_lambda": -1.0}, r"mmr_lambda: .*-1\.0"),
    ({"mmr_lambda": math.inf}, r"mmr_lambda: .*inf"),
    ({"blocked_terms": ("vodka", "!!")}, r"blocked_terms: .*'!!'"),
    ({"blocked_products": {"x"}}, r"blocked_products: .*'x'"),
]


@pytest.mark.parametrize("kwargs, message", BAD_CONFIGS, ids=[m.split(":")[0] for _, m in BAD_CONFIGS])
def test_invalid_config_names_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RerankConfig(**{"k": 3, **kwargs})


BAD_SLATES = [
    ({"value": [1.0]}, r"value: expected shape \(2,\)"),
    ({"value": [1.0, math.nan]}, r"value: expected finite"),
    ({"relevance": [0.5, 1.5]}, r"relevance: .*1\.5"),
    ({"aisle": [1.5, 2.0]}, r"aisle: expected integers"),
    ({"brand": ("a",)}, r"brand: expected 2 entries"),
    ({"sponsored_bid": [-1.0, 0.0]}, r"sponsored_bid: .*-1\.0"),
    ({"budget": {"c": -1.0}}, r"budget: .*-1\.0"),
    ({"similarity": np.ones((2, 3))}, r"similarity: .*\(2, 3\)"),
]


@pytest.mark.parametrize("kwargs, message", BAD_SLATES, ids=[m.split(":")[0] for _, m in BAD_SLATES])
def test_invalid_slate_names_the_field(kwargs, message):
    base = {"keys": ("a", "b"), "value": [1.0, 2.0], "relevance": [0.5, 0.5]}
    with pytest.raises(ValueError, match=message):
        Slate(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"epsilon": 1.5}, r"epsilon: .*1\.5"), ({"epsilon": 0.1, "first_slot": -1}, r"first_slot: .*-1"),
    ({"epsilon": 0.1, "first_slot": 3, "last_slot": 2}, r"last_slot: .*first_slot=3"),
    ({"epsilon": 0.1, "relevance_floor": 2}, r"relevance_floor: .*2"),
])
def test_invalid_exploration_policy_names_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SafeEpsilonGreedy(**kwargs)


PIN = '[[pin]]\nkey = "a"\nposition = 0\n'
BAD_RULES = [
    ("pin = [", r"invalid TOML"),
    ("[[pn]]\nkey = 'a'", r"pn: unknown table"),
    ("pin = 3", r"pin: expected an array of tables"),
    ('[[pin]]\nkey = "a"\nposition = -1', r"pin\[0\]\.position: .*-1"),
    ('[[pin]]\nposition = 1', r"pin\[0\]\.key: required"),
    (PIN + '[[pin]]\nkey = "b"\npostion = 1', r"pin\[1\]\.postion: unknown field"),
    (PIN + 'surface = "web"', r"pin\[0\]\.surface: .*'web'"),
    (PIN + 'start = "tomorrow"', r"pin\[0\]\.start: .*'tomorrow'"),
    (PIN + 'start = 2024-01-02T00:00:00\nend = 2024-01-01T00:00:00', r"pin\[0\]\.end: must be after"),
    (PIN + 'start = 2024-01-01T00:00:00Z\nend = 2024-01-02T00:00:00', r"pin\[0\]\.end: mixes"),
    (PIN + 'hours = [25, 3]', r"pin\[0\]\.hours: .*25"),
    (PIN + 'hours = [3, 3]', r"pin\[0\]\.hours: from and to must differ"),
    (PIN + 'hours = 3', r"pin\[0\]\.hours: expected \[from, to\]"),
    ('[[boost]]\nkey = "a"\naisle = 3', r"boost\[0\]\.key: exactly one"),
    ('[[boost]]\nkey = "a"\nmultiply = -1', r"boost\[0\]\.multiply: .*-1"),
    ('[[boost]]\nbrand = "x"\nadd = "lots"', r"boost\[0\]\.add: .*'lots'"),
    ('[[boost]]\naisle = "dairy"', r"boost\[0\]\.aisle: .*'dairy'"),
    ('[[block]]\nsurface = "search"', r"block\[0\]\.term: exactly one"),
    ('[[block]]\nterm = "!!"', r"block\[0\]\.term: .*'!!'"),
    ('[[block]]\nproduct = "12"', r"block\[0\]\.product: .*'12'"),
]


@pytest.mark.parametrize("text, message", BAD_RULES, ids=[m.split(":")[0] for _, m in BAD_RULES])
def test_bad_rules_file_names_file_rule_and_field(tmp_path, text, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(str(path)) + ": " + message):
        load_rules(path)


def test_missing_rules_file_names_it(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "none.toml")) + ": cannot read rules"):
        load_rules(tmp_path / "none.toml")


def test_rules_file_round_trip(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("""
[[pin]]
key = "bananas"
position = 1
surface = "suggest"
start = 2024-11-20T00:00:00
end = "2024-11-28T00:00:00"
hours = [22, 15]

[[boost]]
aisle = 24
multiply = 1.5

[[boost]]
brand = "Organic Valley"
add = 0.25
end = 2024-11-01

[[block]]
term = "energy drink"

[[block]]
product = 42
start = "2024-11-25T15:00:00+00:00"
""")
    r = load_rules(path)
    assert r.source == str(path) and len(r.pins) == 1 and len(r.boosts) == 2 and len(r.blocks) == 2
    assert r.pins[0] == Pin("bananas", 1, "suggest", Window(datetime(2024, 11, 20), datetime(2024, 11, 28), (22, 15)))
    assert r.boosts[1].window.end == datetime(2024, 11, 1)  # a TOML date: from its midnight
    now = NOW.replace(tzinfo=timezone.utc)  # 14:30 UTC: inside the pin's wrapped hours, before the block
    active = r.in_force("suggest", now)
    assert active.pins == r.pins and active.boosts == r.boosts[:1] and active.blocks == r.blocks[:1]
    assert r.in_force("search", now).pins == ()
    assert r.in_force("suggest", now + timedelta(hours=1)).blocks == r.blocks  # 15:30: the block is on


def test_the_reranker_imports_no_torch():
    # it runs on every request, in processes that may never load the ranker model
    import ast
    from pathlib import Path

    for name in ("rerank", "rules"):
        tree = ast.parse((Path(__file__).parents[1] / "ranking" / f"{name}.py").read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in mods if m.split(".")[0] == "torch" or m == "ranking.model"}, name
