"""Train the shared multi-task ranker on logged sessions and compare it with the popularity order.

    python -m eval.train_ranker --data ../shared/data/instacart --logs logs/pl-train --test-logs logs/pl-test --out artifacts/ranker

The first 30% of the training logs' impressions only feed the feature store (click-through and
add-to-cart priors), so that no row's features count its own label; the rest are training rows, of
which the last 15% of lists fit the per-task calibration. The test logs (held-out users, eval.split)
are featurised with the training store. Reported per surface: MRR of the clicked item (suggest) and
of the carted item (search) when each logged list is re-ordered by the model, by the logged prior
(popularity) and as it was shown; per task: AUC, log loss and ECE after calibration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval._data import add_train_ranker_arguments as add_arguments, dataset_from_args
from eval.world.business import with_business
from ranking.calibration import calibration_report, choose_calibrator, expected_calibration_error, log_loss, \
    reliability_diagram
from ranking.features import FEATURES, InMemoryFeatureStore
from ranking.model import DEFAULT_TASKS, MultiTaskRanker, RankerConfig, fit, predict
from ranking.training_data import TrainingSet, training_set
from suggest.events import Impression, read_events

__all__ = ["train_ranker", "list_mrr", "auc", "add_arguments", "run", "main"]

BINARY = ("relevance", "purchase", "churn")


def _events(folder: Path) -> list:
    files = sorted(folder.glob("events-*.jsonl*"))
    if not files:
        raise ValueError(f"no events-*.jsonl[.gz] in {folder}; run `keystroke simulate` first")
    return [e for f in files for e in read_events(f)]


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney), ties counted half."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Average rank of each distinct value: one sort, no pass per tie group.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0
    return float((mean_rank[inverse][pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def list_mrr(scores: np.ndarray, relevant: np.ndarray, group: np.ndarray, rows: np.ndarray) -> float:
    """Mean over lists (with a relevant row) of 1 / rank of their first relevant row when sorted by score."""
    rr = []
    for g in np.unique(group[rows]):
        idx = rows[group[rows] == g]
        if relevant[idx].any():
            order = idx[np.argsort(-scores[idx], kind="stable")]
            rr.append(1.0 / (1 + int(np.flatnonzero(relevant[order])[0])))
    return float(np.mean(rr)) if rr else float("nan")


def _inputs(X: np.ndarray, group: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Features, the same features relative to their list's mean, and the log position.

    A click is a choice within one list: how an item compares with its neighbours matters more
    than its absolute values, which mostly say how likely the list as a whole is to be clicked.
    """
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), X.shape[1]))
    np.add.at(sums, inverse, X)
    relative = X - (sums / counts[:, None])[inverse]
    pos = np.log1p(position.astype(np.float32))[:, None]
    return np.concatenate([X, relative, pos], axis=1).astype(np.float32)  # (n, 2 * n_features + 1)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _ranking_report(ts: TrainingSet, probs: dict[str, np.ndarray]) -> dict:
    out = {}
    for surface, task, code in (("suggest", "relevance", 0), ("search", "purchase", 1)):
        rows = np.flatnonzero(ts.surface == code)
        relevant = ts.labels[task] > 0.5
        out[surface] = {f"mrr_{task}/model": list_mrr(probs[task], relevant, ts.group, rows),
                        f"mrr_{task}/popularity": list_mrr(ts.prior, relevant, ts.group, rows),
                        f"mrr_{task}/as_logged": list_mrr(-ts.position.astype(np.float64), relevant, ts.group, rows),
                        "lists": int(len(np.unique(ts.group[rows])))}
    return out


def _single_task_baselines(X, ts, train_rows, test_X, test, epochs, seed) -> dict:
    """One shared-bottom model per binary task, same inputs: what multi-task learning buys."""
    out = {}
    for spec in DEFAULT_TASKS:
        if spec.kind != "binary":
            continue
        model = MultiTaskRanker(RankerConfig(n_features=X.shape[1], architecture="shared_bottom", tasks=(spec,),
                                             seed=seed))
        fit(model, X[train_rows], {spec.name: ts.labels[spec.name][train_rows]},
            {spec.name: ts.masks[spec.name][train_rows]}, epochs=epochs, batch_size=1024, seed=seed)
        top, raw = (predict(model, x)[spec.name] for x in test_X)
        m = test.masks[spec.name]
        out[spec.name] = {"auc": round(auc(raw[m], test.labels[spec.name][m]), 4),
                          "log_loss": round(log_loss(raw[m], test.labels[spec.name][m]), 5)}
        surface = {"relevance": 0, "purchase": 1}.get(spec.name)
        if surface is not None:
            rows = np.flatnonzero(test.surface == surface)
            out[spec.name]["mrr"] = list_mrr(top, test.labels[spec.name] > 0.5, test.group, rows)
    return out


