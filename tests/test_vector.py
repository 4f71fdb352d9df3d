"""Embedding recall, with a plain-function encoder (hashed character trigrams): no model, no download."""

import zlib

import numpy as np
import pytest

from indexes.vector import VECTOR_DISCOUNT, VectorSource
from suggest.artifact import build_artifact, load_artifact
from suggest.errors import ArtifactError
from suggest.pipeline import Pipeline
from suggest.types import ContextFilter

DIM = 256


def trigram_embed(texts):
    """Bag of hashed character trigrams, L2-normalised: similar spellings get similar vectors."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, t in enumerate(texts):
        padded = f"  {t.lower()} "
        for j in range(len(padded) - 2):
            out[i, zlib.crc32(padded[j:j + 3].encode()) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def vector(artifact, world):
    return VectorSource.build(artifact.table, world, trigram_embed, {"name": "trigram"})


def test_contract(vector, artifact, tmp_path):
    table = artifact.table
    mask, _ = table.masks(ContextFilter(department_id=int(sorted(artifact.manifest["departments"])[0])))
    vector.save(tmp_path / "v")
    loaded = VectorSource.load(tmp_path / "v", table, trigram_embed)
    assert len(loaded) == len(vector) and loaded.fallback
    for q in ["oat mi", "milk oat", "yogrt", "zz", "banana chips"]:
        for k in (1, 10):
            for m in (None, mask):
                got = vector.candidates(q, k, m)
                assert got == loaded.candidates(q, k, m)
                assert len(got) <= k and len({c.phrase_id for c in got}) == len(got)
                assert all(0 < c.prior <= VECTOR_DISCOUNT for c in got)
                assert [c.prior for c in got] == sorted((c.prior for c in got), reverse=True)
                if m is not None:
                    assert all(m[c.phrase_id] for c in got)
    assert vector.candidates("oa", 10) == []  # too short to embed


def test_finds_what_the_trie_cannot(vector, artifact):
    texts = [artifact.table.texts[c.phrase_id] for c in vector.candidates("milk oat", 5)]
    assert "oat milk" in texts       # word order the prefix sources cannot match


def test_pipeline_asks_it_only_when_exact_matches_are_few(vector, artifact):
    p = Pipeline(artifact.table, artifact.sources + (vector,), artifact.id)
    got = p.suggest(p.make_query("milk oat", k=10))
    assert any("vector" in s.sources for s in got)
    before = vector.cache_info().hits + vector.cache_info().misses
    p.suggest(p.make_query("ba", k=10))          # plenty of exact matches: recall is not asked
    assert vector.cache_info().hits + vector.cache_info().misses == before
    p.suggest(p.make_query("milk oat", k=10))    # asked again: the prefix embedding comes from the cache
    assert vector.cache_info().hits >= 1


def test_semantic_features(vector, artifact, world):
    table = artifact.table
    oat = table.texts.index("oat milk")
    sims = vector.similarity("oat milk", [oat, 0, 1])
    assert sims.shape == (3,) and sims[0] == pytest.approx(1.0, abs=1e-5) and sims[0] >= sims.max() - 1e-6
    rows = table.links(oat)[:3]
    h = vector.history_similarity(rows, [oat, table.texts.index("diapers")])
    assert h[0] > h[1]   # a user who buys oat milk is closer to "oat milk" than to "diapers"
    assert np.all(vector.history_similarity([], [oat]) == 0)


def test_artifact_with_vectors_round_trips_and_names_its_encoder(world, tmp_path):
    path = build_artifact(world, tmp_path / "a", progress=False, embed=trigram_embed, encoder={"name": "trigram"})
    art = load_artifact(path, embed=trigram_embed)
    assert [s.name for s in art.sources][-1] == "vector" and art.manifest["encoder"] == {"name": "trigram"}
    assert load_artifact(path, embed=trigram_embed, adapter="trigram").id == art.id
    with pytest.raises(ArtifactError, match="built with encoder 'trigram', not adapter 'v2'"):
        load_artifact(path, embed=trigram_embed, adapter="v2")


def test_recall_gating_replay(vector, artifact, world):
    from eval.recall_gating import replay

    p = Pipeline(artifact.table, artifact.sources + (vector,), artifact.id)
    report = replay(p, world, sessions=60, seed=2, typo_rate=0.1, progress=False)
    assert report["keystrokes"] > 100
    assert 0.0 < report["vector_asked_share"] < 1.0      # a fallback: asked on some keystrokes only
    assert 0.0 <= report["cache_hit_rate"] <= 1.0 and 0.0 < report["shown_from_vector_share"] < 1.0
