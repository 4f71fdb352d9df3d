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