def train_ranker(data, train_logs: Path, out: Path, test_logs: Path | None = None, architecture: str = "mmoe",
                 epochs: int = 30, seed: int = 0, progress: bool = True, baselines: bool = False) -> dict:
    manifest = json.loads((train_logs / "manifest.json").read_text())
    events = _events(train_logs)
    impressions = [e for e in events if isinstance(e, Impression)]
    visits = [e for e in events if not isinstance(e, Impression)]
    cut = int(0.3 * len(impressions))
    store = InMemoryFeatureStore(with_business(data, seed=manifest["seed"]), impressions[:cut])
    ts = training_set(impressions[cut:] + visits, store)
    # Clicks depend on where an item was shown; the position is a training-only input, set to the
    # top at inference, so the towers learn relevance rather than position (Guo et al., PAL 2019).
    raw_X = _inputs(ts.X, ts.group, ts.position)
    mean, std = raw_X.mean(axis=0), raw_X.std(axis=0) + 1e-6   # standardise: log priors and flags differ in scale
    X = (raw_X - mean) / std
    calib_from = np.quantile(ts.group, 0.85)
    train_rows, calib_rows = np.flatnonzero(ts.group < calib_from), np.flatnonzero(ts.group >= calib_from)
    model = MultiTaskRanker(RankerConfig(n_features=X.shape[1], architecture=architecture, seed=seed))
    history = fit(model, X[train_rows], {t: v[train_rows] for t, v in ts.labels.items()},
                  {t: m[train_rows] for t, m in ts.masks.items()}, epochs=epochs, batch_size=1024, seed=seed,
                  progress=progress)
    raw = predict(model, X[calib_rows])
    calibrators, calibration = {}, {}
    for task in BINARY:
        m = ts.masks[task][calib_rows]
        if m.sum() >= 50 and 0 < ts.labels[task][calib_rows][m].mean() < 1:
            c = choose_calibrator(_logit(raw[task][m]), ts.labels[task][calib_rows][m])
            calibrators[task] = c
            calibration[task] = calibration_report(_logit(raw[task][m]), ts.labels[task][calib_rows][m], c)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model")
    names = FEATURES + tuple(f"{f}-list_mean" for f in FEATURES) + ("position",)
    (out / "scaler.json").write_text(json.dumps({"features": names, "mean": mean.tolist(), "std": std.tolist()}))
    for task, c in calibrators.items():
        c.save(out / f"calibration-{task}.json")
    report = {"architecture": architecture, "train_rows": int(len(train_rows)), "calibration_rows": int(len(calib_rows)),
              "store_impressions": cut, "best_epoch": history.get("best_epoch"), "calibration": calibration,
              "logs": str(train_logs)}
    if test_logs is not None:
        test = training_set(_events(test_logs), store)
        # Ranking: every item as if shown at the top. Calibration: at the position it really had.
        top = predict(model, (_inputs(test.X, test.group, np.zeros(len(test), np.int16)) - mean) / std)
        raw = predict(model, (_inputs(test.X, test.group, test.position) - mean) / std)
        probs = {t: (calibrators[t].predict(_logit(raw[t])) if t in calibrators else raw[t]) for t in raw}
        report["test"] = {"rows": int(len(test)), "ranking": _ranking_report(test, top), "tasks": {}}
        curves = {}
        for task in BINARY:
            m = test.masks[task]
            if m.any():
                y = test.labels[task][m]
                report["test"]["tasks"][task] = {
                    "auc": round(auc(probs[task][m], y), 4), "log_loss": round(log_loss(probs[task][m], y), 5),
                    "ece": round(expected_calibration_error(probs[task][m], y), 5),
                    "ece_uncalibrated": round(expected_calibration_error(raw[task][m], y), 5), "n": int(m.sum())}
                curves[f"{task} before"] = (raw[task][m], y)
                curves[f"{task} after"] = (probs[task][m], y)
        if curves:
            reliability_diagram(curves, out / "reliability.png", title="held-out users, per task")
        if baselines:
            test_X = [(_inputs(test.X, test.group, np.zeros(len(test), np.int16)) - mean) / std,
                      (_inputs(test.X, test.group, test.position) - mean) / std]
            report["test"]["single_task"] = _single_task_baselines(X, ts, train_rows, test_X, test, epochs, seed)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def run(args: argparse.Namespace) -> int:
    report = train_ranker(dataset_from_args(args), args.logs, args.out, args.test_logs, args.architecture,
                          args.epochs, args.seed, baselines=args.baselines)
    print(json.dumps({k: v for k, v in report.items() if k != "calibration"}, indent=2, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.train_ranker", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
