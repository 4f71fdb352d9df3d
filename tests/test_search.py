"""GET /v1/search and the policy layer both surfaces share: retrieval, paging, filters, constraints."""

import numpy as np
import pytest
from litestar.testing import TestClient

from eval.world.business import with_business
from ranking.rules import load_rules
from suggest.app import create_app
from suggest.artifact import build_artifact, load_artifact
from suggest.events import Click
from suggest.pipeline import Pipeline
from suggest.policy import load_policy

RESPONSE_KEYS = {"query", "artifact", "results", "total", "searched", "corrections", "relaxed", "page", "request_id",
                 "policy", "list_propensity"}


@pytest.fixture(scope="module")
def client(pipeline):
    with TestClient(create_app(pipeline=pipeline)) as c:
        yield c


def test_search_response_shape_and_names(client, world):
    body = client.get("/v1/search", params={"q": "milk", "k": 5}).json()
    assert set(body) == RESPONSE_KEYS and 0 < len(body["results"]) <= 5 and body["total"] >= len(body["results"])
    names = {p.product_id: p.name for p in world.catalog.products}
    for r in body["results"]:
        assert set(r) == {"product_id", "name", "score", "sponsored", "propensity"}
        assert r["name"] == names[r["product_id"]] and "milk" in r["name"].lower() and r["sponsored"] is False
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_typos_are_corrected_and_an_impossible_query_is_relaxed_and_says_so(client):
    fixed = client.get("/v1/search", params={"q": "bananna", "k": 3}).json()
    assert fixed["corrections"] == [["bananna", "banana"]] and fixed["searched"] == "banana"
    assert all("banana" in r["name"].lower() for r in fixed["results"])
    relaxed = client.get("/v1/search", params={"q": "organic qqqzzz milk"}).json()
    assert relaxed["relaxed"] and relaxed["searched"] == "organic milk" and relaxed["results"]
    nothing = client.get("/v1/search", params={"q": "qqqzzz"})
    assert nothing.status_code == 200 and nothing.json()["results"] == [] and nothing.json()["total"] == 0


def test_pages_follow_on_from_each_other(client):
    first, second = (client.get("/v1/search", params={"q": "milk", "k": 4, "page": p}).json()["results"] for p in (1, 2))
    both = client.get("/v1/search", params={"q": "milk", "k": 8}).json()["results"]
    assert [r["product_id"] for r in first + second] == [r["product_id"] for r in both]


def test_department_and_store_filters_hold(client, world):
    dept = {p.product_id: p.department_id for p in world.catalog.products}
    some = next(p for p in world.catalog.products if "milk" in p.name.lower())
    body = client.get("/v1/search", params={"q": "milk", "department": some.department_id, "k": 50}).json()
    assert body["results"] and all(dept[r["product_id"]] == some.department_id for r in body["results"])
    store, out = next(iter(world.out_of_stock.items()))
    for q in ("milk", "organic", "bread", "banana"):
        shown = client.get("/v1/search", params={"q": q, "store": store, "k": 100}).json()["results"]
        assert not {r["product_id"] for r in shown} & set(out)


BAD_SEARCHES = [
    ({"q": ""}, "q"), ({"q": "   "}, "q"), ({"q": "milk", "k": 0}, "k"), ({"q": "milk", "k": 101}, "k"),
    ({"q": "milk", "page": 0}, "page"), ({"q": "milk", "page": 51}, "page"), ({"q": "milk", "department": "nope"},
                                                                           "department"),
    ({"q": "milk", "store": "nope"}, "store"), ({"q": "milk", "explain": "maybe"}, "explain"),
    ({"q": "x" * 201}, "q"), ({"q": "mi\x00lk"}, "q"), ({"q": "milk", "user_id": -1}, "user_id"),
]


@pytest.mark.parametrize("params, field", BAD_SEARCHES)
def test_bad_searches_are_400_naming_the_field(client, params, field):
    r = client.get("/v1/search", params=params)
    assert r.status_code == 400 and r.json()["field"] == field and r.json()["error"]


# --- the policy layer, on a world with campaigns -----------------------------------------------

@pytest.fixture(scope="module")
def business(world, tmp_path_factory):
    data = with_business(world, seed=3)
    return data, load_artifact(build_artifact(data, tmp_path_factory.mktemp("biz") / "a", progress=False))


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _sponsorable_query(data):
    brands = {c.brand.lower() for c in data.campaigns}
    return next(p.name.split()[-1].lower() for p in data.catalog.products if p.brand and p.brand.lower() in brands)


