"""Embedding recall with the real base encoder (slow: loads all-MiniLM-L6-v2 from its package, offline)."""

import pytest
from litestar.testing import TestClient

from suggest.app import create_app
from suggest.artifact import build_artifact, load_artifact
from suggest.pipeline import Pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(world, tmp_path_factory):
    from adapters.encoder import Encoder

    encoder = Encoder.base()
    path = build_artifact(world, tmp_path_factory.mktemp("vec") / "demo-vec", progress=False, embed=encoder.encode,
                          encoder={"name": "base", "path": None})
    artifact = load_artifact(path)  # the manifest names the base encoder: it is loaded again from there
    with TestClient(create_app(pipeline=Pipeline.from_artifact(artifact))) as c:
        yield c


def test_unseen_wording_gets_semantic_completions_marked_vector(client):
    # No phrase starts with "fizzy", and no word of one does: only embedding recall can answer.
    body = client.get("/v1/suggest", params={"q": "fizzy water", "k": 10}).json()
    vector = [s["text"] for s in body["suggestions"] if s["sources"] == ["vector"]]
    assert vector, body
    assert any(w in " ".join(vector[:5]) for w in ("sparkling", "seltzer", "water")), vector


def test_exact_matches_still_come_first(client):
    body = client.get("/v1/suggest", params={"q": "oat milk", "k": 10}).json()
    assert body["suggestions"][0]["text"].startswith("oat milk") and "vector" not in body["suggestions"][0]["sources"]
