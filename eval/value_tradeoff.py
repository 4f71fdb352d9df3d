"""Value-aware search ranking on held-out users: what a GTV or margin weight buys, and what it costs.

    python -m eval.value_tradeoff --data ../shared/data/instacart --ranker artifacts/ranker-real --sessions 3000 --out reports/tradeoff
    python -m eval.value_tradeoff --demo --out reports/tradeoff-demo    # trains a tiny ranker first

A ranker saved without its feature store beside it (<ranker>/store) needs `--logs`, its training
logs, from which the store is rebuilt the way eval.train_ranker builds it.

Every arm simulates the same held-out users (split "test") with the same seed; arms differ only in
how the search list is ordered: greedily by the trained ranker's objective value (suggest.scoring)
for that arm's weights, relevance 1 plus a GTV or a margin weight ("prior" is the world's own order,
by the popularity prior, for reference). Suggestions keep the popularity order in every arm.

The arms are paired by construction: chain c of every arm starts at the same real order, and a
session id names the same user, order line and intent in every arm; chains only end at different
points, because the return draw depends on how the visit went. Each arm's difference from
relevance-only comes with a 95% bootstrap interval over the chains both arms hold (chains, not
sessions: one user's sessions are not independent). Writes tradeoff.json, tradeoff.md and
tradeoff.png into OUT.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from eval.world.simulate import World, build_world, simulate
from ranking.feature_store import load_store
from ranking.features import InMemoryFeatureStore, RankCandidate, RankQuery
from ranking.objective import Objective, Objectives
from ranking.training_data import AsOfStore
from suggest.events import Impression, Visit, read_events
from suggest.scoring import RankerScorer
from suggest.semantic import Similarity

__all__ = ["BASELINE", "PRIOR", "METRICS", "objective_grid", "search_value", "chain_outcomes",
           "paired_difference", "value_tradeoff", "markdown_table", "plot_tradeoff", "main"]

BASELINE, PRIOR = "relevance", "prior"
GTV_WEIGHTS = (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)     # the last is all but pure expected GTV
MARGIN_WEIGHTS = (0.3, 1.0, 3.0, 10.0, 30.0, 300.0)
# A chain's outcome row (chain_outcomes): totals in this column order
_COLUMNS = ("sessions", "successes", "purchases", "gtv", "margin", "suggest_impressions", "suggest_clicks",
            "search_impressions", "search_clicks")
_AT = {name: i for i, name in enumerate(_COLUMNS)}
# metric -> (numerator, denominator) columns
METRICS = {"gtv_per_session": ("gtv", "sessions"), "margin_per_session": ("margin", "sessions"),
           "success_rate": ("successes", "sessions"), "purchase_rate": ("purchases", "sessions"),
           "price_per_purchase": ("gtv", "purchases"), "search_ctr": ("search_clicks", "search_impressions"),
           "suggest_ctr": ("suggest_clicks", "suggest_impressions")}


def objective_grid(gtv: Sequence[float] = GTV_WEIGHTS, margin: Sequence[float] = MARGIN_WEIGHTS) -> dict[str, Objective]:
    """Relevance only, then relevance 1 plus each GTV weight, then relevance 1 plus each margin weight."""
    arms = {BASELINE: Objective({"relevance": 1.0})}
    for quantity, weights in (("gtv", gtv), ("margin", margin)):
        for w in weights:
            arms[f"{quantity}={w:g}"] = Objective({"relevance": 1.0, quantity: float(w)})
    return arms


def search_value(scorer: RankerScorer, k: int, orders=None) -> Callable[..., np.ndarray]:
    """The World.search_value of a scorer: its search objective's value for each product of the list.

    With `orders` (the world's real orders) the shopper's features are taken as of the visit the
    session replays (ranking.training_data.AsOfStore): the full history would include the very
    order being replayed, and "bought before" would point at the product about to be bought."""
    as_of = AsOfStore(scorer.store, orders) if orders is not None else None
    if as_of is not None:
        scorer = RankerScorer(scorer.ranker, as_of, scorer.objectives, scorer.arm, scorer.cosine)

    def value(query: str, user_id: int | None, ids: list[int], prior: np.ndarray, session_id: str = "") -> np.ndarray:
        # As the simulator logs them and the ranker was trained on them (ranking.training_data):
        # product items, the logged (rounded) prior, no sources, the default hour and weekday.
        if as_of is not None:
            as_of.visiting(user_id, session_id)
        cands = [RankCandidate(f"product:{pid}", (pid,), round(float(p), 6)) for pid, p in zip(ids, prior)]
        return scorer.score(RankQuery(query, "search", user_id), cands, k).value
    return value


def chain_outcomes(folder: Path) -> dict[tuple[int, int], np.ndarray]:
    """(shard, chain) -> one row of _COLUMNS totals, from a simulated run's events."""
    rows: dict[tuple[int, int], np.ndarray] = {}

    def row(visit_or_session_id: str) -> np.ndarray:
        _, shard, chain = visit_or_session_id.split(".")[:3]   # <seed>.<shard>.<chain>.<visit>[.<item>]
        return rows.setdefault((int(shard), int(chain)), np.zeros(len(_COLUMNS)))

    for f in sorted(Path(folder).glob("events-*.jsonl*")):
        for e in read_events(f):
            if isinstance(e, Visit):   # the simulator logs a visit's successes as its `purchases`
                add = {"sessions": e.sessions, "successes": e.purchases}
                r = row(e.visit_id)
            elif e.surface == "search":
                add = {"purchases": bool(e.add_to_carts), "gtv": e.revenue, "margin": e.margin,
                       "search_impressions": 1, "search_clicks": bool(e.clicks)}
                r = row(e.session_id)
            else:
                add = {"suggest_impressions": 1, "suggest_clicks": bool(e.clicks)}
                r = row(e.session_id)
            for name, v in add.items():
                r[_AT[name]] += v
    return rows


def _ratio(totals: np.ndarray, metric: str) -> np.ndarray:
    """A metric from (..., len(_COLUMNS)) totals."""
    num, den = METRICS[metric]
    return totals[..., _AT[num]] / np.maximum(totals[..., _AT[den]], 1e-12)


def paired_difference(base: Mapping[tuple, np.ndarray], arm: Mapping[tuple, np.ndarray], n_boot: int = 2000,
                      seed: int = 0) -> dict[str, dict]:
    """Per metric: arm minus base on the chains both hold, with a 95% percentile bootstrap over chains."""
    keys = sorted(set(base) & set(arm))
    if not keys:
        return {}
    A = np.stack([base[k] for k in keys])   # (n_chains, len(_COLUMNS))
    B = np.stack([arm[k] for k in keys])
    rng = np.random.default_rng(seed)
    W = rng.multinomial(len(keys), np.full(len(keys), 1.0 / len(keys)), size=n_boot).astype(np.float64)  # (n_boot, n)
    out = {}
    for metric in METRICS:
        diff = float(_ratio(B.sum(0), metric) - _ratio(A.sum(0), metric))
        boot = _ratio(W @ B, metric) - _ratio(W @ A, metric)   # (n_boot,)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[metric] = {"diff": round(diff, 6), "ci95": [round(float(lo), 6), round(float(hi), 6)]}
    return {"chains": len(keys), **out}


def _summary(chains: Mapping[tuple, np.ndarray]) -> dict[str, float]:
    totals = np.sum(list(chains.values()), axis=0)   # (len(_COLUMNS),)
    return {m: round(float(_ratio(totals, m)), 6) for m in METRICS}


@contextlib.contextmanager
def _one_torch_thread():
    """One short list per call: more threads only contend (20x slower on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def value_tradeoff(world: World, scorer: RankerScorer, arms: Mapping[str, Objective], sessions: int, seed: int = 0,
                   workers: int = 1, n_boot: int = 2000, progress: bool = True) -> dict:
    """Simulate every arm (and the prior order) on the held-out users; per arm its metrics and its
    paired difference from relevance-only. `arms` must hold BASELINE."""
    if BASELINE not in arms:
        raise ValueError(f"arms: the relevance-only arm {BASELINE!r} is the reference; got {sorted(arms)}")
    suggest = Objective({"relevance": 1.0})   # unused: suggestions keep the world's popularity order
    chains: dict[str, dict] = {}
    results: dict[str, dict] = {}
    names = [BASELINE] + [a for a in arms if a != BASELINE] + [PRIOR]
    with _one_torch_thread(), tqdm(names, desc="arms", unit="arm", disable=not progress, file=sys.stderr) as bar:
        for name in bar:
            bar.set_postfix_str(name)
            value = None if name == PRIOR else search_value(
                RankerScorer(scorer.ranker, scorer.store, Objectives({"suggest": suggest, "search": arms[name]}),
                             cosine=scorer.cosine),
                world.cfg.k, world.data.orders)
            with tempfile.TemporaryDirectory(prefix="keystroke-tradeoff-") as tmp:
                simulate(dataclasses.replace(world, search_value=value), "popularity", sessions, seed=seed,
                         split="test", out=tmp, workers=workers, progress=False)
                chains[name] = chain_outcomes(Path(tmp))
            results[name] = {"weights": dict(arms[name].weights) if name != PRIOR else None,
                             "summary": _summary(chains[name]),
                             "vs_relevance": None if name == BASELINE else
                             paired_difference(chains[BASELINE], chains[name], n_boot, seed)}
    return {"sessions": sessions, "seed": seed, "split": "test", "policy": "greedy", "bootstrap": n_boot,
            "arms": results}


def _cell(d: dict | None, metric: str, digits: int) -> str:
    if not d:
        return ""
    v = d[metric]
    return f"{v['diff']:+.{digits}f} [{v['ci95'][0]:+.{digits}f}, {v['ci95'][1]:+.{digits}f}]"


def markdown_table(report: dict) -> str:
    """One row per arm: the metrics, and the paired difference from relevance-only with its 95% CI."""
    head = ["arm", "GTV/session", "Δ GTV [95% CI]", "margin/session", "Δ margin [95% CI]", "success rate",
            "Δ success [95% CI]", "purchase rate", "price/purchase", "search CTR", "Δ search CTR [95% CI]",
            "suggest CTR", "chains"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, a in report["arms"].items():
        s, d = a["summary"], a["vs_relevance"]
        lines.append("| " + " | ".join([
            name, f"{s['gtv_per_session']:.4f}", _cell(d, "gtv_per_session", 4), f"{s['margin_per_session']:.4f}",
            _cell(d, "margin_per_session", 4), f"{s['success_rate']:.4f}", _cell(d, "success_rate", 4),
            f"{s['purchase_rate']:.4f}", f"{s['price_per_purchase']:.2f}", f"{s['search_ctr']:.4f}",
            _cell(d, "search_ctr", 4), f"{s['suggest_ctr']:.4f}",
            str(d["chains"]) if d else ""]) + " |")
    return "\n".join(lines)


def plot_tradeoff(report: dict, path: Path | str) -> Path:
    """PNG: the trade-off curve as the weights move, paired against relevance-only (the origin):
    GTV and margin per session against success rate, one line per weighted quantity, points
    labelled by weight, bars the 95% bootstrap intervals of both differences."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms, base = report["arms"], report["arms"][BASELINE]["summary"]
    fig = Figure(figsize=(11, 5))
    FigureCanvasAgg(fig)
    for ax, (metric, label) in zip(fig.subplots(1, 2), (("gtv_per_session", "GTV per session"),
                                                         ("margin_per_session", "margin per session"))):
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.axvline(0.0, color="grey", lw=0.6)
        for quantity, colour, dy in (("gtv", "tab:blue", 5), ("margin", "tab:orange", -11)):
            names = [n for n, a in arms.items() if a["weights"] and quantity in a["weights"]]
            d = [arms[n]["vs_relevance"] for n in names]
            x, y = [0.0] + [v["success_rate"]["diff"] for v in d], [0.0] + [v[metric]["diff"] for v in d]
            xerr = [[0.0] + [v["success_rate"]["diff"] - v["success_rate"]["ci95"][0] for v in d],
                    [0.0] + [v["success_rate"]["ci95"][1] - v["success_rate"]["diff"] for v in d]]
            yerr = [[0.0] + [v[metric]["diff"] - v[metric]["ci95"][0] for v in d],
                    [0.0] + [v[metric]["ci95"][1] - v[metric]["diff"] for v in d]]
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o-", color=colour, ecolor=colour, elinewidth=0.7,
                        alpha=0.85, capsize=2, label=f"relevance 1 + {quantity} weight")
            for n, xi, yi in zip(names, x[1:], y[1:]):
                ax.annotate(n.split("=")[1], (xi, yi), textcoords="offset points", xytext=(4, dy), fontsize=8,
                            color=colour)
        ax.set_xlabel(f"success rate − relevance-only's ({base['success_rate']:.3f})")
        ax.set_ylabel(f"{label} − relevance-only's ({base[metric]:.3f})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    prior = arms.get(PRIOR, {}).get("summary")
    note = (f"; popularity prior: success {prior['success_rate']:.3f}, GTV {prior['gtv_per_session']:.3f}, "
            f"margin {prior['margin_per_session']:.3f}") if prior else ""
    fig.suptitle(f"Search objective weights on held-out users: {report['sessions']} paired sessions per arm, greedy"
                 f"\nbars: 95% bootstrap CI over user chains{note}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _store(ranker_dir: Path, data, logs: Path | None):
    """The ranker's feature store: the snapshot beside it, or rebuilt from its training logs the way
    eval.train_ranker builds it (the world's business data and the first 30% of the impressions)."""
    if (ranker_dir / "store").is_dir() or logs is None:
        return load_store(ranker_dir / "store")
    from eval.world.business import with_business

    manifest = json.loads((logs / "manifest.json").read_text())
    impressions = [e for f in sorted(logs.glob("events-*.jsonl*")) for e in read_events(f) if isinstance(e, Impression)]
    return InMemoryFeatureStore(with_business(data, seed=manifest["seed"]), impressions[: int(0.3 * len(impressions))])


def _train_small_ranker(data, world: World, folder: Path, sessions: int, seed: int) -> Path:
    """A ranker trained on the world's training users' logs (Plackett-Luce), for --demo runs."""
    from eval.train_ranker import train_ranker

    simulate(world, "plackett-luce", sessions, seed=seed, split="train", out=folder / "logs", progress=False)
    train_ranker(data, folder / "logs", folder / "ranker", epochs=5, progress=False)
    return folder / "ranker"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.value_tradeoff", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--ranker", type=Path, help="trained ranker folder; without it a small one is trained first")
    p.add_argument("--logs", type=Path, help="the ranker's training logs, to rebuild its feature store when "
                                             "the ranker folder has none")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sessions", type=int, default=3000, help="sessions per arm")
    p.add_argument("--seed", type=int, default=0, help="the sessions' seed, the same for every arm")
    p.add_argument("--world-seed", type=int, default=0, help="the world's (business data, split): the ranker's")
    p.add_argument("--gtv", type=float, nargs="*", default=list(GTV_WEIGHTS), help="GTV weights beside relevance 1")
    p.add_argument("--margin", type=float, nargs="*", default=list(MARGIN_WEIGHTS),
                   help="margin weights beside relevance 1")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the chains")
    args = p.parse_args(argv)
    from ranking.ranker import Ranker

    data = dataset_from_args(args)
    world = build_world(data, seed=args.world_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keystroke-ranker-") as tmp:
        ranker_dir = args.ranker or _train_small_ranker(data, world, Path(tmp), 2000, args.world_seed)
        ranker = Ranker.load(ranker_dir)
        scorer = RankerScorer(ranker, _store(ranker_dir, data, args.logs),
                              cosine=Similarity.for_encoder(ranker.encoder, data) if ranker.encoder else None)
    report = value_tradeoff(world, scorer, objective_grid(args.gtv, args.margin), args.sessions, args.seed,
                            args.workers, args.bootstrap)
    report.update(data=world.data.name, ranker=str(args.ranker) if args.ranker else "trained for this run",
                  world_seed=args.world_seed)
    (args.out / "tradeoff.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(report)
    (args.out / "tradeoff.md").write_text(table + "\n")
    plot_tradeoff(report, args.out / "tradeoff.png")
    print(table)
    print(f"wrote {args.out / 'tradeoff.json'}, tradeoff.md and tradeoff.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
