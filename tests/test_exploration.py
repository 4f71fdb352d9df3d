"""Exploration policies: hand-picked cases, invariants, and a brute-force oracle over all lists."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ranking.exploration import EpsilonGreedy, Greedy, PlackettLuce, Policy, Ranking

POLICIES = [
    Greedy(),
    EpsilonGreedy(0.3),
    EpsilonGreedy(0.5, slot=0, explore_from=4),
    PlackettLuce(0.5),
    PlackettLuce(3.0),
]
ids = [p.name for p in POLICIES]

scores_st = st.lists(st.floats(-20, 20, allow_nan=False), min_size=1, max_size=12).map(np.array)
fast = settings(max_examples=60, deadline=None)


def all_lists(n: int, k: int):
    return [np.array(o, dtype=np.int64) for o in itertools.permutations(range(n), min(k, n))]


def oracle(policy: Policy, scores: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Total probability of every ordered list, and the (n, k) marginals summed from them."""
    n, total = scores.size, 0.0
    marginals = np.zeros((n, min(k, n)))
    for order in all_lists(n, k):
        p = policy.list_probability(scores, k, order)
        total += p
        marginals[order, np.arange(order.size)] += p
    return total, marginals


# --- hand-picked cases ---------------------------------------------------------------------

def test_names_are_the_logged_policy_ids():
    assert [Greedy().name, EpsilonGreedy(0.1).name, PlackettLuce(0.5).name] == [
        "greedy", "eps-greedy(0.1)", "pl(t=0.5)"]
    assert EpsilonGreedy(0.1, slot=2, explore_from=50).name == "eps-greedy(0.1,slot=2,from=50)"
    assert PlackettLuce(1 / 3).name == "pl(t=0.3333333333333333)"  # ids never collide by rounding
    assert all(isinstance(p, Policy) for p in POLICIES)


def test_greedy_breaks_ties_by_lower_index():
    r = Greedy().rank(np.array([1.0, 3.0, 3.0, 2.0]), 3, np.random.default_rng(0))
    assert r.order.tolist() == [1, 2, 3] and r.item_propensity.tolist() == [1, 1, 1]
    assert r.list_propensity == 1.0 and r.exact and r.order.dtype == np.int64


def test_epsilon_greedy_slot_keeps_its_greedy_item_most_likely():
    # pool for the last slot is {1, 2, 3}: the greedy item 1 keeps 0.8 + 0.2/3, the others 0.2/3
    p = EpsilonGreedy(0.2).position_probabilities(np.array([4.0, 3.0, 2.0, 1.0]), 2)
    np.testing.assert_allclose(p, [[1, 0], [0, 0.8 + 0.2 / 3], [0, 0.2 / 3], [0, 0.2 / 3]])


def test_epsilon_greedy_explore_from_limits_the_pool():
    # slot 0 with the pool cut to the top 3: {0} plus greedy ranks 2..3 -> items 0 and 2
    p = EpsilonGreedy(0.5, slot=0, explore_from=3).position_probabilities(np.arange(5.0)[::-1], 2)
    np.testing.assert_allclose(p[:, 0], [0.75, 0, 0.25, 0, 0])
    # a pool of one (everything is shown) leaves nothing to explore: propensity exactly 1
    r = EpsilonGreedy(1.0).rank(np.array([2.0, 1.0]), 5, np.random.default_rng(0))
    assert r.order.tolist() == [0, 1] and r.list_propensity == 1.0
    # a slot past the shown list explores the last shown position
    p = EpsilonGreedy(1.0, slot=7).position_probabilities(np.arange(4.0)[::-1], 2)
    np.testing.assert_allclose(p, [[1, 0], [0, 1 / 3], [0, 1 / 3], [0, 1 / 3]])


def test_plackett_luce_list_probability_by_hand():
    # weights 1, 2, 3: P(2 then 1) = 3/6 * 2/3
    scores = np.log([1.0, 2.0, 3.0])
    assert PlackettLuce(1.0).list_probability(scores, 2, np.array([2, 1])) == pytest.approx(1 / 3)


# --- invariants ----------------------------------------------------------------------------

