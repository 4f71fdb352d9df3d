"""POST /v1/events: validation, durability (the EventLog, and a real server killed mid-stream), and
personalisation that follows a purchase without a rebuild."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from litestar.testing import TestClient

from indexes.zero import KEEP, ZeroPrefixSource
from suggest.app import create_app
from suggest.artifact import load_artifact
from suggest.errors import InvalidQuery
from suggest.event_log import EventLog
from suggest.events import (AddToCart, Click, Impression, Purchase, ShownItem, Visit, encode, parse_events,
                            read_events)
from suggest.pipeline import Pipeline, prior_scorer
from suggest.types import Order

ROOT = Path(__file__).resolve().parents[1]

CLICK = {"type": "click", "request_id": "r1", "position": 0}
PURCHASE = {"type": "purchase", "user_id": 7, "product_ids": [1, 2]}
ITEM = {"position": 0, "item": "banana", "product_ids": [1], "propensity": 0.5}
IMPRESSION = {"type": "impression", "request_id": "r1", "session_id": "s1", "user_id": 7, "surface": "suggest",
              "query": "ban", "step": 3, "policy": "plackett-luce", "list_propensity": 0.25, "items": [ITEM]}
VISIT = {"type": "visit", "user_id": 7, "visit_id": "v1", "sessions": 2, "purchases": 1, "revenue": 12.5,
         "returned": True}

# (request body, the field the error must name ("" = the body as a whole), message regex)
BAD_EVENTS = [
    ([], "", "non-empty list"),
    ("click", "", "event object"),
    (7, "", "event object"),
    (None, "", "event object"),
    ([CLICK] * 1001, "", "at most 1000 events"),
    ({"request_id": "r1", "position": 0}, "type", "one of impression, visit, click"),
    ({**CLICK, "type": "refund"}, "type", "one of"),
    ([CLICK, 5], "[1]", "event object"),
    ({**CLICK, "schema_version": 2}, "schema_version", "must be 1"),
    ({"type": "click", "position": 0}, "request_id", "required"),
    ({**CLICK, "position": -1}, "position", "non-negative"),
    ({**CLICK, "position": "3"}, "position", "integer"),
    ({**CLICK, "position": True}, "position", "integer"),          # a bool is not a count
    ({**CLICK, "position": 2 ** 64}, "position", "64-bit"),
    ({**CLICK, "colour": "red"}, "colour", "unknown field"),
    ({**PURCHASE, "product_ids": []}, "product_ids", "at least one"),
    ({**PURCHASE, "product_ids": 5}, "product_ids", "must be a list"),
    ({**PURCHASE, "product_ids": [1, "x"]}, "product_ids[1]", "integer"),
    ({**PURCHASE, "user_id": None}, "user_id", "integer"),         # a purchase needs a shopper
    ({**PURCHASE, "user_id": -3}, "user_id", "non-negative"),
    ({"type": "add_to_cart", "user_id": 1}, "product_ids", "required"),
    ({**IMPRESSION, "surface": "email"}, "surface", "one of suggest, search"),
    ({**IMPRESSION, "list_propensity": 1.5}, "list_propensity", "probability"),
    ({**IMPRESSION, "revenue": "12"}, "revenue", "finite number"),
    ({**IMPRESSION, "query": "x" * 1001}, "query", "at most 1000 characters"),
    ({**IMPRESSION, "items": "banana"}, "items", "must be a list"),
    ({**IMPRESSION, "items": ["banana"]}, "items[0]", "must be an object"),
    ({**IMPRESSION, "items": [{**ITEM, "sponsored": "yes"}]}, "items[0].sponsored", "true or false"),
    ({**IMPRESSION, "items": [{**ITEM, "propensity": -0.1}]}, "items[0].propensity", "probability"),
    ({**IMPRESSION, "items": [{**ITEM, "shelf": 2}]}, "items[0].shelf", "unknown field"),
    ([CLICK, CLICK, {**IMPRESSION, "items": [ITEM, {**ITEM, "position": "x"}]}], "[2].items[1].position", "integer"),
    ({**VISIT, "returned": 1}, "returned", "true or false"),
]

# Bodies that are wrong before they are events: (content, content type, status)
BAD_WIRE = [
    (b'{"type": "click"', "application/json", 400),       # not JSON
    (b"NaN", "application/json", 400),
    (json.dumps(CLICK).encode(), "text/plain", 415),
    (json.dumps(CLICK).encode(), None, 415),
    (b"[" + b"1," * (3 << 20) + b"1]", "application/json", 413),  # over MAX_EVENTS_BODY
]


def _records() -> list:
    """One record of every kind, as the simulator and a front end would send them."""
    item = ShownItem(0, "banana", (24852, 13176), 0.5, sponsored=True, score=0.25, sources=("prefix",))
    return [Impression("r1", "s1", 7, "suggest", "ban", 3, "plackett-luce", 0.25, (item,), clicks=(0,),
                       add_to_carts=(24852,), revenue=1.5, margin=0.3),
            Visit(7, "v1", 2, 1, 12.5, True), Click("r1", 0, 7), Click("r2", 4),
            AddToCart(7, (24852,), "r1"), Purchase(7, (24852, 13176))]


def _wire(record) -> dict:
    """The simulator's line for a record; front-end kinds without schema_version, as a browser sends them."""
    obj = json.loads(encode(record))
    if isinstance(record, (Click, AddToCart, Purchase)):
        del obj["schema_version"]
    return obj


