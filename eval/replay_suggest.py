"""Offline QAC replay: Keystroke against a most-popular-completion baseline on held-out orders.

    python -m eval.replay_suggest --data DIR | --demo --out REPORT_DIR [--k 10] [--max-targets N] [--seed 0]

Each product of each target order (eval.split) is one target: the shopper types the product's
normalised catalog name one character at a time and every prefix, and the empty box, is scored
with eval.qac. The artifact is built from the training split only. Writes REPORT_DIR/qac.json,
qac.md and qac_by_prefix_len.png.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from eval.qac import aggregate, hit_rank, mrr_by_length
from eval.split import split_dataset
from suggest.artifact import build_artifact, load_artifact
from suggest.pipeline import MAX_K, MAX_QUERY_CHARS, Pipeline
from suggest.text import normalize
from suggest.types import Dataset, Suggestion

__all__ = ["Target", "MostPopularCompletion", "make_targets", "evaluate", "write_report", "main"]

FALLBACK_HOUR = 12   # orders without an hour (the real data's sampled lines): a fixed one keeps runs repeatable
PLOT_MAX_LENGTH = 30
_END = "\U0010ffff"


@dataclass(frozen=True, slots=True)
class Target:
    user_id: int
    product_id: int
    text: str   # what the shopper types: the normalised catalog name
    hour: int


class MostPopularCompletion:
    """MPC (Bar-Yossef & Kraus 2011): every normalised product name that extends the prefix, by purchase count."""

    name = "mpc"

    def __init__(self, data: Dataset):
        counts: dict[int, int] = dict(data.anonymous_lines)
        for order in data.orders:
            for pid in order.product_ids:
                counts[pid] = counts.get(pid, 0) + 1
        entries = sorted((normalize(p.name), p.product_id) for p in data.catalog.products)
        self.names = [name for name, _ in entries]
        self.product_ids = np.array([pid for _, pid in entries], dtype=np.int64)   # (n_products,)
        self.counts = np.array([counts.get(pid, 0) for _, pid in entries], dtype=np.int64)  # (n_products,)
        # Global rank by (count desc, name): the top k of any prefix run are its k smallest ranks.
        order = np.lexsort((np.arange(len(entries)), -self.counts))
        self.rank = np.empty(len(entries), dtype=np.int64)   # (n_products,) rank of each sorted-name row
        self.rank[order] = np.arange(len(entries))
        self.row_of_rank = order
        self._cache: dict[tuple[str, int], list[Suggestion]] = {}

    def suggest(self, text: str, k: int) -> list[Suggestion]:
        key = (text, k)
        if key not in self._cache:
            lo, hi = bisect_left(self.names, text), bisect_left(self.names, text + _END)
            ranks = self.rank[lo:hi]
            if len(ranks) > k:
                ranks = np.partition(ranks, k - 1)[:k]
            rows = self.row_of_rank[np.sort(ranks)]
            self._cache[key] = [Suggestion(self.names[r], float(self.counts[r]), (self.name,), ((0, len(text)),),
                                           (int(self.product_ids[r]),)) for r in rows.tolist()]
        return self._cache[key]


def make_targets(data: Dataset, split, max_targets: int | None = None, seed: int = 0) -> list[Target]:
    """One target per (target order, product), sampled down to max_targets reproducibly."""
    targets = [Target(o.user_id, pid, normalize(data.catalog.get(pid).name)[:MAX_QUERY_CHARS],
                      FALLBACK_HOUR if o.hour is None else o.hour)
               for o in split.targets for pid in o.product_ids]
    if max_targets is not None and len(targets) > max_targets:
        keep = sorted(random.Random(seed).sample(range(len(targets)), max_targets))
        targets = [targets[i] for i in keep]
    return targets


Method = Callable[[Target, str, int], Sequence[Suggestion]]


def _replay(methods: dict[str, Method], targets: list[Target], k: int, progress: bool) -> dict[str, list[list[int]]]:
    """ranks[method][t][i]: hit rank of target t after typing i characters (0 = empty box)."""
    ranks: dict[str, list[list[int]]] = {name: [] for name in methods}
    for t in tqdm(targets, desc="replay", unit="target", disable=not progress, file=sys.stderr):
        for name, method in methods.items():
            ranks[name].append([hit_rank(t.product_id, method(t, t.text[:i], k), k) for i in range(len(t.text) + 1)])
    return ranks


def evaluate(data: Dataset, k: int = 10, max_targets: int | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Split, build from the training part, replay every target for each method; the report as a dict."""
    started = time.time()
    split = split_dataset(data, seed=seed)
    targets = make_targets(data, split, max_targets, seed)
    with tempfile.TemporaryDirectory(prefix="keystroke-qac-") as tmp:
        artifact = load_artifact(build_artifact(split.train, Path(tmp) / "train", progress=progress))
    built = time.time()
    pipeline, mpc = Pipeline.from_artifact(artifact), MostPopularCompletion(split.train)
    methods: dict[str, Method] = {
        "keystroke": lambda t, text, k: pipeline.suggest(pipeline.make_query(text, k, t.user_id, hour=t.hour)),
        "mpc": lambda t, text, k: mpc.suggest(text, k),
    }
    ranks = _replay(methods, targets, k, progress)
    return {
        "artifact": artifact.id,
        "data": data.name,
        "n_targets": len(targets),
        "n_test_users": len(split.test_users),
        "k": k,
        "seed": seed,
        "seconds": {"split_and_build": round(built - started, 2), "replay": round(time.time() - built, 2)},
        "methods": {name: aggregate(r, k) for name, r in ranks.items()},
        "mrr_by_length": {name: mrr_by_length(r, PLOT_MAX_LENGTH) for name, r in ranks.items()},
    }


def markdown_table(report: dict) -> str:
    methods = list(report["methods"])
    lines = ["| metric | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for key in report["methods"][methods[0]]:
        lines.append(f"| {key} | " + " | ".join(f"{report['methods'][m][key]:.4f}" for m in methods) + " |")
    return "\n".join(lines)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in report["mrr_by_length"].items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=name)
    ax.set(xlabel="prefix length (characters typed; 0 = empty box)", ylabel=f"MRR@{report['k']}",
           title=f"{report['data']}: {report['n_targets']} targets", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict, out: Path | str) -> str:
    """Write qac.json, qac.md and the plot into `out`; returns the markdown table."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(report)
    (out / "qac.json").write_text(json.dumps(report, indent=2))
    (out / "qac.md").write_text(f"# Offline QAC replay: {report['data']}\n\nartifact `{report['artifact']}`, "
                                f"{report['n_targets']} targets from {report['n_test_users']} held-out users, "
                                f"k={report['k']}, seed={report['seed']}\n\n{table}\n")
    _plot(report, out / "qac_by_prefix_len.png")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.replay_suggest", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--max-targets", type=int, help="sample this many targets (seeded)")
    p.add_argument("--seed", type=int, default=0, help="split and sampling seed")
    args = p.parse_args(argv)
    if not 1 <= args.k <= MAX_K:
        p.error(f"--k must be in 1..{MAX_K}, got {args.k}")
    if args.max_targets is not None and args.max_targets < 1:
        p.error(f"--max-targets must be >= 1, got {args.max_targets}")

    data = dataset_from_args(args)
    report = evaluate(data, args.k, args.max_targets, args.seed)
    table = write_report(report, args.out)
    print(f"{report['n_targets']} targets, artifact {report['artifact']}, seconds {report['seconds']}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
