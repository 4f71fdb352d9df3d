"""The ranker's cosine feature: one quantity in training (embedded on demand) and serving (artifact vectors)."""

import numpy as np
import pytest

from eval.train_ranker import train_ranker
from eval.world.simulate import build_world, simulate
from indexes.vector import VectorSource
from ranking.features import FEATURES, InMemoryFeatureStore, RankCandidate, RankQuery
from ranking.ranker import Ranker
from ranking.training_data import training_set
from suggest.artifact import build_artifact, load_artifact
from suggest.errors import ArtifactError
from suggest.events import read_events
from suggest.pipeline import Pipeline
from suggest.scoring import RankerScorer, load_scorer
from suggest.semantic import Similarity, product_texts
from tests.test_vector import trigram_embed

COSINE = FEATURES.index("cosine")


class Counting:
    """trigram_embed that counts its calls and texts."""

    def __init__(self):
        self.calls, self.texts = 0, 0

    def __call__(self, texts):
        self.calls += 1
        self.texts += len(texts)
        return trigram_embed(texts)


def test_cosine_is_the_dot_product_of_the_query_and_item_texts(world):
    sim = Similarity(trigram_embed, {"name": "trigram"}, product_texts(world))
    p = world.catalog.products[0]
    items = ["oat milk", f"product:{p.product_id}", "diapers"]
    texts = ["oat milk", product_texts(world)[p.product_id], "diapers"]
    want = trigram_embed(texts) @ trigram_embed(["oat mi"])[0]
    assert np.allclose(sim("Oat  Mi", items), want, atol=1e-6)       # the query is normalised first
    assert sim("oat mi", items)[0] > sim("oat mi", items)[2]           # closer to what was typed
    assert np.all(sim("oa", items) == 0) and sim("oat", []).shape == (0,)  # too short to say anything


def test_warm_embeds_each_text_once_in_batches(world):
    embed = Counting()
    sim = Similarity(embed, {"name": "trigram"}, product_texts(world))
    queries, items = ["oat mi", "oat mi", "ban", "b"], ["oat milk", "banana", "oat milk", "product:1"]
    sim.warm(queries, items)
    assert embed.texts == 2 + 3 and embed.calls == 2    # distinct queries of 3+ chars, distinct items
    before = embed.calls
    out = sim("oat mi", ["banana", "oat milk", "product:1"])
    assert embed.calls == before                        # nothing left to embed
    assert np.allclose(out, Similarity(trigram_embed, {}, product_texts(world))("oat mi", ["banana", "oat milk", "product:1"]))


def test_serving_reads_the_artifact_vectors_and_gets_what_training_computed(artifact, world):
    source = VectorSource.build(artifact.table, world, trigram_embed, {"name": "trigram"})
    served = Similarity.from_vector_source(source)
    trained = Similarity(trigram_embed, {"name": "trigram"}, product_texts(world))
    items = list(artifact.table.texts[:20]) + [f"product:{pid}" for pid in artifact.table.product_ids[:20].tolist()]
    for text in ("oat mi", "yogurt greek", "chocolate"):
        assert np.allclose(served(text, items), trained(text, items), atol=1e-5)


def test_training_rows_carry_the_cosine(world, tmp_path):
    simulate(build_world(world, progress=False), "plackett-luce", 60, seed=0, out=tmp_path / "logs", progress=False)
    events = [e for f in sorted((tmp_path / "logs").glob("events-*")) for e in read_events(f)]
    store = InMemoryFeatureStore(world, [])
    plain = training_set(events, store, world.orders)
    sim = Similarity(trigram_embed, {"name": "trigram"}, product_texts(world))
    with_cosine = training_set(events, store, world.orders, sim)
    assert np.all(plain.X[:, COSINE] == 0)
    search = with_cosine.surface == 1
    assert search.any() and (with_cosine.X[search, COSINE] > 0.2).mean() > 0.2  # the query resembles the products
    assert np.all(with_cosine.X[~search, COSINE] == 0)    # suggest: no encoder pass per keystroke
    others = [i for i in range(len(FEATURES)) if i != COSINE]
    assert np.array_equal(plain.X[:, others], with_cosine.X[:, others])  # nothing else changes


@pytest.fixture(scope="module")
def cosine_ranker(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("cosine-ranker")
    simulate(build_world(world, progress=False), "plackett-luce", 300, seed=0, out=out / "logs", progress=False)
    report = train_ranker(world, out / "logs", out / "ranker", epochs=2, progress=False, embed=trigram_embed,
                          encoder={"name": "trigram", "path": None})
    return out / "ranker", report


def test_a_ranker_remembers_its_encoder_and_serves_only_with_it(cosine_ranker, world, artifact, tmp_path):
    ranker_dir, report = cosine_ranker
    assert report["encoder"] == {"name": "trigram", "path": None} == Ranker.load(ranker_dir).encoder
    assert Ranker.load(ranker_dir).std[COSINE] > 1e-3                     # the feature varied in training
    with pytest.raises(ArtifactError, match="trigram.*no vector source.*--adapter trigram"):
        load_scorer(ranker_dir, artifact=artifact)
    other = build_artifact(world, tmp_path / "other", progress=False, embed=trigram_embed, encoder={"name": "v2"})
    with pytest.raises(ArtifactError, match="encoder 'v2'"):
        load_scorer(ranker_dir, artifact=load_artifact(other, embed=trigram_embed))
    with pytest.raises(ArtifactError, match="learnt the cosine feature"):
        RankerScorer(Ranker.load(ranker_dir), InMemoryFeatureStore(world, []))
    good = load_artifact(build_artifact(world, tmp_path / "good", progress=False, embed=trigram_embed,
                                        encoder={"name": "trigram"}), embed=trigram_embed)
    scorer = load_scorer(ranker_dir, artifact=good)
    ranker = scorer.ranker
    items = ["oat milk", "banana", f"product:{good.table.product_ids[0]}"]
    scored = scorer.score(RankQuery("oat mi", "search"), [RankCandidate(i, ()) for i in items], k=3)
    served = scored.inputs[:, COSINE] * ranker.std[COSINE] + ranker.mean[COSINE]   # undo the standardisation
    want = Similarity(trigram_embed, {}, product_texts(world))("oat mi", items)
    assert np.allclose(served, want, atol=1e-4) and served[0] > served[1]
    typed = scorer.score(RankQuery("oat mi", "suggest"), [RankCandidate(i, ()) for i in items], k=3)
    assert np.allclose(typed.inputs[:, COSINE] * ranker.std[COSINE] + ranker.mean[COSINE], 0, atol=1e-5)  # suggest: 0
    ranked = Pipeline.from_artifact(good, scorer=scorer)                       # the whole request path
    assert ranked.suggest(ranked.make_query("oat mi", k=5, hour=10), explain=True)
    found = ranked.search.search(ranked.search.make_query(ranked, "oat milk", k=3), explain=True)
    assert found.results and all(r.explanation["tasks"] for r in found.results)
