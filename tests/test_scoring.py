"""The trained ranker behind the scorer seam: it orders suggestions, explains them, learns from events."""

import pytest
from litestar.testing import TestClient

from eval.train_ranker import train_ranker
from eval.world.simulate import build_world, simulate
from ranking.features import FEATURES
from suggest.app import create_app
from suggest.events import Impression, ShownItem
from suggest.pipeline import Pipeline
from suggest.scoring import load_scorer

TASKS = {"relevance", "purchase", "margin", "churn"}


@pytest.fixture(scope="module")
def ranker_dir(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ranker")
    simulate(build_world(world, progress=False), "plackett-luce", 400, seed=0, out=out / "logs", progress=False)
    train_ranker(world, out / "logs", out / "ranker", epochs=2, progress=False)
    return out / "ranker"


@pytest.fixture()
def ranked(artifact, ranker_dir):
    return Pipeline.from_artifact(artifact, scorer=load_scorer(ranker_dir))


def test_the_ranker_decides_the_order(ranked, pipeline):
    differs = 0
    for text in ("b", "ch", "org", "mil", "yog", "app", "s"):
        q = ranked.make_query(text, k=8, hour=10)
        mine = ranked.suggest(q)
        scores = [s.score for s in mine]
        popular = pipeline.suggest(q)
        assert scores == sorted(scores, reverse=True) and 0 < len(mine) <= 8
        differs += [s.text for s in mine] != [s.text for s in popular]
    assert differs > 0   # the popularity prior no longer has the last word


def test_explanations_add_up_and_name_declared_features(ranked, world):
    q = ranked.make_query("ch", k=5, user_id=world.orders[0].user_id, hour=10)
    for s in ranked.suggest(q, explain=True):
        e = s.explanation
        assert set(e["tasks"]) == TASKS
        assert all(0.0 <= e["tasks"][t] <= 1.0 for t in ("relevance", "purchase", "churn"))
        assert sum(e["contributions"].values()) == pytest.approx(e["value"], abs=1e-5)
        assert e["value"] == pytest.approx(s.score, abs=1e-5)
        for task in ("relevance", "purchase"):
            top = e["attributions"][task]
            assert 1 <= len(top) <= 5 and all(a["feature"] in FEATURES for a in top)
            sizes = [abs(a["value"]) for a in top]
            assert sizes == sorted(sizes, reverse=True)
    assert all(s.explanation is None for s in ranked.suggest(q))


def test_explain_over_http_on_suggest(artifact, ranker_dir):
    app = create_app(pipeline=Pipeline.from_artifact(artifact, scorer=load_scorer(ranker_dir)))
    with TestClient(app) as client:
        body = client.get("/v1/suggest", params={"q": "ch", "k": 3, "explain": "true"}).json()
        assert len(body["suggestions"]) == 3
        assert all(set(s["explanation"]["tasks"]) == TASKS for s in body["suggestions"])
        plain = client.get("/v1/suggest", params={"q": "ch", "k": 3}).json()
        assert all("explanation" not in s for s in plain["suggestions"])
        bad = client.get("/v1/suggest", params={"q": "ch", "explain": "maybe"})
        assert bad.status_code == 400 and bad.json()["field"] == "explain"


def test_the_popularity_prior_explains_itself_too(pipeline):
    (s,) = pipeline.suggest(pipeline.make_query("b", k=1), explain=True)
    assert s.explanation == {"value": s.score, "scorer": "popularity prior"}


def test_clicks_logged_through_the_scorer_move_the_click_through_feature(artifact, ranker_dir):
    scorer = load_scorer(ranker_dir)
    ranked = Pipeline.from_artifact(artifact, scorer=scorer)
    q = ranked.make_query("ch", k=5, hour=10)
    last = ranked.suggest(q)[-1]
    before = scorer.store.item(last.text)
    clicked = Impression("r", "s.0", None, "suggest", "ch", 0, "test", 1.0,
                         (ShownItem(0, last.text, last.product_ids, 1.0),), clicks=(0,))
    for _ in range(50):
        ranked.observe(clicked)
    after = scorer.store.item(last.text)
    assert after.impressions == before.impressions + 50 and after.clicks == before.clicks + 50


def test_a_missing_ranker_is_refused_with_its_path(tmp_path):
    from suggest.errors import ArtifactError
    with pytest.raises(ArtifactError, match=str(tmp_path)):
        load_scorer(tmp_path)


def test_explain_over_http_on_search(artifact, ranker_dir):
    app = create_app(pipeline=Pipeline.from_artifact(artifact, scorer=load_scorer(ranker_dir)))
    with TestClient(app) as client:
        body = client.get("/v1/search", params={"q": "milk", "k": 4, "explain": "true"}).json()
        assert len(body["results"]) == 4
        for r in body["results"]:
            e = r["explanation"]
            assert set(e["tasks"]) == TASKS and e["value"] == pytest.approx(r["score"], abs=1e-5)
            assert sum(e["contributions"].values()) == pytest.approx(e["value"], abs=1e-5)
            assert all(a["feature"] in FEATURES for a in e["attributions"]["purchase"])
        plain = client.get("/v1/search", params={"q": "milk", "k": 4}).json()["results"]
        assert all("explanation" not in r for r in plain)
        # the ranker, not the retrieval rank, orders the page
        unranked = TestClient(create_app(pipeline=Pipeline.from_artifact(artifact)))
        with unranked as other:
            assert [r["product_id"] for r in other.get("/v1/search", params={"q": "milk", "k": 10}).json()["results"]] \
                != [r["product_id"] for r in client.get("/v1/search", params={"q": "milk", "k": 10}).json()["results"]]
