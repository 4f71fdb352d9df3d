"""Train the shared multi-task ranker on logged sessions and compare it with the popularity order.

    python -m eval.train_ranker --data ../shared/data/instacart --logs logs/pl-train --test-logs logs/pl-test \
        --ranking-logs logs/uni-test --calibration-logs logs/pl-cal --out artifacts/ranker

The first 30% of the training logs' impressions only feed the feature store (click-through and
add-to-cart priors), so that no row's features count its own label; the rest are training rows, of
which the last 15% of lists fit the per-task calibration. The test logs (held-out users, eval.split)
are featurised with the training store. Reported per surface: MRR of the clicked item (suggest) and
of the carted item (search) when each logged list is re-ordered by the model, by the logged prior
(popularity) and as it was shown; per task: AUC, log loss and ECE after calibration (churn once per visit). Test logs whose
lists were shown in random order (`keystroke simulate --policy uniform`) keep position bias out of the
ranking metrics (`ranking_logs`): on popularity-ordered lists "as shown" and popularity win by copying the
logged order. The per-task metrics stay on test logs of the serving policy: churn depends on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from eval._data import add_train_ranker_arguments as add_arguments, dataset_from_args, encoder_from_args
from eval.world.business import with_business
from ranking.calibration import calibration_report, choose_calibrator, expected_calibration_error, log_loss, \
    reliability_diagram
from ranking.feature_store import save_store
from ranking.features import InMemoryFeatureStore
from ranking.model import DEFAULT_ARCHITECTURE, DEFAULT_TASKS, MultiTaskRanker, RankerConfig, fit, predict
from ranking.ranker import Ranker, input_names, logit, model_inputs
from ranking.training_data import TrainingSet, training_set
from suggest.events import Impression, Visit, read_events
from suggest.semantic import Similarity, product_texts

__all__ = ["train_ranker", "list_mrr", "auc", "summary_table", "versus_table", "add_arguments", "run", "main"]

BINARY = ("relevance", "purchase", "churn")
PER_VISIT = ("churn",)  # user-level labels: one observation per visit, not per row shown
SURFACES = (("suggest", "relevance", 0), ("search", "purchase", 1))  # surface, its ranking label, code


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
    """Mean over lists (with a relevant row) of 1 / rank of their first relevant row when sorted by score.

    Ties keep the rows' order. One sort over all lists: a loop per list is quadratic in the log size."""
    rows = np.asarray(rows)
    g, s, rel = group[rows], scores[rows], relevant[rows]
    order = np.lexsort((np.arange(len(rows)), -s, g))                   # by list, best score first
    g, rel = g[order], rel[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])              # where each list begins
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    first = np.full(len(starts), np.iinfo(np.int64).max)
    np.minimum.at(first, np.searchsorted(starts, np.flatnonzero(rel), side="right") - 1, rank[rel])
    hit = first < np.iinfo(np.int64).max
    return float(np.mean(1.0 / (1 + first[hit]))) if hit.any() else float("nan")


def _observations(task: str, probs: np.ndarray, ts: TrainingSet, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probability, label) of each observation of a task among `rows` (probs: one per row of `rows`).

    Churn is one label per visit, copied onto every row the visit was shown (up to thousands): row by
    row a few long visits decide its calibration, and the row-weighted churn rate of two samples of
    held-out users differed by 0.036 where their per-visit rates agreed within 0.01. So it is
    observed once per visit, at the mean probability of the visit's rows."""
    m = ts.masks[task][rows]
    p, y = probs[m], ts.labels[task][rows][m]
    if task not in PER_VISIT or not len(p):
        return p, y
    _, visit = np.unique(ts.visit[rows][m], return_inverse=True)
    n = np.bincount(visit)
    return np.bincount(visit, p) / n, np.bincount(visit, y) / n


def _calibrate(raw: dict[str, np.ndarray], ts: TrainingSet, rows: np.ndarray) -> tuple[dict, dict]:
    """Per binary task, the calibrator chosen on the held-out slice `rows`, and its report."""
    calibrators, report = {}, {}
    for task in BINARY:
        if task not in raw:
            continue
        p, y = _observations(task, raw[task], ts, rows)
        if len(y) >= 50 and 0 < y.mean() < 1:
            calibrators[task] = choose_calibrator(logit(p), y)
            report[task] = calibration_report(logit(p), y, calibrators[task])
    return calibrators, report


def _ranking(top: dict[str, np.ndarray], ranked: TrainingSet) -> dict:
    """MRR per surface of the logged lists re-ordered by `top` ({task: score per row})."""
    return {surface: list_mrr(top[task], ranked.labels[task] > 0.5, ranked.group, np.flatnonzero(ranked.surface == code))
            for surface, task, code in SURFACES if task in top}


