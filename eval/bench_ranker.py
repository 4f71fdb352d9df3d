"""How fast the ranker scores one request's candidates on one core: features, network, calibration.

    python -m eval.bench_ranker --data ../shared/data/instacart --ranker artifacts/ranker-real --out reports/ranker-bench

For 50, 200 and 500 candidates (a search for a prefix of one product's name, over random products) it
times, side by side in one process: the popularity baseline (sort by prior), featurisation, the
network eager, under TorchScript (traced) and under `torch.compile`, one single-task network per task
(what serving the same heads without multi-task learning would run: the baselines' shape, eager; the
weights do not change the cost, so they are left untrained), and the whole scorer (features + network
+ calibration + objective). A ranker that learnt the cosine feature also times it: with
the query's embedding cached (what vector recall and repeated prefixes leave) and with a new query
that the encoder must embed first. Percentiles in µs and ratios against the eager network; a
latency histogram PNG. One thread: a replica's request runs on one core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from eval._data import add_data_arguments, dataset_from_args
from eval.world.business import with_business
from eval.train_ranker import _alone
from ranking.features import InMemoryFeatureStore, RankCandidate, RankQuery, featurize
from ranking.model import MultiTaskRanker
from ranking.ranker import Ranker
from suggest.semantic import Similarity

__all__ = ["bench", "main"]

SIZES = (50, 200, 500)
CACHED = "organic whole milk"   # a query whose embedding is cached (long enough to be embedded)


def _timed(fn, repeats: int) -> np.ndarray:
    fn()  # warm
    out = np.empty(repeats)
    for i in range(repeats):
        t = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t) / 1e3
    return out  # (repeats,) µs


def _summary(us: np.ndarray) -> dict:
    return {"p50_us": round(float(np.percentile(us, 50)), 1), "p99_us": round(float(np.percentile(us, 99)), 1),
            "mean_us": round(float(us.mean()), 1)}


def _requests(data, n: int, count: int, seed: int) -> list[tuple[RankQuery, list[RankCandidate]]]:
    rng = random.Random(seed)
    products = data.catalog.products
    users = sorted({o.user_id for o in data.orders})
    out = []
    for _ in range(count):
        chosen = rng.sample(products, n)
        typed = chosen[0].name.lower()[: rng.randint(2, 8)]
        cands = [RankCandidate(f"product:{p.product_id}", (p.product_id,), rng.random()) for p in chosen]
        out.append((RankQuery(typed, "search", rng.choice(users), rng.randrange(24), rng.randrange(7)), cands))
    return out


def bench(data, ranker: Ranker, repeats: int = 200, compile_model: bool = True, seed: int = 0) -> dict:
    torch.set_num_threads(1)
    store = InMemoryFeatureStore(data)
    model = ranker.model.eval()
    cosine = Similarity.for_encoder(ranker.encoder, data) if ranker.encoder else None
    fresh = (f"query {i}" for i in itertools.count())  # never seen: the encoder runs
    singles = [MultiTaskRanker(replace(model.config, architecture="shared_bottom", tasks=(_alone(t),))).eval()
               for t in model.config.tasks]
    report: dict = {"sizes": {}, "repeats": repeats}
    samples: dict[str, np.ndarray] = {}
    for n in SIZES:
        reqs = _requests(data, n, 20, seed)
        if cosine is not None:
            cosine.warm([q.text for q, _ in reqs] + [CACHED], (c.item for _, cands in reqs for c in cands))
        feats = [featurize(q, c, store, cosine) for q, c in reqs]
        Z = [torch.as_tensor(ranker.standardised(X)) for X in feats]
        it = iter(range(10**9))
        pick = lambda: next(it) % len(reqs)  # noqa: E731  cycle through the requests
        traced = torch.jit.trace(model, Z[0], strict=False)
        runs = {
            "popularity sort": lambda: np.argsort([-c.prior for c in reqs[pick()][1]]),
            "featurize": lambda: featurize(*reqs[pick()], store, cosine),
            "network eager": lambda: _forward(model, Z[pick()]),
            "network torchscript": lambda: _forward(traced, Z[pick()]),
            f"{len(singles)} single-task networks eager": lambda: _forward_each(singles, Z[pick()]),
        }
        if compile_model:
            compiled = torch.compile(model, dynamic=True)
            _forward(compiled, Z[0])  # compile outside the timing
            runs["network torch.compile"] = lambda: _forward(compiled, Z[pick()])
        if cosine is not None:
            items = [[c.item for c in cands] for _, cands in reqs]
            runs["cosine, cached query"] = lambda: cosine(CACHED, items[pick()])
            runs["cosine, new query (encoder)"] = lambda: cosine(next(fresh), items[pick()])
        runs["scorer (features + network + calibration)"] = lambda: ranker.scores(
            ranker.standardised(featurize(*reqs[pick()], store, cosine)))
        timed = {name: _timed(fn, repeats) for name, fn in runs.items()}
        base = np.percentile(timed["network eager"], 50)
        report["sizes"][n] = {name: {**_summary(us), "p50_x_eager": round(float(np.percentile(us, 50) / base), 3)}
                              for name, us in timed.items()}
        samples.update({f"{name} n={n}": us for name, us in timed.items() if n == 200})
    return report, samples


def _forward(model, z: torch.Tensor):
    with torch.inference_mode():
        return model(z)


def _forward_each(models, z: torch.Tensor):
    return [_forward(m, z) for m in models]


def _markdown(report: dict) -> str:
    lines = ["| candidates | stage | p50 µs | p99 µs | p50 × eager network |", "|---|---|---|---|---|"]
    for n, stages in report["sizes"].items():
        lines += [f"| {n} | {name} | {s['p50_us']} | {s['p99_us']} | {s['p50_x_eager']} |" for name, s in stages.items()]
    return "\n".join(lines)


def _histogram(samples: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, us in samples.items():
        ax.hist(np.clip(us, None, np.percentile(us, 99.5)), bins=60, histtype="step", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("µs per request (200 candidates, one thread)")
    ax.set_ylabel("requests")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench_ranker", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--ranker", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (it needs a C++ compiler)")
    args = p.parse_args(argv)
    data = with_business(dataset_from_args(args), seed=0)
    report, samples = bench(data, Ranker.load(args.ranker), args.repeats, not args.no_compile)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ranker_bench.json").write_text(json.dumps(report, indent=2))
    (args.out / "ranker_bench.md").write_text(_markdown(report) + "\n")
    _histogram(samples, args.out / "ranker_latency.png")
    print(_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