@pytest.fixture
def fresh_pipeline(artifact_path):
    """A pipeline of its own: observed purchases must not leak into the session's shared one."""
    return Pipeline.from_artifact(load_artifact(artifact_path), cache_size=100)


@pytest.fixture
def client(fresh_pipeline, tmp_path):
    with TestClient(create_app(pipeline=fresh_pipeline, events_dir=tmp_path / "events")) as c:
        yield c


# --- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field, message", BAD_EVENTS)
def test_bad_events_are_refused_naming_the_json_path(body, field, message):
    with pytest.raises(InvalidQuery, match=message) as e:
        parse_events(body)
    assert e.value.field == field


@pytest.mark.parametrize("body, field, message", BAD_EVENTS)
def test_bad_events_are_400_json_naming_the_json_path(client, tmp_path, body, field, message):
    r = client.post("/v1/events", content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 400 and re.search(message, r.json()["error"])
    assert r.json()["field"] == (field or None)
    assert not (tmp_path / "events" / "events-000001.jsonl").read_bytes()  # nothing of a refused batch is kept


@pytest.mark.parametrize("content, content_type, status", BAD_WIRE)
def test_malformed_bodies_are_4xx_json(client, content, content_type, status):
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/events", content=content, headers=headers)
    assert r.status_code == status and r.json()["error"] and r.json()["field"] is None


def test_a_good_batch_is_acknowledged_and_reads_back_equal(client, tmp_path):
    records = _records()
    r = client.post("/v1/events", json=[_wire(x) for x in records])
    assert r.status_code == 200 and r.json() == {"accepted": len(records)}
    assert client.post("/v1/events", json=_wire(records[2])).json() == {"accepted": 1}  # a single object
    assert list(read_events(tmp_path / "events" / "events-000001.jsonl")) == records + [records[2]]


def test_events_off_is_503_json(fresh_pipeline):
    with TestClient(create_app(pipeline=fresh_pipeline)) as c:
        r = c.post("/v1/events", json=CLICK)
        assert r.status_code == 503 and "not enabled" in r.json()["error"]


def test_a_disk_that_fails_is_503_not_500(client, monkeypatch):
    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("suggest.event_log.os.fsync", broken)
    r = client.post("/v1/events", json=CLICK)
    assert r.status_code == 503 and "could not be stored" in r.json()["error"]
    monkeypatch.undo()  # the log refuses from now on: after a failed fsync the page cache cannot be trusted
    assert client.post("/v1/events", json=CLICK).status_code == 503


def test_events_are_documented_in_the_schema(client):
    post = client.get("/schema/openapi.json").json()["paths"]["/v1/events"]["post"]
    assert {"200", "400", "503"} <= set(post["responses"])


# --- personalisation ----------------------------------------------------------------------------

def _zero(pipeline: Pipeline) -> ZeroPrefixSource:
    return next(s for s in pipeline.sources if s.name == "zero")


def _new_product_for(zero: ZeroPrefixSource, table) -> tuple[int, int, str]:
    """(user, product, its name phrase): a user with room in their history, and a product that none of
    their phrases leads to (so no suggestion of theirs shows it already)."""
    name_phrase = {int(table.links(ph)[0]): ph for ph in range(len(table))
                   if table.kinds[ph] == 0 and len(table.links(ph)) == 1}  # kind 0: a product's own name
    for user in zero.users.tolist():
        mine = zero.history(user)[0].tolist()
        if len(mine) < KEEP - 10:
            reached = {int(r) for ph in mine for r in table.links(ph)}
            for row, ph in sorted(name_phrase.items()):
                if row not in reached:
                    return user, int(table.product_ids[row]), table.texts[ph]
    raise AssertionError("no user with room in their history")


def _as_history(suggestions: list[dict], text: str) -> bool:
    return any(s["text"] == text and "history" in s["sources"] for s in suggestions)


def test_a_purchase_changes_that_users_suggestions_at_once(client, fresh_pipeline):
    user, pid, text = _new_product_for(_zero(fresh_pipeline), fresh_pipeline.table)
    box, typed = {"user_id": user, "k": 50, "hour": 9}, {"user_id": user, "k": 50, "q": text[:5]}
    anonymous = client.get("/v1/suggest", params={"k": 50, "hour": 9}).json()["suggestions"]  # now in the LRU
    assert not _as_history(client.get("/v1/suggest", params=box).json()["suggestions"], text)
    assert not _as_history(client.get("/v1/suggest", params=typed).json()["suggestions"], text)

    assert client.post("/v1/events", json={"type": "purchase", "user_id": user, "product_ids": [pid]}).status_code == 200

    assert _as_history(client.get("/v1/suggest", params=box).json()["suggestions"], text)     # the empty box
    assert _as_history(client.get("/v1/suggest", params=typed).json()["suggestions"], text)   # and as they type
    assert client.get("/v1/suggest", params={"k": 50, "hour": 9}).json()["suggestions"] == anonymous  # others: no change


def test_observing_a_purchase_equals_rebuilding_with_it(artifact, world):
    """The oracle: a purchase observed live gives the history a rebuild with that order would give."""
    rng = np.random.default_rng(0)
    table, pids = artifact.table, [p.product_id for p in world.catalog.products]
    built = next(s for s in artifact.sources if s.name == "zero")
    last = {}
    for o in world.orders:
        last[o.user_id] = max(last.get(o.user_id, 0), o.order_number)
    users = [u for u in sorted(last) if len(built.history(u)[0]) < KEEP - 10][:6] + [max(last) + 1]  # + a new user
    for user in users:
        bought = tuple(int(p) for p in rng.choice(pids, size=4, replace=False))
        live = ZeroPrefixSource.build(table, world)
        live.observe(Purchase(user, bought))
        order = Order(10 ** 9 + user, user, last.get(user, 0) + 1, bought)
        rebuilt = ZeroPrefixSource.build(table, replace(world, orders=world.orders + (order,)))
        got, want = (dict(zip(*(a.tolist() for a in z.history(user)))) for z in (live, rebuilt))
        assert set(got) == set(want), user
        assert np.allclose([got[p] for p in want], list(want.values()), rtol=1e-5), user


def test_observed_purchases_survive_a_restart(artifact_path, tmp_path):
    pipelines = [Pipeline.from_artifact(load_artifact(artifact_path)) for _ in range(2)]
    zeros = [_zero(p) for p in pipelines]
    user, pid, _ = _new_product_for(zeros[0], pipelines[0].table)
    before = zeros[0].history(user)[0].tolist()
    with TestClient(create_app(pipeline=pipelines[0], events_dir=tmp_path)) as c:
        c.post("/v1/events", json=[{"type": "purchase", "user_id": user, "product_ids": [pid]}, CLICK])
    with TestClient(create_app(pipeline=pipelines[1], events_dir=tmp_path)):
        pass  # replayed at start-up
    assert zeros[1].history(user)[0].tolist() == zeros[0].history(user)[0].tolist() != before


def test_a_saved_source_keeps_what_it_observed(artifact, world, tmp_path):
    zero = ZeroPrefixSource.build(artifact.table, world)
    user = world.orders[0].user_id
    zero.observe(Purchase(user, (world.catalog.products[0].product_id,)))
    zero.observe(Purchase(10 ** 6, (world.catalog.products[1].product_id,)))  # a shopper the build never saw
    zero.save(tmp_path)
    loaded = ZeroPrefixSource.load(tmp_path, artifact.table)
    assert len(loaded) == len(zero)
    for u in (user, 10 ** 6, world.orders[-1].user_id):
        assert loaded.history(u)[0].tolist() == zero.history(u)[0].tolist()
        assert np.allclose(loaded.history(u)[1], zero.history(u)[1], rtol=1e-5)


def test_the_pipeline_forwards_events_and_forgets_answers_a_learning_scorer_gave(artifact):
    class LearningScorer:
        def __init__(self):
            self.seen = []

        def __call__(self, query, table, merged):
            return prior_scorer(query, table, merged)

        def observe(self, record):
            self.seen.append(record)

    scorer = LearningScorer()
    pipeline = Pipeline.from_artifact(artifact, scorer=scorer, cache_size=10)
    pipeline.suggest(pipeline.make_query("ban"))
    assert pipeline.cache_info().currsize == 1
    pipeline.observe(Click("r1", 0))  # no source learns from a click, so the shared artifact is untouched
    assert scorer.seen == [Click("r1", 0)] and pipeline.cache_info().currsize == 0
    pipeline.suggest(pipeline.make_query("ban"))
    pipeline.observe(Click("r2", 1))  # within the refresh interval: the cache is kept, not emptied per event
    assert len(scorer.seen) == 2 and pipeline.cache_info().currsize == 1


# --- the log ------------------------------------------------------------------------------------

def _clicks(n: int, tag: str = "c") -> list[Click]:
    return [Click(f"{tag}{i}", i % 10) for i in range(n)]


def test_append_returns_once_written_and_reads_back(tmp_path):
    with EventLog(tmp_path) as log:
        assert log.append(_clicks(3)) == 3 and log.append([]) == 0
        assert list(log.records()) == _clicks(3)


def test_a_torn_last_line_is_cut_on_reopen_and_complete_lines_kept(tmp_path):
    with EventLog(tmp_path) as log:
        log.append(_clicks(3))
    path = tmp_path / "events-000001.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + encode(Click("torn", 1)).encode()[:17])  # a crash mid-write: no newline
    with EventLog(tmp_path) as log:
        assert path.read_bytes() == whole
        log.append(_clicks(1, "after"))
        assert list(log.records()) == _clicks(3) + _clicks(1, "after")
    with EventLog(tmp_path):  # a file that ends in a newline loses nothing
        assert list(read_events(path)) == _clicks(3) + _clicks(1, "after")


def test_a_torn_line_longer_than_the_scan_window_and_a_file_of_only_a_torn_line(tmp_path):
    with EventLog(tmp_path / "a") as log:
        log.append(_clicks(2))
    path = tmp_path / "a" / "events-000001.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"schema_version":1,"type":"click","request_id":"' + b"x" * 200_000)
    EventLog(tmp_path / "a").close()
    assert path.read_bytes() == whole
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "events-000001.jsonl").write_bytes(b'{"schema_ver')
    EventLog(tmp_path / "b").close()
    assert (tmp_path / "b" / "events-000001.jsonl").read_bytes() == b""


