"""The offline QAC evaluation: metrics by hand, the split's guarantees, the MPC baseline, one replay."""

from __future__ import annotations

import json
import random

import pytest

from eval.qac import aggregate, hit_rank, keystrokes_saved, mrr_by_length, reciprocal_rank, success
from eval.replay_suggest import MostPopularCompletion, evaluate, make_targets, write_report
from eval.split import split_dataset
from suggest.demo import make_demo_world
from suggest.text import normalize
from suggest.types import Catalog, Dataset, Order, Product, Suggestion


def _s(*product_ids: int) -> Suggestion:
    return Suggestion("x", 1.0, ("test",), (), product_ids)


TARGET = 7
MISS, HIT, HIT_IN_GROUP = _s(1), _s(TARGET), _s(3, TARGET, 9)


@pytest.fixture(scope="module")
def world() -> Dataset:
    return make_demo_world(n_users=150)


# --- metrics, by hand ---------------------------------------------------------------------------

def test_rank_two_then_one():
    # typed "ab": after "a" the target is second, after "ab" first
    per_prefix = [[MISS, HIT], [HIT, MISS]]
    assert [reciprocal_rank(TARGET, r, 10) for r in per_prefix] == [0.5, 1.0]
    assert [success(TARGET, r, 10) for r in per_prefix] == [1.0, 1.0]
    # found after 1 of 2 characters: half the text never had to be typed
    assert keystrokes_saved(TARGET, per_prefix, 10) == 0.5
    ranks = [[0] + [hit_rank(TARGET, r, 10) for r in per_prefix]]
    assert aggregate(ranks, 10)["mrr@10"] == pytest.approx(0.75)


def test_a_suggestion_hits_when_the_target_is_any_of_its_products():
    # a phrase like "banana" leads to several products; the shopper can pick the target from it
    assert hit_rank(TARGET, [MISS, MISS, HIT_IN_GROUP], 10) == 3


def test_never_found_scores_zero():
    per_prefix = [[MISS], [MISS, MISS], []]
    assert all(reciprocal_rank(TARGET, r, 10) == 0.0 and success(TARGET, r, 10) == 0.0 for r in per_prefix)
    assert keystrokes_saved(TARGET, per_prefix, 10) == 0.0


def test_below_the_cutoff_is_not_found():
    # rank 3 is outside the top 2
    assert reciprocal_rank(TARGET, [MISS, MISS, HIT], 2) == 0.0
    assert reciprocal_rank(TARGET, [MISS, MISS, HIT], 3) == pytest.approx(1 / 3)


def test_keystrokes_saved_is_the_untyped_fraction():
    # 8 characters, first shown after 2 typed: 6 of 8 were not typed
    assert keystrokes_saved(TARGET, [[MISS], [HIT]] + [[HIT]] * 6, 10) == 0.75
    # shown only once the whole text is typed: nothing saved, though it was found
    assert keystrokes_saved(TARGET, [[MISS], [MISS], [HIT]], 10) == 0.0
    # a later miss does not undo an earlier hit: the shopper already picked it
    assert keystrokes_saved(TARGET, [[MISS], [HIT], [MISS], [MISS]], 10) == 0.5


def test_aggregate_means_over_targets_and_lengths():
    # target A "ab": empty box rank 1, then ranks 2, 1; target B "abcd": never in the empty box, ranks 0, 0, 0, 1
    ranks = [[1, 2, 1], [0, 0, 0, 0, 1]]
    m = aggregate(ranks, 10)
    assert m["mrr@10"] == pytest.approx((0.75 + 0.25) / 2)     # each target weighs the same, whatever its length
    assert m["success@10"] == pytest.approx((1.0 + 0.25) / 2)
    assert m["mrr@10/len=0"] == pytest.approx(0.5)              # the empty box is scored apart ...
    assert m["mrr@10/len=1"] == pytest.approx(0.25)
    assert m["mrr@10/len=3"] == pytest.approx(0.0)              # ... and len=3 only over targets that long
    assert m["success@10/len=8"] == 0.0                         # no target is 8 long: 0, not an error
    assert m["keystrokes_saved@10"] == pytest.approx((0.5 + 0.0) / 2)
    assert mrr_by_length(ranks, 5) == [(0, 0.5, 2), (1, 0.25, 2), (2, 0.5, 2), (3, 0.0, 1), (4, 1.0, 1)]


