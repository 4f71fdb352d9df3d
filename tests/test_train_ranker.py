"""The ranker training script end to end on small simulated logs (mechanics, calibration, files)."""

import json

import pytest

from eval.train_ranker import auc, list_mrr, summary_table, train_ranker, versus_table
from eval.world.simulate import build_world, simulate
from suggest.demo import make_demo_world


def test_auc_and_list_mrr_hand_cases():
    import numpy as np
    assert auc(np.array([0.9, 0.1, 0.8, 0.3]), np.array([1, 0, 1, 0])) == 1.0     # perfectly separated
    assert auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5                      # a tie counts half
    group, rel = np.array([0, 0, 0, 1, 1]), np.array([0, 1, 0, 0, 1], bool)
    scores = np.array([0.3, 0.2, 0.1, 0.9, 0.8])
    # list 0: the relevant row ranks 2nd; list 1: 2nd -> MRR 0.5
    assert list_mrr(scores, rel, group, np.arange(5)) == pytest.approx(0.5)


def test_churn_is_observed_once_per_visit_however_many_rows_it_showed():
    import numpy as np

    from eval.train_ranker import _observations
    from ranking.training_data import TrainingSet
    # visit 0 churned and showed 1,000 rows; visits 1 and 2 returned and showed 2 rows each
    visit = np.r_[np.zeros(1000), [1, 1, 2, 2]].astype(np.int64)
    n = len(visit)
    churn = (visit == 0).astype(np.float32)
    ts = TrainingSet(np.zeros((n, 1), np.float32), {"churn": churn, "relevance": churn}, {"churn": np.ones(n, bool),
                     "relevance": np.ones(n, bool)}, np.arange(n), np.zeros(n, np.int8), np.zeros(n, np.int16),
                     np.zeros(n, np.float32), np.zeros(n, np.int64), visit)
    probs = np.r_[np.full(1000, 0.5), [0.1, 0.3, 0.2, 0.2]]
    p, y = _observations("churn", probs, ts, np.arange(n))
    assert p.tolist() == pytest.approx([0.5, 0.2, 0.2]) and y.tolist() == [1, 0, 0]   # one churn rate of 1/3, not 0.996
    p, y = _observations("churn", probs[2:], ts, np.arange(2, n))                        # a slice of the rows
    assert len(p) == 3 and y.tolist() == [1, 0, 0]
    assert len(_observations("relevance", probs, ts, np.arange(n))[0]) == n            # row-level tasks stay per row


def test_training_writes_a_calibrated_model(tmp_path):
    data = make_demo_world(seed=6, n_users=80, variants=5)
    world = build_world(data, progress=False)
    simulate(world, "plackett-luce", 600, seed=0, out=tmp_path / "train", progress=False)
    simulate(world, "plackett-luce", 200, seed=1, split="test", out=tmp_path / "test", progress=False)
    simulate(world, "uniform", 200, seed=2, split="test", out=tmp_path / "uniform", progress=False)
    report = train_ranker(data, tmp_path / "train", tmp_path / "ranker", tmp_path / "test", epochs=3, progress=False,
                          baselines=True, ranking_logs=tmp_path / "uniform")
    out = tmp_path / "ranker"
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert (out / "calibration-relevance.json").is_file() and (out / "reliability.png").is_file()
    assert json.loads((out / "report.json").read_text())["train_rows"] == report["train_rows"] > 0
    summary = report["test"]["summary"]
    assert set(summary) == {"shared_bottom", "single_task/relevance", "single_task/purchase", "single_task/churn",
                            "lightgbm", "popularity", "as_logged"}
    mean, _, n = summary["shared_bottom"]["auc/relevance"]
    assert 0.5 < mean <= 1.0 and n == 1 and summary["shared_bottom"]["ece/relevance"][0] < 0.05
    assert summary["lightgbm"]["auc/purchase"][0] > 0.5        # the boosted baseline learnt something
    for surface in ("suggest", "search"):
        assert report["test"]["lists"][surface] > 0 and 0 < summary["popularity"][f"mrr/{surface}"][0] <= 1
    assert "| shared_bottom |" in summary_table(report)
    assert report["test"]["ranking_logs"] == str(tmp_path / "uniform")  # ranked lists: the random-order logs
    # seed-paired differences: multi-task minus each baseline, per surface and task
    versus = report["test"]["versus"]
    mrr = summary["shared_bottom"]["mrr/search"][0] - summary["single_task/purchase"]["mrr/search"][0]
    assert versus["mrr/search"]["single_task/purchase"][0] == pytest.approx(mrr, abs=1e-4)
    assert "single_task/relevance" not in versus["mrr/search"] and "mrr/suggest" in versus_table(report)


def test_the_saved_ranker_serves_what_training_evaluated(tmp_path):
    import numpy as np

    from ranking.ranker import Ranker
    data = make_demo_world(seed=6, n_users=80, variants=5)
    world = build_world(data, progress=False)
    simulate(world, "plackett-luce", 300, seed=0, out=tmp_path / "train", progress=False)
    train_ranker(data, tmp_path / "train", tmp_path / "ranker", epochs=2, progress=False)
    ranker = Ranker.load(tmp_path / "ranker")
    X = np.random.default_rng(0).normal(size=(7, len(ranker.names) // 2)).astype(np.float32)
    scores = ranker.scores(ranker.standardised(X))
    assert set(scores) == {"relevance", "purchase", "margin", "churn"}
    assert all(((0 <= scores[t]) & (scores[t] <= 1)).all() for t in ("relevance", "purchase", "churn"))
    top = ranker.attributions(ranker.standardised(X), "relevance", top=3)
    assert len(top) == 7 and all(len(row) == 3 for row in top)


def test_calibrators_can_be_fitted_on_logs_of_the_served_population(tmp_path):
    data = make_demo_world(seed=6, n_users=80, variants=5)
    world = build_world(data, progress=False)
    simulate(world, "plackett-luce", 300, seed=0, out=tmp_path / "train", progress=False)
    simulate(world, "plackett-luce", 150, seed=2, split="test", out=tmp_path / "cal", progress=False)
    own = train_ranker(data, tmp_path / "train", tmp_path / "a", epochs=2, progress=False)
    held = train_ranker(data, tmp_path / "train", tmp_path / "b", epochs=2, progress=False,
                        calibration_logs=tmp_path / "cal")
    # same network (same seed and rows), calibrated on other data: other calibrators
    assert own["calibration"]["relevance"] != held["calibration"]["relevance"]
    assert (tmp_path / "b" / "calibration-relevance.json").read_text() != \
        (tmp_path / "a" / "calibration-relevance.json").read_text()
