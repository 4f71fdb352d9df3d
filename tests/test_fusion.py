"""Reciprocal rank fusion: hand-worked cases, then invariants over arbitrary rankings (hypothesis)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexes.fusion import RRF_K, reciprocal_rank_fusion


def order(fused):
    return [item for item, _ in fused]


def test_hand_worked_scores():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    # 1: 1/61 + 1/62, 3: 1/63 + 1/61, 2: 1/62 (Cormack et al.'s k = 60)
    assert order(fused) == [1, 3, 2]
    assert math.isclose(dict(fused)[1], 1 / 61 + 1 / 62) and math.isclose(dict(fused)[2], 1 / 62)


def test_agreement_beats_one_top_rank():
    # 7 is second in both lists; 1 and 2 are each first in one list only
    assert order(reciprocal_rank_fusion([[1, 7], [2, 7]]))[0] == 7


def test_ties_are_broken_by_best_rank_then_ranking_order_then_id():
    assert order(reciprocal_rank_fusion([[5], [4]])) == [5, 4]                 # equal: the first ranking's wins
    assert order(reciprocal_rank_fusion([[4], [5]])) == [4, 5]
    assert order(reciprocal_rank_fusion([[1, 2], [2, 1]])) == [1, 2]           # equal sums, best rank 1 for both
    assert order(reciprocal_rank_fusion([[9, 8, 3], [3, 8, 9]], k=0)) == [9, 3, 8]


def test_weights_and_k():
    assert order(reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[1.0, 3.0])) == [2, 1]
    assert order(reciprocal_rank_fusion([[1, 2], [2, 1]], weights=[1.0, 0.0])) == [1, 2]
    assert dict(reciprocal_rank_fusion([[1]], k=0))[1] == 1.0


def test_repeats_within_a_ranking_count_once_and_empty_input():
    assert reciprocal_rank_fusion([[3, 3, 4]]) == [(3, 1 / 61), (4, 1 / 63)]  # later items keep their positions
    assert reciprocal_rank_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"k": -1}, "k must be a finite number >= 0"),
    ({"k": float("nan")}, "k must be a finite number >= 0"),
    ({"weights": [1.0]}, "weights has 1 entries for 2 rankings"),
    ({"weights": [1.0, -0.5]}, "weights must be finite and >= 0"),
    ({"weights": [1.0, float("inf")]}, "weights must be finite and >= 0"),
])
def test_invalid_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reciprocal_rank_fusion([[1, 2], [2, 3]], **kwargs)


rankings = st.lists(st.lists(st.integers(0, 30), max_size=12, unique=True), max_size=4)


@given(rankings)
def test_every_item_once_scores_non_increasing(rs):
    fused = reciprocal_rank_fusion(rs)
    items = order(fused)
    assert len(items) == len(set(items)) and set(items) == {i for r in rs for i in r}
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < s <= len(rs) / (RRF_K + 1) for s in scores)


@given(rankings)
def test_one_ranking_keeps_its_order(rs):
    for r in rs:
        assert order(reciprocal_rank_fusion([r])) == r


@given(rankings, st.floats(0.1, 10.0))
def test_scaling_all_weights_keeps_the_order(rs, c):
    assert order(reciprocal_rank_fusion(rs, weights=[c] * len(rs))) == order(reciprocal_rank_fusion(rs))


@given(rankings)
def test_an_item_first_everywhere_is_first(rs):
    rs = [[99] + r for r in rs]
    if rs:
        assert order(reciprocal_rank_fusion(rs))[0] == 99


@given(rankings, st.data())
def test_moving_an_item_up_never_lowers_its_score(rs, data):
    rs = [r for r in rs if len(r) >= 2]
    if not rs:
        return
    j = data.draw(st.integers(0, len(rs) - 1))
    r = rs[j]
    i = data.draw(st.integers(1, len(r) - 1))
    item = r[i]
    better = rs[:j] + [r[:i - 1] + [item, r[i - 1]] + r[i + 1:]] + rs[j + 1:]
    assert dict(reciprocal_rank_fusion(better))[item] >= dict(reciprocal_rank_fusion(rs))[item]


@given(rankings)
def test_the_order_of_the_rankings_changes_scores_not_at_all(rs):
    assert dict(reciprocal_rank_fusion(rs)) == dict(reciprocal_rank_fusion(rs[::-1]))