# --- the split ----------------------------------------------------------------------------------

def test_split_never_leaks_a_target_into_train(world):
    split = split_dataset(world)
    train_ids = {o.order_id for o in split.train.orders}
    assert split.targets and not train_ids & {o.order_id for o in split.targets}
    assert len(train_ids) + len(split.targets) == len(world.orders)
    last = {}
    for o in world.orders:
        last[o.user_id] = max(last.get(o.user_id, 0), o.order_number)
    for t in split.targets:
        assert t.order_number == last[t.user_id]
        # the user's earlier orders stay in training, so personalisation has a history to use
        assert any(o.user_id == t.user_id for o in split.train.orders)
    assert split.test_users == {t.user_id for t in split.targets}
    assert split.train.catalog is world.catalog and split.train.query_log is world.query_log


def test_split_is_deterministic_per_seed(world):
    assert split_dataset(world, seed=0) == split_dataset(world, seed=0)
    assert split_dataset(world, seed=0).test_users != split_dataset(world, seed=1).test_users
    n_users = len({o.user_id for o in world.orders})
    assert 0.1 * n_users < len(split_dataset(world).test_users) < 0.3 * n_users


def test_users_with_one_order_are_never_held_out():
    catalog = Catalog((Product(1, "Milk", 1, 1),), {1: "milk"}, {1: "dairy"})
    data = Dataset(catalog, tuple(Order(u, u, 1, (1,)) for u in range(200)))
    assert split_dataset(data, test_fraction=0.9).targets == ()


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2])
def test_bad_test_fraction(world, fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        split_dataset(world, test_fraction=fraction)


# --- the MPC baseline against a sorted scan -----------------------------------------------------

def test_mpc_matches_a_brute_force_scan():
    rng = random.Random(3)
    names = ["".join(rng.choice("ab ") for _ in range(rng.randint(1, 6))).strip() or "a" for _ in range(300)]
    catalog = Catalog(tuple(Product(i + 1, n, 1, 1) for i, n in enumerate(names)), {1: "a"}, {1: "d"})
    orders = tuple(Order(i, i, 1, tuple(rng.sample(range(1, 301), 3))) for i in range(400))
    data = Dataset(catalog, orders, anonymous_lines={5: 40, 6: 2})
    mpc = MostPopularCompletion(data)
    count = {p.product_id: data.anonymous_lines.get(p.product_id, 0) for p in catalog.products}
    for o in orders:
        for pid in o.product_ids:
            count[pid] += 1
    for prefix in ["", "a", "b", "ab", "a b", "ba a", "bbbbbb", "zz"]:
        expect = sorted((p for p in catalog.products if normalize(p.name).startswith(prefix)),
                        key=lambda p: (-count[p.product_id], normalize(p.name), p.product_id))[:10]
        assert [s.product_ids[0] for s in mpc.suggest(prefix, 10)] == [p.product_id for p in expect]


# --- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(world) -> dict:
    return evaluate(world, k=10, seed=0, progress=False)


def test_replay_targets_are_held_out_products(world):
    split = split_dataset(world)
    targets = make_targets(world, split)
    assert {t.user_id for t in targets} == split.test_users
    assert len(make_targets(world, split, max_targets=20, seed=1)) == 20
    assert make_targets(world, split, 20, seed=1) == make_targets(world, split, 20, seed=1)


def test_replay_writes_the_report(report, tmp_path):
    table = write_report(report, tmp_path)
    assert json.loads((tmp_path / "qac.json").read_text())["methods"].keys() == {"keystroke", "mpc"}
    assert table in (tmp_path / "qac.md").read_text() and "| mrr@10/len=0 |" in table
    assert (tmp_path / "qac_by_prefix_len.png").read_bytes()[:4] == b"\x89PNG"


def test_keystroke_ranks_better_and_fills_the_empty_box_better(report):
    ks, mpc = report["methods"]["keystroke"], report["methods"]["mpc"]
    assert ks["mrr@10"] > mpc["mrr@10"]
    # the empty box is personalised from the held-out user's earlier orders; MPC shows the same ten to all
    assert ks["success@10/len=0"] > 2 * mpc["success@10/len=0"]


def test_keystroke_beats_mpc_on_success(report):
    assert report["methods"]["keystroke"]["success@10"] > report["methods"]["mpc"]["success@10"]
