"""The interaction world against the real Instacart statistics it is grounded in."""

from collections import Counter

import pytest

from eval.world.simulate import build_world, simulate
from suggest.loaders import load_data

pytestmark = pytest.mark.realdata

SESSIONS = 20_000
AISLE_TV_TOLERANCE = 0.12      # sampling noise alone is ~0.06 at this many purchases
REORDER_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def run(real_data_dir):
    world = build_world(load_data(real_data_dir), progress=False)
    return world, simulate(world, "plackett-luce", SESSIONS, seed=0, workers=2, progress=False)


def _real_lines(world):
    test = world.split.test_users
    return [(p, r) for o in world.data.orders if o.user_id not in test for p, r in zip(o.product_ids, o.reordered)]


def test_purchase_shares_per_aisle_match_the_real_order_lines(run):
    world, summary = run
    real = Counter(world.data.catalog.get(p).aisle_id for p, _ in _real_lines(world))
    total, sim = sum(real.values()), summary["purchase_aisles"]
    n = sum(sim.values())
    assert n > 2000
    tv = 0.5 * sum(abs(sim.get(str(a), 0) / n - c / total) for a, c in real.items())
    assert tv <= AISLE_TV_TOLERANCE


def test_reorder_share_matches_the_real_reordered_rate(run):
    world, summary = run
    known = [r for _, r in _real_lines(world) if r is not None]   # lines whose source says
    assert abs(summary["reorder_share_known"] - sum(known) / len(known)) <= REORDER_TOLERANCE


def test_shoppers_behave_plausibly(run):
    _, summary = run
    assert 0.1 < summary["success_rate"] < 0.6 and 0.5 < summary["return_rate"] < 1.0
    ctr = summary["ctr_by_position"]
    assert ctr[0] > ctr[1] > ctr[3] > ctr[9]