@fast
@given(scores=scores_st, k=st.integers(1, 14), which=st.integers(0, len(POLICIES) - 1),
       seed=st.integers(0, 2**32 - 1))
def test_rank_shows_min_k_n_distinct_candidates_with_its_own_propensities(scores, k, which, seed):
    policy = POLICIES[which]
    r = policy.rank(scores, k, np.random.default_rng(seed))
    shown = min(k, scores.size)
    assert isinstance(r, Ranking) and r.order.shape == r.item_propensity.shape == (shown,)
    assert np.unique(r.order).size == shown and ((0 <= r.order) & (r.order < scores.size)).all()
    assert r.list_propensity == policy.list_probability(scores, k, r.order) > 0
    marginals = policy.position_probabilities(scores, k)
    np.testing.assert_allclose(r.item_propensity, marginals[r.order, np.arange(shown)], rtol=1e-12)
    assert (r.item_propensity > 0).all() and r.exact


@fast
@given(scores=scores_st, k=st.integers(1, 14))
def test_greedy_shows_the_top_k(scores, k):
    order = Greedy().rank(scores, k, np.random.default_rng(0)).order
    assert sorted(scores[order].tolist(), reverse=True) == scores[order].tolist()
    assert scores[order].min() >= np.delete(scores, order).max(initial=-np.inf)


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
@pytest.mark.parametrize("n,k", [(1, 1), (3, 2), (4, 4), (5, 3), (6, 9)])
def test_list_probabilities_over_all_lists_sum_to_one(policy, n, k):
    scores = np.random.default_rng(n * 10 + k).normal(size=n) * 2
    scores[-1] = scores[0]  # a tie
    total, summed = oracle(policy, scores, k)
    marginals = policy.position_probabilities(scores, k)
    assert total == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0, atol=1e-12)
    assert (marginals.sum(axis=1) <= 1 + 1e-12).all() and (marginals >= 0).all()
    np.testing.assert_allclose(marginals, summed, atol=1e-12)


@pytest.mark.parametrize("spread", [0.5, 3.0, 40.0])
@pytest.mark.parametrize("n,k", [(9, 3), (10, 2), (12, 1)])
def test_plackett_luce_quadrature_matches_enumeration_past_eight(spread, n, k):
    # n > 8 takes the exponential-race quadrature; the oracle sums every ordered list instead
    scores = np.random.default_rng(n + k).normal(size=n) * spread
    scores[3] = scores[5]
    policy = PlackettLuce(1.0)
    marginals = policy.position_probabilities(scores, k)
    _, summed = oracle(policy, scores, k)
    np.testing.assert_allclose(marginals, summed, rtol=1e-9, atol=1e-15)


def test_plackett_luce_quadrature_stays_exact_for_long_lists_of_near_ties():
    # near-equal weights and a long list make the integrand narrowest: a fixed step lost 1e-5 here
    scores = np.random.default_rng(3).normal(size=60) * 0.01
    marginals = PlackettLuce(1.0).position_probabilities(scores, 50)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0, atol=1e-12)
    assert (marginals.sum(axis=1) <= 1 + 1e-12).all()


def test_plackett_luce_falls_back_to_a_flagged_seeded_estimate_for_extreme_weights():
    # weights spanning e^5000 around the top k: the quadrature would need ~20k nodes
    scores = np.r_[0.0, -5000.0 - np.arange(8.0)]
    policy = PlackettLuce(1.0)
    r = policy.rank(scores, 3, np.random.default_rng(0))
    assert not r.exact and r.order[0] == 0
    marginals = policy.position_probabilities(scores, 3)
    np.testing.assert_array_equal(marginals, policy.position_probabilities(scores, 3))
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0)
    first_of_rest = (1 - math.exp(-1)) / (1 - math.exp(-8))  # item 1 second, exactly
    assert marginals[1, 1] == pytest.approx(first_of_rest, abs=0.02)


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
def test_empirical_frequencies_match_position_probabilities(policy):
    scores, k, draws = np.array([1.0, 0.2, 0.9, -0.5, 0.4]), 3, 5000
    rng = np.random.default_rng(7)
    counts = np.zeros((scores.size, k))
    for _ in range(draws):
        counts[policy.rank(scores, k, rng).order, np.arange(k)] += 1
    # 5000 draws: binomial sd <= 0.0071, so 0.03 is over 4 sd
    assert np.abs(counts / draws - policy.position_probabilities(scores, k)).max() < 0.03