def test_sponsored_results_are_labelled_only_in_their_slots_and_spend_their_budget(business, tmp_path):
    data, artifact = business
    policy = load_policy(_write(tmp_path, "policy.toml", "[search]\nmax_sponsored = 1\nsponsored_positions = [1]\n"
                                                          "ads_weight = 1000.0\n"))
    pipeline = Pipeline.from_artifact(artifact, policies=policy)
    q = pipeline.search.make_query(pipeline, _sponsorable_query(data), k=10)
    answer = pipeline.search.search(q, request_id="r1")
    flags = [r.sponsored for r in answer.results]
    assert flags.count(True) == 1 and flags[1]        # the huge ads weight buys the one sponsored slot
    brand = {p.product_id: p.brand for p in data.catalog.products}[answer.results[1].product_id]
    campaign = next(c for c in data.campaigns if c.brand.lower() == brand.lower())
    before = pipeline.search.policy.budget_left()[campaign.campaign_id]
    pipeline.observe(Click("r1", 1))
    pipeline.observe(Click("r1", 1))                  # one charge per slot
    assert pipeline.search.policy.budget_left()[campaign.campaign_id] == pytest.approx(before - campaign.bid)


def test_rules_pin_block_and_caps_hold_on_both_surfaces(business, tmp_path):
    data, artifact = business
    plain = Pipeline.from_artifact(artifact)
    q = plain.search.make_query(plain, "milk", k=10)
    results = plain.search.search(q).results
    pinned, blocked = results[-1].product_id, results[0].product_id
    rules = load_rules(_write(tmp_path, "rules.toml", f'[[pin]]\nkey = "product:{pinned}"\nposition = 0\n'
                                                        f'surface = "search"\n[[block]]\nproduct = {blocked}\n'
                                                        '[[block]]\nterm = "bananas"\n'))
    policy = load_policy(_write(tmp_path, "p.toml", "[search]\nmax_per_brand = 1\n[suggest]\nmax_per_aisle = 2\n"))
    ruled = Pipeline.from_artifact(artifact, policies=policy, rules=rules)
    shown = ruled.search.search(ruled.search.make_query(ruled, "milk", k=10)).results
    assert shown[0].product_id == pinned and blocked not in {r.product_id for r in shown}
    brands = [{p.product_id: p.brand for p in data.catalog.products}[r.product_id] for r in shown]
    assert len([b for b in brands if b]) == len({b for b in brands if b})
    aisle = dict(zip(artifact.table.product_ids.tolist(), artifact.table.product_aisle.tolist()))
    for text in ("b", "ch", "o"):
        suggestions = ruled.suggest(ruled.make_query(text, k=10))
        firsts = [aisle[s.product_ids[0]] for s in suggestions if s.product_ids]
        assert max(np.unique(firsts, return_counts=True)[1]) <= 2
        assert not any("banana" in s.text for s in suggestions)


def test_exploration_logs_propensities_that_describe_the_policy(business, tmp_path):
    _, artifact = business
    policy = load_policy(_write(tmp_path, "x.toml", "[search.exploration]\nepsilon = 0.5\nfirst_slot = 2\n"))
    pipeline = Pipeline.from_artifact(artifact, policies=policy)
    q = pipeline.search.make_query(pipeline, "milk", k=6)
    lists = [pipeline.search.search(q, request_id=f"r{i}") for i in range(60)]
    assert {a.policy for a in lists} == {"safe-eps(0.5,slots=2..)"}
    orders = {tuple(r.product_id for r in a.results) for a in lists}
    assert len(orders) > 1                                          # it explores ...
    assert all(a.results[j].propensity == 1.0 for a in lists for j in (0, 1))   # ... never above first_slot
    assert all(0 < r.propensity <= 1 for a in lists for r in a.results)
    again = pipeline.search.search(q, request_id="r7")
    assert [r.product_id for r in again.results] == [r.product_id for r in lists[7].results]  # seeded by request


BAD_POLICIES = [
    ("[search]\nmax_sponsored = 1\n", "sponsored_positions"),
    ("[search]\nmax_per_brnd = 1\n", "search.max_per_brnd: unknown setting"),
    ("[checkout]\nk = 1\n", "unknown section"),
    ("[search.exploration]\nepsilon = 2\n", "epsilon"),
    ("[search]\nads_weight = -1\n", "ads_weight"),
]


@pytest.mark.parametrize("text, message", BAD_POLICIES)
def test_bad_policy_files_name_the_file_and_setting(tmp_path, text, message):
    path = _write(tmp_path, "policy.toml", text)
    with pytest.raises(ValueError, match=message) as e:
        load_policy(path)
    assert str(path) in str(e.value)


def test_a_posted_click_on_a_sponsored_result_spends_its_budget(business, tmp_path):
    data, artifact = business
    policy = load_policy(_write(tmp_path, "policy.toml", "[search]\nmax_sponsored = 1\nsponsored_positions = [0]\n"
                                                          "ads_weight = 1000.0\n"))
    pipeline = Pipeline.from_artifact(artifact, policies=policy)
    with TestClient(create_app(pipeline=pipeline, events_dir=tmp_path / "events")) as client:
        body = client.get("/v1/search", params={"q": _sponsorable_query(data), "k": 5}).json()
        assert body["results"][0]["sponsored"]
        before = sum(pipeline.search.policy.budget_left().values())
        click = {"type": "click", "request_id": body["request_id"], "position": 0}
        assert client.post("/v1/events", json=click).status_code == 200
        assert sum(pipeline.search.policy.budget_left().values()) < before