@dataclass
class _Held:
    """Held-out rows as the models see them: `test` for the tasks, at the positions shown; `ranked`
    for the ranking metrics, every item as if at the top (they may be the same logs)."""
    test: TrainingSet
    test_at: np.ndarray
    ranked: TrainingSet
    ranked_top: np.ndarray


def _evaluate(score, calibrators: dict, held: _Held) -> dict:
    """Ranking MRR per surface and per task AUC / log loss / ECE; score(inputs) -> {task: probability}."""
    raw, test = score(held.test_at), held.test
    probs = {t: (calibrators[t].predict(logit(v)) if t in calibrators else v) for t, v in raw.items()}
    out: dict = {"ranking": _ranking(score(held.ranked_top), held.ranked), "tasks": {}}
    rows = np.arange(len(test))
    for task in BINARY:
        if task in probs and test.masks[task].any():
            p, y = _observations(task, probs[task], test, rows)
            out["tasks"][task] = {"auc": auc(p, y), "log_loss": log_loss(p, y), "ece": expected_calibration_error(p, y),
                                  "ece_uncalibrated": expected_calibration_error(
                                      _observations(task, raw[task], test, rows)[0], y)}
    return out


def _mlp(X, ts, train_rows, architecture: str, seed: int, epochs: int, tasks=DEFAULT_TASKS, progress=False,
         listwise: float = 0.0, config: dict | None = None):
    fields = {"tasks": tasks, "bias_inputs": 1, **(config or {})}  # model_inputs: the position is the last column
    model = MultiTaskRanker(RankerConfig(n_features=X.shape[1], architecture=architecture, seed=seed, **fields))
    tasks = model.config.tasks
    names = [t.name for t in tasks]
    ranked = {t: listwise for _, t, _ in SURFACES if t in names} if listwise else None
    history = fit(model, X[train_rows], {t: ts.labels[t][train_rows] for t in names},
                  {t: ts.masks[t][train_rows] for t in names}, epochs=epochs, batch_size=1024, seed=seed,
                  progress=progress, group=ts.group[train_rows] if ranked else None, listwise=ranked)
    return model, history


def _alone(spec):
    """A task as its own single-task model: one given another learns it all, position bias included."""
    if spec.given is None:
        return spec
    return replace(spec, given=None, position_bias=next(t.position_bias for t in DEFAULT_TASKS if t.name == spec.given))


def _gbdt(X, ts, train_rows, calib_rows, seed: int) -> dict:
    """One LightGBM model per binary task on the same inputs, early-stopped on the calibration slice."""
    import lightgbm

    models = {}
    for task in BINARY:
        tr, va = train_rows[ts.masks[task][train_rows]], calib_rows[ts.masks[task][calib_rows]]
        if len(np.unique(ts.labels[task][tr])) < 2:
            continue
        m = lightgbm.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=31, min_child_samples=50,
                                    subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed,
                                    deterministic=True, n_jobs=2, verbose=-1)
        m.fit(X[tr], ts.labels[task][tr], eval_X=(X[va],), eval_y=(ts.labels[task][va],),
              callbacks=[lightgbm.early_stopping(30, verbose=False)])
        models[task] = m
    return models


def _metrics(e: dict) -> dict[str, float]:
    """One evaluation as flat {"mrr/<surface>" | "<auc|log_loss|ece>/<task>": value}."""
    out = {f"mrr/{surface}": v for surface, v in e["ranking"].items()}
    out.update({f"{k}/{task}": d[k] for task, d in e["tasks"].items() for k in ("auc", "log_loss", "ece")})
    return out


def _spread(values: list[float]) -> list:
    return [round(float(np.mean(values)), 5), round(float(np.std(values)), 5), len(values)]


def _summary(runs: dict[str, list[dict]]) -> dict:
    """{model: {metric: [mean, std, n]}} over seeds, for the table in the report."""
    out = {}
    for name, evals in runs.items():
        flat = [_metrics(e) for e in evals]
        out[name] = {k: _spread([f[k] for f in flat if k in f]) for k in dict.fromkeys(k for f in flat for k in f)}
    return out


def _versus(runs: dict[str, list[dict]], model: str) -> dict:
    """The multi-task model minus each baseline, seed by seed (same seed, same data): {metric: {baseline:
    [mean, std, n]}} for ranking MRR, AUC and log loss wherever both have the metric."""
    out: dict = {}
    ours = [_metrics(e) for e in runs.get(model, [])]
    for name, evals in runs.items():
        if name == model:
            continue
        theirs = [_metrics(e) for e in (evals if len(evals) == len(ours) else evals[:1] * len(ours))]  # popularity: one run
        for metric in ours[0] if ours else ():
            diffs = [a[metric] - b[metric] for a, b in zip(ours, theirs) if metric in b]
            if diffs and not metric.startswith("ece/"):
                out.setdefault(metric, {})[name] = _spread(diffs)
    return out


