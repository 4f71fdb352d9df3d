"""Logged impressions become training rows with the right labels and masks."""

import numpy as np
import pytest

from eval.world.business import with_business
from ranking.features import FEATURES, InMemoryFeatureStore
from ranking.training_data import training_set
from suggest.demo import make_demo_world
from suggest.events import Impression, ShownItem, Visit


@pytest.fixture(scope="module")
def store():
    return InMemoryFeatureStore(with_business(make_demo_world(seed=4, n_users=30, variants=4), seed=1))


def test_labels_and_masks(store):
    suggest = Impression("r1", "v1.0", 1, "suggest", "ban", 2, "greedy", 1.0,
                         (ShownItem(0, "banana", (1, 2), 1.0, score=0.5, sources=("prefix",)),
                          ShownItem(1, "bandages", (3,), 1.0, score=0.1, sources=("prefix",))), clicks=(0,))
    search = Impression("r2", "v1.0", 1, "search", "banana", 3, "greedy", 1.0,
                        (ShownItem(0, "product:1", (1,), 1.0, score=0.4), ShownItem(1, "product:2", (2,), 1.0, score=0.2)),
                        clicks=(1,), add_to_carts=(2,), revenue=2.0, margin=0.5)
    lonely = Impression("r3", "v9.0", None, "suggest", "x", 0, "greedy", 1.0, (ShownItem(0, "x", (4,), 1.0),))
    ts = training_set([suggest, search, lonely, Visit(1, "v1", 1, 1, 2.0, False)], store)
    assert ts.X.shape == (5, len(FEATURES)) and len(ts) == 5
    assert ts.labels["relevance"].tolist() == [1, 0, 0, 1, 0]
    # Carts happen on search pages; a suggestion is purchased when it was clicked and leads to what
    # its session carted ("banana" leads to product 2), labelled only where the session searched at all
    # (not v9.0). A purchase is always a click, on both surfaces.
    assert ts.masks["purchase"].tolist() == [True, True, True, True, False]
    assert ts.labels["purchase"].tolist() == [1, 0, 0, 1, 0]
    unclicked = Impression("r4", "v1.0", 1, "suggest", "ba", 1, "greedy", 1.0,
                           (ShownItem(0, "bandages", (3,), 1.0), ShownItem(1, "banana", (1, 2), 1.0)), clicks=(0,))
    assert training_set([unclicked, search], store).labels["purchase"][:2].tolist() == [0, 0]  # leads there, not chosen
    assert ts.masks["margin"].tolist() == [False, False, False, True, False]
    assert ts.labels["margin"][3] == pytest.approx(0.5)
    assert ts.masks["churn"].tolist() == [True, True, True, True, False]        # visit v9 has no outcome
    assert ts.labels["churn"][:4].tolist() == [1, 1, 1, 1]                     # v1: the user did not return
    assert ts.group.tolist() == [0, 0, 1, 1, 2] and ts.position.tolist() == [0, 1, 0, 1, 0]
    assert ts.prior.tolist() == pytest.approx([0.5, 0.1, 0.4, 0.2, 0.0])
    assert ts.user.tolist() == [1, 1, 1, 1, -1]
    assert ts.visit.tolist() == [0, 0, 0, 0, 1]                                 # churn is one label per visit
    assert training_set([], store).X.shape == (0, len(FEATURES))


def test_user_features_are_taken_as_of_the_visit_so_the_bought_product_does_not_leak():
    data = with_business(make_demo_world(seed=4, n_users=30, variants=4), seed=1)
    store = InMemoryFeatureStore(data)
    by_user = {}
    for o in data.orders:
        by_user.setdefault(o.user_id, []).append(o)
    # A user's product first bought in their visit v (not before): the session replaying v buys it.
    user, visit, new = next((u, v, p) for u, orders in sorted(by_user.items()) for v in range(1, len(orders))
                            for p in orders[v].product_ids
                            if all(p not in o.product_ids for o in orders[:v]))
    shown = (ShownItem(0, f"product:{new}", (new,), 1.0, score=0.3),)
    imp = Impression("r", f"0.0.1.{visit}.0", user, "search", "x", 0, "greedy", 1.0, shown, clicks=(0,),
                     add_to_carts=(new,))
    bought = FEATURES.index("bought_before")
    assert training_set([imp], store).X[0, bought] == 1.0                 # the static store leaks the label
    as_of = training_set([imp], store, data.orders)
    assert as_of.X[0, bought] == 0.0                                      # as of the visit: not bought yet
    assert as_of.X[0, FEATURES.index("log_orders")] == pytest.approx(np.log1p(visit))
    first = Impression("r", "0.0.1.0.0", user, "search", "x", 0, "greedy", 1.0, shown)
    assert training_set([first], store, data.orders).X[0, FEATURES.index("known_user")] == 0.0  # no history yet
