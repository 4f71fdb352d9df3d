"""Shared fixtures: a small seeded demo world and its artifact; the real data, when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suggest.artifact import build_artifact, load_artifact
from suggest.demo import make_demo_world
from suggest.pipeline import Pipeline

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "instacart"


@pytest.fixture(scope="session")
def world():
    return make_demo_world(seed=11, n_users=120, variants=8)


@pytest.fixture(scope="session")
def artifact_path(world, tmp_path_factory) -> Path:
    return build_artifact(world, tmp_path_factory.mktemp("art") / "demo", progress=False)


@pytest.fixture(scope="session")
def artifact(artifact_path):
    return load_artifact(artifact_path)


@pytest.fixture(scope="session")
def pipeline(artifact) -> Pipeline:
    return Pipeline.from_artifact(artifact)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Instacart data; under CI its absence is a failure, not a skip."""
    if not (REAL_DATA / "products.csv").exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real data missing at {REAL_DATA} (required under CI=true)")
        pytest.skip(f"real data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A real Redis: KEYSTROKE_REDIS_URL if set, else a private redis-server on a free port for the session."""
    import shutil
    import socket
    import subprocess
    import time

    import redis

    if os.environ.get("KEYSTROKE_REDIS_URL"):
        yield os.environ["KEYSTROKE_REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        message = ("redis-server not found on PATH and KEYSTROKE_REDIS_URL is unset: install it "
                   "(apt-get install redis-server, brew install redis) or point KEYSTROKE_REDIS_URL at one")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    log = open(workdir / "redis.log", "wb")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(300):   # readiness, not a timing assertion: up to ~15 s for the server to listen
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}: {(workdir / 'redis.log').read_text()}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail(f"redis-server on port {port} did not answer PING: {(workdir / 'redis.log').read_text()}")
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def redis_namespace(redis_url):
    """A namespace of this test's own; its keys (and only its keys) are deleted afterwards."""
    import uuid

    import redis

    namespace = f"test-{uuid.uuid4().hex[:12]}"
    yield namespace
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
