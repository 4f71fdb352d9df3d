"""The ranker's features: declared once, computed per group, read through the feature store."""

import math

import numpy as np
import pytest

from eval.world.business import with_business
from ranking.features import FEATURE_GROUPS, FEATURES, InMemoryFeatureStore, RankCandidate, RankQuery, featurize
from suggest.demo import make_demo_world
from suggest.events import Impression, ShownItem


@pytest.fixture(scope="module")
def data():
    return with_business(make_demo_world(seed=4, n_users=60, variants=5), seed=1)


@pytest.fixture(scope="module")
def store(data):
    shown = (ShownItem(0, "banana", (1,), 1.0), ShownItem(1, "greek yogurt", (2,), 1.0))
    clicked = [Impression(f"r{i}", "s", None, "suggest", "b", 0, "greedy", 1.0, shown, (0,), (1,)) for i in range(40)]
    return InMemoryFeatureStore(data, clicked)


def col(X, name):
    return X[:, FEATURES.index(name)]


def test_declared_list_matches_the_matrix(store):
    assert len(set(FEATURES)) == len(FEATURES) == sum(len(g) for g in FEATURE_GROUPS.values())
    X = featurize(RankQuery("ban"), [RankCandidate("banana", (1,), 0.3, ("prefix",))], store)
    assert X.shape == (1, len(FEATURES)) and X.dtype == np.float32 and np.isfinite(X).all()
    assert featurize(RankQuery("x"), [], store).shape == (0, len(FEATURES))


def test_query_candidate_features(store):
    cands = [RankCandidate("banana chips", (1,), 0.1, ("prefix",)),
             RankCandidate("organic banana", (1,), 0.1, ("infix",), match_start=8),
             RankCandidate("banana", (1,), 0.1, ("typo",), edits=1)]
    X = featurize(RankQuery("banana ch"), cands, store)
    assert col(X, "match_prefix").tolist() == [1, 0, 0] and col(X, "match_infix").tolist() == [0, 1, 0]
    assert col(X, "edits").tolist() == [0, 0, 1]
    assert col(X, "match_position")[1] == pytest.approx(8 / len("organic banana"))
    overlap = col(X, "term_overlap")
    assert overlap[0] == pytest.approx(1.0) and 0 < overlap[2] < 1   # "ch" starts no word of "banana"


def test_candidate_features_use_logs_and_business_data(store, data):
    seen, unseen = RankCandidate("banana", (1,), 0.2), RankCandidate("never shown", (1,), 0.2)
    X = featurize(RankQuery("b"), [seen, unseen], store)
    assert col(X, "ctr")[0] > col(X, "ctr")[1] == pytest.approx(1 / 21)   # smoothed toward the prior
    assert col(X, "log_impressions")[0] == pytest.approx(math.log1p(40))
    pid = data.catalog.products[5].product_id
    X = featurize(RankQuery("b"), [RankCandidate("x", (pid,), 0.2)], store)
    assert col(X, "log_price")[0] == pytest.approx(math.log(data.prices[pid]), rel=1e-5)
    out_pid = next(iter(data.out_of_stock["store-3"]))
    X = featurize(RankQuery("b", store="store-3"), [RankCandidate("x", (out_pid,), 0.2)], store)
    assert col(X, "availability")[0] == 0.0
    sponsored = next(p for p in data.catalog.products if p.brand == data.campaigns[0].brand)
    X = featurize(RankQuery("b"), [RankCandidate("x", (sponsored.product_id,), 0.2)], store)
    assert col(X, "sponsored_bid")[0] == pytest.approx(data.campaigns[0].bid)


def test_user_features(store, data):
    order = data.orders[0]
    mine = RankCandidate("mine", (order.product_ids[0],), 0.1)
    anon = featurize(RankQuery("b"), [mine], store)
    known = featurize(RankQuery("b", user_id=order.user_id), [mine], store)
    for name in FEATURE_GROUPS["user"]:
        assert col(anon, name)[0] == 0.0
    assert col(known, "known_user")[0] == 1 and col(known, "bought_before")[0] == 1
    assert 0 < col(known, "aisle_affinity")[0] <= 1 and col(known, "log_orders")[0] > 0


def test_context_features(store):
    X = featurize(RankQuery("milk", surface="search", hour=6, dow=3), [RankCandidate("milk", (1,), 0.1)], store)
    assert col(X, "surface_search")[0] == 1 and col(X, "log_prefix_len")[0] == pytest.approx(math.log1p(4))
    assert col(X, "hour_sin")[0] == pytest.approx(1.0) and abs(col(X, "hour_cos")[0]) < 1e-6
