"""The search comparison on a seeded demo world, with a plain-function encoder (no model, no download)."""

import json

import pytest

from eval.search_eval import GROUPS, RETRIEVERS, _plot, compare_retrievers, search_queries, table
from eval.split import split_dataset
from suggest.artifact import build_artifact
from suggest.demo import make_demo_world
from suggest.errors import ArtifactError
from tests.test_vector import trigram_embed

TRIGRAM = {"name": "trigram"}


@pytest.fixture(scope="module")
def demo():
    return make_demo_world(seed=5, n_users=300, variants=12)


@pytest.fixture(scope="module")
def report(demo, tmp_path_factory):
    return compare_retrievers(demo, tmp_path_factory.mktemp("search"), trigram_embed, TRIGRAM, max_queries=2000)


def test_fusion_beats_each_retriever_alone(report):
    r = report["retrievers"]
    for metric in ("all/purchased/recall@10", "all/purchased/ndcg@10", "all/acceptable/recall@10"):
        # the world and its queries are seeded, so these numbers are fixed; the margins are 0.015 or more
        assert r["rrf"][metric] > max(r["bm25"][metric], r["vector"][metric]), metric
    assert r["bm25"]["all/purchased/recall@10"] > 0.5 and r["vector"]["all/purchased/recall@10"] > 0.5


def test_report_shape(report, tmp_path):
    r = report["retrievers"]
    assert set(r) == set(RETRIEVERS) and report["queries"] == r["bm25"]["all/n"] > 300
    assert r["bm25"]["typo/n"] + r["bm25"]["clean/n"] == report["queries"]
    assert sum(r["bm25"].get(f"{g}/n", 0) for g in GROUPS if g.startswith("level=")) == report["queries"]
    assert report["bm25_corrected"] > 0                        # typed typos reach the speller
    for name in RETRIEVERS:
        assert 0 <= r[name]["all/purchased/ndcg@10"] <= r[name]["all/purchased/recall@10"] <= 1
        assert r[name]["latency_ms"]["p50"] <= r[name]["latency_ms"]["p99"]
    json.dumps(report)
    _plot(report, tmp_path / "search.png")
    assert (tmp_path / "search.png").stat().st_size > 0
    assert "| rrf |" in table(report)


def test_queries_are_seeded_and_come_from_held_out_orders(demo):
    split = split_dataset(demo)
    a, b = search_queries(demo, split, 50, seed=1), search_queries(demo, split, 50, seed=1)
    assert a == b and len(a) == 50
    bought = {p for o in split.targets for p in o.product_ids}
    assert all(q.target in bought and q.target in q.acceptable for q in a)


def test_an_artifact_that_saw_the_held_out_orders_is_refused(demo, tmp_path):
    full = build_artifact(demo, tmp_path / "full", progress=False, embed=trigram_embed, encoder=TRIGRAM)
    with pytest.raises(ArtifactError, match="has seen held-out orders"):
        compare_retrievers(demo, tmp_path, trigram_embed, TRIGRAM, max_queries=10, artifact_dir=full)
