import time

import pytest
from litestar.testing import TestClient

from suggest.app import create_app
from tests.bad_inputs import BAD_QUERIES, BAD_WIRE, HTTP_NAMES


@pytest.fixture(scope="module")
def client(pipeline):
    with TestClient(create_app(pipeline=pipeline)) as c:
        yield c


def test_suggest_response_shape(client, pipeline):
    r = client.get("/v1/suggest", params={"q": "Ban", "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "Ban" and body["artifact"] == pipeline.artifact_id
    assert 1 <= len(body["suggestions"]) <= 3
    for s in body["suggestions"]:
        assert set(s) == {"text", "score", "sources", "highlight", "product_ids", "propensity"}
        assert isinstance(s["score"], float) and s["sources"] and s["product_ids"]
        assert all(len(span) == 2 for span in s["highlight"])


def test_empty_query_gives_zero_prefix_suggestions(client, world):
    anyone = client.get("/v1/suggest", params={"q": "", "hour": 9}).json()["suggestions"]
    mine = client.get("/v1/suggest", params={"user_id": world.orders[0].user_id, "hour": 9}).json()["suggestions"]
    assert len(anyone) == 10 and anyone[0]["sources"] == ["popular"]
    assert mine[0]["sources"] == ["history"]


def test_unknown_parameters_are_ignored(client):
    a = client.get("/v1/suggest", params={"q": "milk", "utm_source": "x"})
    b = client.get("/v1/suggest", params={"q": "milk"}).json()
    assert a.status_code == 200 and a.json()["request_id"] != b.pop("request_id")   # one id per response
    assert {k: v for k, v in a.json().items() if k != "request_id"} == b


@pytest.mark.parametrize("kwargs, field, message", BAD_QUERIES)
def test_bad_queries_are_4xx_json_naming_the_field(client, kwargs, field, message):
    params = {HTTP_NAMES.get(k, k): str(v) for k, v in kwargs.items()}
    r = client.get("/v1/suggest", params=params)
    assert r.status_code == 400
    assert r.json()["field"] == field and r.json()["error"]


@pytest.mark.parametrize("query, field", BAD_WIRE)
def test_malformed_wire_values(client, query, field):
    r = client.get(f"/v1/suggest?{query}")
    assert r.status_code == 400 and r.json()["field"] == field


def test_health_openapi_and_demo_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    schema = client.get("/schema/openapi.json").json()
    params = {p["name"] for p in schema["paths"]["/v1/suggest"]["get"]["parameters"]}
    assert {"q", "k", "user_id", "department", "store"} <= params
    assert "/v1/suggest" in client.get("/").text
    assert client.get("/no/such/path").status_code == 404


def test_ready_only_once_the_artifact_is_loaded(artifact_path, tmp_path):
    with TestClient(create_app(artifact=tmp_path / "missing")) as c:
        for _ in range(100):
            body = c.get("/readyz").json()
            if body.get("error"):
                break
            time.sleep(0.01)
        assert c.get("/readyz").status_code == 503 and "not an artifact" in body["error"]
        r = c.get("/v1/suggest", params={"q": "a"})
        assert r.status_code == 503 and "not an artifact" in r.json()["error"]
    with TestClient(create_app(artifact=artifact_path)) as c:
        for _ in range(500):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        assert c.get("/readyz").json()["status"] == "ready"
        assert c.get("/v1/suggest", params={"q": "b"}).status_code == 200