def train_ranker(data, train_logs: Path, out: Path, test_logs: Path | None = None,
                 architecture: str = DEFAULT_ARCHITECTURE,
                 epochs: int = 30, seeds: Sequence[int] = (0,), progress: bool = True,
                 baselines: bool = False, listwise: float = 1.0, calibration_logs: Path | None = None,
                 config: dict | None = None, ranking_logs: Path | None = None, embed=None,
                 encoder: dict | None = None) -> dict:
    """Train on `train_logs`, save the first seed's ranker into `out`, and report on `test_logs`.

    `ranking_logs` (held-out lists shown in random order) replace the test logs for the ranking metrics.
    With `embed` (described by `encoder`) the query-candidate cosine feature is computed with it, and
    the ranker records the encoder so that a server pairs it with an artifact built with the same.

    With several seeds every model is trained once per seed and the report gives mean and spread;
    `baselines` adds the popularity order, one single-task network per task and LightGBM.
    """
    manifest = json.loads((train_logs / "manifest.json").read_text())
    events = _events(train_logs)
    impressions = [e for e in events if isinstance(e, Impression)]
    visits = [e for e in events if isinstance(e, Visit)]
    cut = int(0.3 * len(impressions))
    world_seed = manifest.get("world_seed", manifest["seed"])  # logs written before world_seed: one seed
    if ranking_logs is not None and test_logs is None:
        raise ValueError("ranking_logs: needs test_logs too (they give the per-task metrics)")
    for held_logs in (test_logs, ranking_logs, calibration_logs):
        if held_logs is None:
            continue
        held_manifest = json.loads((held_logs / "manifest.json").read_text())
        if held_manifest.get("world_seed", held_manifest["seed"]) != world_seed:
            raise ValueError(f"{held_logs} comes from another world (world seed "
                             f"{held_manifest.get('world_seed', held_manifest['seed'])}, training logs: {world_seed}): "
                             f"its users are not held out; simulate it with --world-seed {world_seed}")
    store = InMemoryFeatureStore(with_business(data, seed=world_seed), impressions[:cut])
    held_events = {p: _events(p) for p in (test_logs, ranking_logs, calibration_logs) if p is not None}
    cosine, encoder = None, (encoder or {"name": "unnamed"}) if embed is not None else None
    if embed is not None:
        cosine = Similarity(embed, encoder, product_texts(data))
        shown = [e for e in impressions[cut:] + [e for ev in held_events.values() for e in ev if isinstance(e, Impression)]
                 if e.surface == "search"]  # the only surface featurize computes it on
        cosine.warm((e.query for e in shown), (i.item for e in shown for i in e.items), progress=progress)
    ts = training_set(impressions[cut:] + visits, store, data.orders, cosine)
    # Clicks depend on where an item was shown; the position (last column) feeds only a shallow tower
    # added to the click logit and is set to the top at inference, so the trunk learns relevance
    # rather than position (Guo et al., PAL 2019).
    raw_X = model_inputs(ts.X, ts.group, ts.position)
    mean, std = raw_X.mean(axis=0), raw_X.std(axis=0) + 1e-6   # standardise: log priors and flags differ in scale
    X = (raw_X - mean) / std
    calib_from = np.quantile(ts.group, 0.85)
    train_rows, calib_rows = np.flatnonzero(ts.group < calib_from), np.flatnonzero(ts.group >= calib_from)
    test = training_set(held_events[test_logs], store, data.orders, cosine) if test_logs is not None else None
    if test is not None:
        # Ranking: every item as if shown at the top. Calibration: at the position it really had.
        ranked = test if ranking_logs is None else training_set(held_events[ranking_logs], store, data.orders, cosine)
        held = _Held(test, (model_inputs(test.X, test.group, test.position) - mean) / std, ranked,
                     (model_inputs(ranked.X, ranked.group, np.zeros(len(ranked), np.int16)) - mean) / std)
    cal = training_set(held_events[calibration_logs], store, data.orders, cosine) if calibration_logs is not None else None
    if cal is not None:
        # Calibrate on the served population but never on a test user: the test stays held out.
        cal_rows = np.flatnonzero(~np.isin(cal.user, test.user)) if test is not None else np.arange(len(cal))
        if not len(cal_rows):
            raise ValueError(f"{calibration_logs}: every session is of a user in the test logs; simulate it with another --seed")
        cal_at = (model_inputs(cal.X, cal.group, cal.position) - mean) / std
    seeds = list(seeds)
    runs: dict[str, list[dict]] = {}
    report: dict = {"encoder": encoder, "architecture": architecture, "seeds": seeds, "listwise": listwise, "config": config, "train_rows": int(len(train_rows)),
                    "calibration_rows": int(len(calib_rows) if cal is None else len(cal_rows)),
                    "calibration_logs": None if calibration_logs is None else str(calibration_logs), "store_impressions": cut, "logs": str(train_logs)}
    def calibrate(score) -> tuple[dict, dict]:
        """Every model's calibrators from the same rows, so that their calibrated metrics compare."""
        if cal is None:
            return _calibrate(score(X[calib_rows]), ts, calib_rows)
        # The population served: other sessions of held-out users, never the test sessions.
        return _calibrate(score(cal_at[cal_rows]), cal, cal_rows)

    for i, seed in enumerate(seeds):
        model, history = _mlp(X, ts, train_rows, architecture, seed, epochs, progress=progress, listwise=listwise,
                              config=config)
        calibrators, calibration = calibrate(lambda Z: predict(model, Z))
        if i == 0:
            Ranker(model, mean.astype(np.float32), std.astype(np.float32), calibrators, input_names(),
                   encoder).save(out)
            save_store(store, out / "store")  # what serving reads features from: the same store
            report.update(best_epoch=history.get("best_epoch"), calibration=calibration)
        if test is None:
            continue
        runs.setdefault(architecture, []).append(_evaluate(lambda Z: predict(model, Z), calibrators, held))
        if i == 0:
            raw = predict(model, held.test_at)
            probs = {t: calibrators[t].predict(logit(raw[t])) for t in calibrators}
            curves, rows = {}, np.arange(len(test))
            for task, p in probs.items():
                curves[f"{task} before"] = _observations(task, raw[task], test, rows)
                curves[f"{task} after"] = _observations(task, p, test, rows)
            if curves:
                reliability_diagram(curves, out / "reliability.png", title="held-out users, per task")
        if not baselines:
            continue
        for spec in DEFAULT_TASKS:
            if spec.kind == "binary":
                single, _ = _mlp(X, ts, train_rows, "shared_bottom", seed, epochs, tasks=(_alone(spec),),
                                 listwise=listwise)
                c, _ = calibrate(lambda Z: predict(single, Z))
                runs.setdefault(f"single_task/{spec.name}", []).append(
                    _evaluate(lambda Z: predict(single, Z), c, held))
        gbdt = _gbdt(X, ts, train_rows, calib_rows, seed)
        score = lambda Z: {t: m.predict_proba(Z)[:, 1] for t, m in gbdt.items()}  # noqa: E731
        c, _ = calibrate(score)
        runs.setdefault("lightgbm", []).append(_evaluate(score, c, held))
    if test is not None:
        ranked = held.ranked
        runs["popularity"] = [{"ranking": _ranking({task: ranked.prior for _, task, _ in SURFACES}, ranked), "tasks": {}}]
        as_logged = {task: -ranked.position.astype(np.float64) for _, task, _ in SURFACES}
        runs["as_logged"] = [{"ranking": _ranking(as_logged, ranked), "tasks": {}}]
        report["test"] = {"rows": int(len(test)), "ranking_logs": str(ranking_logs or test_logs),
                          "lists": {s: int(len(np.unique(ranked.group[ranked.surface == c]))) for s, _, c in SURFACES},
                          "summary": _summary(runs), "versus": _versus(runs, architecture), "runs": runs}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def summary_table(report: dict) -> str:
    """The report's test summary as a markdown table: mean ± std (n seeds) per model and metric."""
    summary = report["test"]["summary"]
    metrics = sorted({k for v in summary.values() for k in v}, key=lambda k: (k.split("/")[0] != "mrr", k))
    lines = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, v in summary.items():
        cells = [f"{v[k][0]:.4f} ± {v[k][1]:.4f} ({v[k][2]})" if k in v else "" for k in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus_table(report: dict) -> str:
    """The report's seed-paired differences (multi-task minus baseline) as a markdown table."""
    versus = report["test"]["versus"]
    names = sorted({b for v in versus.values() for b in v})
    lines = [f"| {report['architecture']} minus | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric, v in versus.items():
        cells = [f"{v[b][0]:+.4f} ± {v[b][1]:.4f} ({v[b][2]})" if b in v else "" for b in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    embed, encoder = encoder_from_args(args)
    report = train_ranker(dataset_from_args(args), args.logs, args.out, args.test_logs, args.architecture,
                          args.epochs, args.seeds, baselines=args.baselines, listwise=args.listwise,
                          calibration_logs=args.calibration_logs, config=json.loads(args.config) if args.config else None,
                          ranking_logs=args.ranking_logs, embed=embed, encoder=encoder)
    if "test" in report:
        print(summary_table(report))
        print(versus_table(report))
    print(f"ranker saved to {args.out}; full report in {args.out / 'report.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.train_ranker", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