@pytest.mark.parametrize("group_commit", [True, False])
def test_concurrent_appends_are_each_on_disk_once(tmp_path, group_commit):
    log = EventLog(tmp_path, max_bytes=20_000, group_commit=group_commit)  # small files: rotation races too

    def worker(t: int) -> None:
        for i in range(40):
            log.append(_clicks(3, f"t{t}-{i}-"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    with EventLog(tmp_path) as reopened:
        ids = Counter(r.request_id for r in reopened.records())
    assert set(ids) == {f"t{t}-{i}-{j}" for t in range(8) for i in range(40) for j in range(3)}
    assert set(ids.values()) == {1}
    assert len(log.files()) > 1


def test_rotation_never_splits_a_batch(tmp_path):
    with EventLog(tmp_path, max_bytes=300) as log:
        for b in range(10):
            log.append(_clicks(4, f"b{b}-"))
        files = log.files()
    assert [p.name for p in files[:2]] == ["events-000001.jsonl", "events-000002.jsonl"]
    for path in files:
        tags = {r.request_id.split("-")[0] for r in read_events(path)}
        assert all(sum(r.request_id.startswith(t + "-") for r in read_events(path)) == 4 for t in tags)


def test_one_writer_per_directory(tmp_path):
    log = EventLog(tmp_path)
    with pytest.raises(ValueError, match="in use by another writer"):
        EventLog(tmp_path)
    log.close()
    EventLog(tmp_path).close()


# --- kill -9 ------------------------------------------------------------------------------------

KILL_AFTER = 60   # acknowledged requests before the server is killed
CLIENTS = 4       # concurrent streams, so that requests are in flight when it dies


def test_no_acknowledged_event_is_lost_when_the_server_is_killed(artifact_path, world, tmp_path):
    events_dir = tmp_path / "events"
    server = subprocess.Popen([sys.executable, "-m", "suggest.cli", "serve", "--artifact", str(artifact_path),
                               "--port", "0", "--events-dir", str(events_dir), "--log-level", "info"],
                              cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stderr] + [lines.put(None)], daemon=True).start()
    try:
        url, seen = None, []
        while url is None:  # start-up: wait for uvicorn to say where it listens (or die)
            line = lines.get(timeout=120)
            assert line is not None, f"the server exited: {''.join(seen)}"
            seen.append(line)
            if m := re.search(r"running on (http://\S+)", line):
                url = m.group(1)

        acked: list[str] = []
        lock, enough = threading.Lock(), threading.Event()
        user = world.orders[0].user_id

        def stream(c: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                for i in range(100_000):
                    batch = [{"type": "click", "request_id": f"{c}-{i}-{j}", "position": j} for j in range(4)]
                    batch.append({"type": "purchase", "user_id": user, "product_ids": [1], "request_id": f"{c}-{i}-p"})
                    try:
                        r = http.post("/v1/events", json=batch)
                    except httpx.HTTPError:
                        return  # the server is gone: this batch was never acknowledged
                    assert r.status_code == 200, r.text
                    with lock:
                        acked.extend(e["request_id"] for e in batch)
                        if len(acked) >= KILL_AFTER * len(batch):
                            enough.set()

        clients = [threading.Thread(target=stream, args=(c,), daemon=True) for c in range(CLIENTS)]
        for t in clients:
            t.start()
        assert enough.wait(timeout=300), "the server stopped acknowledging before the kill"
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=60)
        for t in clients:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in clients)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    with lock:
        acknowledged = set(acked)
    with EventLog(events_dir) as log:  # reopening cuts a torn tail; reading would raise on a bad line
        on_disk = Counter(r.request_id for r in log.records())
        files = log.files()
    assert acknowledged <= set(on_disk), f"lost {len(acknowledged - set(on_disk))} acknowledged events"
    assert set(on_disk.values()) == {1}  # each sent once, so on disk at most once
    assert all(path.read_bytes().endswith(b"\n") for path in files)