def test_plackett_luce_temperature_moves_between_greedy_and_uniform():
    scores = np.array([0.3, 2.0, -1.0, 1.1, 0.0, 0.7, 1.5, -0.2, 0.9, 0.1])  # gaps >= 0.1
    cold = PlackettLuce(1e-3)
    greedy = Greedy().position_probabilities(scores, 4)
    np.testing.assert_allclose(cold.position_probabilities(scores, 4), greedy, atol=1e-12)
    assert cold.rank(scores, 4, np.random.default_rng(1)).order.tolist() == [1, 6, 3, 8]
    hot = PlackettLuce(1e6).position_probabilities(scores, 4)
    np.testing.assert_allclose(hot, 1 / scores.size, atol=1e-5)


@pytest.mark.parametrize("policy", [EpsilonGreedy(0.5), PlackettLuce(1.0)], ids=lambda p: p.name)
def test_same_seed_same_ranking_other_seeds_differ(policy):
    scores = np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    def draw(seed):
        return policy.rank(scores, 3, np.random.default_rng(seed)).order.tolist()
    assert draw(42) == draw(42)
    assert len({tuple(draw(seed)) for seed in range(20)}) > 1


# --- invalid configs and inputs ------------------------------------------------------------

BAD_CONFIGS = [
    (lambda: EpsilonGreedy(-0.1), r"epsilon: .*-0\.1"),
    (lambda: EpsilonGreedy(1.5), r"epsilon: .*1\.5"),
    (lambda: EpsilonGreedy(float("nan")), r"epsilon: .*nan"),
    (lambda: EpsilonGreedy("0.1"), r"epsilon: expected a number"),
    (lambda: EpsilonGreedy(0.1, slot=-1), r"slot: .*-1"),
    (lambda: EpsilonGreedy(0.1, slot=1.5), r"slot: .*1\.5"),
    (lambda: EpsilonGreedy(0.1, explore_from=0), r"explore_from: .*0"),
    (lambda: PlackettLuce(0.0), r"temperature: .*0\.0"),
    (lambda: PlackettLuce(-1.0), r"temperature: .*-1\.0"),
    (lambda: PlackettLuce(float("inf")), r"temperature: .*inf"),
    (lambda: PlackettLuce(True), r"temperature: expected a number"),
]


@pytest.mark.parametrize("make,match", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_invalid_config_names_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


BAD_INPUTS = [
    ([], 3, r"scores: .*non-empty"),
    ([[1.0, 2.0]], 1, r"scores: .*1-D"),
    ([1.0, float("nan")], 2, r"scores: must be finite.*nan"),
    ([1.0, float("inf")], 2, r"scores: must be finite.*inf"),
    ([1.0, 2.0], 0, r"k: .*>= 1, got 0"),
    ([1.0, 2.0], 2.5, r"k: .*2\.5"),
]


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
@pytest.mark.parametrize("scores,k,match", BAD_INPUTS, ids=[m for *_, m in BAD_INPUTS])
def test_invalid_inputs_name_the_field(policy, scores, k, match):
    with pytest.raises(ValueError, match=match):
        policy.rank(scores, k, np.random.default_rng(0))
    with pytest.raises(ValueError, match=match):
        policy.position_probabilities(scores, k)


BAD_ORDERS = [
    ([0, 0], "distinct"), ([0, 3], "distinct"), ([0], "expected 2"), ([0.0, 1.0], "integer"),
]


@pytest.mark.parametrize("policy", POLICIES, ids=ids)
@pytest.mark.parametrize("order,match", BAD_ORDERS, ids=[m for _, m in BAD_ORDERS])
def test_invalid_logged_order_names_the_field(policy, order, match):
    with pytest.raises(ValueError, match=f"order: .*{match}"):
        policy.list_probability(np.array([0.1, 0.2, 0.3]), 2, np.array(order))
