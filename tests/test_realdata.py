"""The spine on the full real Instacart catalog (../shared/data/instacart)."""

import pytest
from litestar.testing import TestClient

from suggest.app import create_app
from suggest.artifact import build_artifact, load_artifact
from suggest.loaders import load_data
from suggest.pipeline import Pipeline

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def real(real_data_dir, tmp_path_factory):
    data = load_data(real_data_dir)
    art = load_artifact(build_artifact(data, tmp_path_factory.mktemp("real") / "instacart", progress=False))
    return data, art


@pytest.fixture(scope="module")
def client(real):
    with TestClient(create_app(pipeline=Pipeline.from_artifact(real[1]))) as c:
        yield c


def _get(client, **params):
    r = client.get("/v1/suggest", params=params)
    assert r.status_code == 200, r.text
    return r.json()["suggestions"]


def test_full_catalog_is_indexed(real):
    data, art = real
    assert len(data.catalog) == 49688
    assert art.manifest["counts"]["products"] == 49688
    assert set(art.manifest["data"]["checksums"]) >= {"products.csv", "orders.csv", "order_products.csv"}


def test_ban_gives_banana_phrases(client, real):
    got = _get(client, q="ban")
    assert got[0]["text"] == "banana"
    names = {p.product_id: p.name for p in real[0].catalog.products}
    assert "banana" in names[got[0]["product_ids"][0]].lower()


def test_yog_finds_yogurt_phrases_on_any_word(client):
    got = _get(client, q="yog", k=10)
    assert all("yog" in s["text"] for s in got)
    assert any(s["text"].endswith("greek yogurt") and "infix" in s["sources"] for s in got)


def test_bananna_is_corrected(client):
    got = _get(client, q="bananna")
    assert got[0]["text"] == "banana" and got[0]["sources"] == ["typo"]


def test_department_filter(client, real):
    data = real[0]
    frozen = next(k for k, v in data.catalog.departments.items() if v == "frozen")
    got = _get(client, q="ban", k=20, department="frozen")
    assert got
    assert all(data.catalog.get(p).department_id == frozen for s in got for p in s["product_ids"])
    assert got != _get(client, q="ban", k=20)
