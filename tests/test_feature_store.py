"""One contract for every feature store (in process, a saved snapshot, Redis) and what Redis adds:
replicas that see each other's updates and a publish that readers see whole or not at all."""

import gzip
import json
import random
import threading

import numpy as np
import pytest
import redis

from eval.world.business import with_business
from ranking.feature_store import (SNAPSHOT_FILE, RedisFeatureStore, load_store, publish,
                                   save_store)
from ranking.features import FEATURES, InMemoryFeatureStore, RankCandidate, RankQuery, featurize
from suggest.demo import make_demo_world
from suggest.errors import ArtifactError
from suggest.events import Impression, ShownItem
from suggest.text import normalize


@pytest.fixture(scope="module")
def world():
    return make_demo_world(seed=7)


@pytest.fixture(scope="module")
def data(world):
    return with_business(world, seed=1)


def _candidates(data, n=40, seed=0):
    rng = random.Random(seed)
    products = rng.sample(data.catalog.products, n)
    cands = [RankCandidate(normalize(p.name), (p.product_id, rng.choice(data.catalog.products).product_id),
                           rng.random(), ("prefix",)) for p in products[: n // 2]]
    return cands + [RankCandidate(f"product:{p.product_id}", (p.product_id,), rng.random(), ("infix",), match_start=3)
                    for p in products[n // 2:]]


def _impressions(cands, n, seed, user_id=None):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shown = tuple(ShownItem(pos, c.item, c.product_ids, 1.0) for pos, c in enumerate(rng.sample(cands, 5)))
        clicks = tuple(pos for pos in range(5) if rng.random() < 0.2)
        carts = tuple(s.product_ids[0] for s in shown if s.position in clicks and rng.random() < 0.5)
        out.append(Impression(f"r{seed}-{i}", "s", user_id, "suggest", "b", 0, "greedy", 1.0, shown, clicks, carts))
    return out


@pytest.fixture(scope="module")
def cands(data):
    return _candidates(data)


@pytest.fixture(scope="module")
def state(data, cands):
    return InMemoryFeatureStore(data, _impressions(cands, 200, seed=1)).state()


def _queries(data):
    user = data.orders[0].user_id
    return [RankQuery("ban"), RankQuery("organic gr", user_id=user, hour=18, dow=5),
            RankQuery("milk", surface="search", user_id=user, store="store-2"), RankQuery("", user_id=10**9)]


def _matrices(store, data, cands):
    return [featurize(q, cands, store) for q in _queries(data)]


@pytest.fixture
def client(redis_url):
    with redis.Redis.from_url(redis_url) as c:
        yield c


@pytest.fixture(params=["memory", "snapshot", "redis"])
def store(request, state, tmp_path):
    """A fresh store of each kind holding `state`: the tests below change it."""
    source = InMemoryFeatureStore.from_state(state)
    if request.param == "memory":
        return source
    if request.param == "snapshot":
        save_store(source, tmp_path / "snapshot")
        return load_store(tmp_path / "snapshot")
    namespace, client = request.getfixturevalue("redis_namespace"), request.getfixturevalue("client")
    publish(source, client, namespace)
    return RedisFeatureStore(client, namespace)


@pytest.fixture
def reference(state):
    return InMemoryFeatureStore.from_state(state)


def col(X, name):
    return X[:, FEATURES.index(name)]


def test_every_store_featurizes_exactly_like_the_in_memory_one(store, reference, data, cands):
    for X, Y in zip(_matrices(store, data, cands), _matrices(reference, data, cands)):
        assert X.shape == (len(cands), len(FEATURES))
        np.testing.assert_array_equal(X, Y)
    assert store.items([c.item for c in cands]) == [reference.item(c.item) for c in cands]
    assert store.item("never shown") == reference.item("never shown") and store.items([]) == []


def test_updates_change_features_alike_on_every_store(store, reference, data, cands):
    user = data.orders[0].user_id
    mine = reference.user(user)
    orders, old = mine.orders, next(iter(mine.bought))
    new = next(p.product_id for p in data.catalog.products if p.product_id not in mine.bought)
    fresh = RankCandidate("never shown before", (new,), 0.5, ("prefix",))
    query = RankQuery("nev", user_id=user)
    before = featurize(query, [fresh], store)
    assert col(before, "bought_before")[0] == 0 and col(before, "log_impressions")[0] == 0
    clicked = Impression("r-new", "s", user, "suggest", "nev", 0, "greedy", 1.0,
                         (ShownItem(0, fresh.item, (new,), 1.0),), clicks=(0,), add_to_carts=(new,))
    for s in (store, reference):
        s.add_purchase(user, [new, old])          # one new line, one reorder
        s.add_purchase(10**9, [new])              # a shopper with no history yet
        s.add_impression(clicked)
    after = featurize(query, [fresh], store)
    np.testing.assert_array_equal(after, featurize(query, [fresh], reference))
    for X, Y in zip(_matrices(store, data, cands), _matrices(reference, data, cands)):
        np.testing.assert_array_equal(X, Y)
    assert col(after, "bought_before")[0] == 1 and col(after, "log_days_since_order")[0] == 0
    assert col(before, "log_orders")[0] == pytest.approx(np.log1p(orders))
    assert col(after, "log_orders")[0] == pytest.approx(np.log1p(orders + 1))
    assert col(after, "ctr")[0] > col(before, "ctr")[0] and col(after, "atc_rate")[0] > col(before, "atc_rate")[0]
    assert col(after, "log_impressions")[0] == pytest.approx(np.log1p(1))
    stranger = featurize(RankQuery("nev", user_id=10**9), [fresh], store)
    assert col(stranger, "known_user")[0] == 1 and col(stranger, "bought_before")[0] == 1
    assert col(stranger, "reorder_rate")[0] == 0   # first order: nothing was bought before


def test_a_purchase_needs_products(store):
    with pytest.raises(ValueError, match="product_ids: a purchase needs at least one product"):
        store.add_purchase(1, [])


def test_replicas_see_each_others_updates(redis_url, redis_namespace, state, data, cands):
    # two replicas, two connection pools; one of them decodes responses, the other reads bytes
    with redis.Redis.from_url(redis_url) as c1, redis.Redis.from_url(redis_url, decode_responses=True) as c2:
        publish(InMemoryFeatureStore.from_state(state), c1, redis_namespace)
        a, b = RedisFeatureStore(c1, redis_namespace), RedisFeatureStore(c2, redis_namespace)
        reference = InMemoryFeatureStore.from_state(state)
        user, item = data.orders[0].user_id, cands[0].item
        before = b.item(item)
        for s in (a, reference):
            s.add_impression(_impressions(cands, 1, seed=5, user_id=user)[0])
            s.add_impression(Impression("x", "s", user, "suggest", "b", 0, "greedy", 1.0,
                                        (ShownItem(0, item, cands[0].product_ids, 1.0),), clicks=(0,)))
        assert b.item(item).impressions == before.impressions + 1 + (item in [
            i.item for i in _impressions(cands, 1, seed=5)[0].items])
        for s in (b, reference):
            s.add_purchase(user, [cands[3].product_ids[0]])
        assert a.user(user).orders == reference.user(user).orders and a.version == b.version
        for X, Y, Z in zip(_matrices(a, data, cands), _matrices(b, data, cands), _matrices(reference, data, cands)):
            np.testing.assert_array_equal(X, Z)
            np.testing.assert_array_equal(Y, Z)


def test_featurize_reads_redis_in_two_round_trips_whatever_the_list_length(client, redis_namespace, state, data):
    # counts the server's commands, so it assumes no one else uses this Redis meanwhile (a private
    # server, or CI's); two MULTI/EXEC: the user's hash, then three HMGETs for every item at once
    publish(InMemoryFeatureStore.from_state(state), client, redis_namespace)
    store = RedisFeatureStore(client, redis_namespace)
    query, many = RankQuery("b", user_id=data.orders[0].user_id), _candidates(data, n=200, seed=3)
    featurize(query, many[:2], store)   # the first read also loads the catalog

    def calls():
        stats = client.info("commandstats")
        return {c: stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("exec", "hmget", "hgetall", "get")}
    start = calls()
    featurize(query, many, store)
    end = calls()
    assert {c: end[c] - start[c] for c in end} == {"exec": 2, "hmget": 3, "hgetall": 1, "get": 2}


def test_a_reader_during_publish_sees_the_old_or_the_new_version(redis_url, redis_namespace, world, state, cands):
    old = InMemoryFeatureStore.from_state(state)
    # the new version differs in every part: prices and stock (catalog), item counters, users
    new = InMemoryFeatureStore(with_business(world, seed=2), _impressions(cands, 300, seed=2))
    new.add_purchase(world.orders[0].user_id, [cands[0].product_ids[0]])
    query, user = RankQuery("gr", store="store-1"), world.orders[0].user_id
    X_old, X_new = featurize(query, cands, old), featurize(query, cands, new)
    assert not np.array_equal(X_old, X_new)
    with redis.Redis.from_url(redis_url) as reader_client, redis.Redis.from_url(redis_url) as writer_client:
        first = publish(old, writer_client, redis_namespace)
        reader = RedisFeatureStore(reader_client, redis_namespace)
        np.testing.assert_array_equal(featurize(query, cands, reader), X_old)
        errors, versions = [], []

        def publish_new():
            try:
                versions.append(publish(new, writer_client, redis_namespace))
            except Exception as e:     # surfaced below, in the test's thread
                errors.append(e)
        t = threading.Thread(target=publish_new)
        t.start()
        while t.is_alive():
            X = featurize(query, cands, reader)
            assert np.array_equal(X, X_old) or np.array_equal(X, X_new)
            assert reader.user(user) in (old.user(user), new.user(user))
        t.join()
        assert not errors, errors
        np.testing.assert_array_equal(featurize(query, cands, reader), X_new)
        assert reader.version == versions[0] != first
        assert not list(reader_client.scan_iter(match=f"{redis_namespace}:{first}:*"))   # the old one is gone


def test_a_half_written_version_is_invisible_until_the_pointer_moves(client, redis_namespace, state, data, cands):
    # what a publisher that died before switching the pointer leaves behind
    version = publish(InMemoryFeatureStore.from_state(state), client, redis_namespace)
    client.hset(f"{redis_namespace}:vdead-0:impressions", mapping={c.item: 999 for c in cands})
    store = RedisFeatureStore(client, redis_namespace)
    np.testing.assert_array_equal(featurize(RankQuery("b"), cands, store),
                                  featurize(RankQuery("b"), cands, InMemoryFeatureStore.from_state(state)))
    assert store.version == version


def test_redis_refuses_an_unpublished_namespace_and_a_bad_name(client, redis_namespace):
    with pytest.raises(ArtifactError, match=f"no feature store published under Redis namespace '{redis_namespace}'"):
        RedisFeatureStore(client, redis_namespace).items(["banana"])
    for bad in ("", "a b", "ns*", "ns[0]"):
        with pytest.raises(ValueError, match="namespace must be letters, digits"):
            RedisFeatureStore(client, bad)


def test_snapshot_round_trip_is_byte_for_byte_deterministic(state, tmp_path):
    store = InMemoryFeatureStore.from_state(state)
    save_store(store, tmp_path / "a")
    save_store(load_store(tmp_path / "a"), tmp_path / "b")
    assert (tmp_path / "a" / SNAPSHOT_FILE).read_bytes() == (tmp_path / "b" / SNAPSHOT_FILE).read_bytes()
    assert load_store(tmp_path / "b").state() == state
    save_store(store, tmp_path / "a")        # over an existing one, leaving no temporary file behind
    assert [p.name for p in (tmp_path / "a").iterdir()] == [SNAPSHOT_FILE]


def _gz(doc) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


BAD_SNAPSHOTS = [   # (what is in the file, None for no file; the message)
    (None, "no feature store snapshot here"),
    (b"not gzip at all", "corrupt feature store snapshot"),
    (_gz({"format": "keystroke-feature-store"})[:20], "corrupt feature store snapshot"),   # truncated
    (gzip.compress(b"{not json", mtime=0), "corrupt feature store snapshot"),
    (_gz({"something": "else"}), "not a feature store snapshot"),
    (_gz({"format": "keystroke-feature-store", "format_version": 99, "state": {}}), "format_version 99"),
    (_gz({"format": "keystroke-feature-store", "format_version": 1, "state": {"users": {}}}), "malformed"),
]


@pytest.mark.parametrize("content, message", BAD_SNAPSHOTS)
def test_a_bad_snapshot_is_refused_naming_the_file(tmp_path, content, message):
    if content is not None:
        (tmp_path / SNAPSHOT_FILE).write_bytes(content)
    with pytest.raises(ArtifactError, match=message) as e:
        load_store(tmp_path)
    assert str(tmp_path / SNAPSHOT_FILE) in str(e.value)
