"""Search retrieval on held-out purchases: BM25 alone, vector alone, and their reciprocal rank fusion.

    python -m eval.search_eval --data ../shared/data/instacart --out reports/search [--max-queries N] [--artifact DIR]

The artifact is built from the training split (eval.split) into OUT/artifact, with embedding
recall from the base encoder; `--artifact` reuses one built so (it is refused when its order
count says it saw the held-out orders). Each held-out user's last order gives the targets, and
each sampled target becomes a query the way the interaction world's shoppers put it: an intent
(eval.world.intents) typed at the world's typo rate (typed_states), all seeded. In one process:
- bm25: LexicalIndex.search (every term, corrected, relaxed when nothing holds them all), built
  afresh from the training split;
- vector: VectorSource.search_products over the product embeddings;
- rrf: reciprocal_rank_fusion of the two lists, each cut at POOL.
Metrics at 10, with the purchased product as the one relevant item, and with every product that
satisfies the intent as relevant (recall capped at 10, binary-gain NDCG): overall, by intent level
and by whether the typed query holds a typo. Latency p50/p99 per retriever (rrf: both retrievers
and the fusion), one thread each. Writes search.json and search.png into OUT.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from eval.split import split_dataset
from eval.world.config import INTENT_LEVELS, WorldConfig
from eval.world.intents import IntentModel, typed_states
from indexes.fusion import RRF_K, reciprocal_rank_fusion
from indexes.lexical import LexicalIndex
from indexes.vector import Embed, VectorSource
from suggest.artifact import Artifact, build_artifact, load_artifact
from suggest.errors import ArtifactError
from suggest.search import VECTOR_WEIGHT
from suggest.text import normalize
from suggest.types import Dataset

__all__ = ["SearchQuery", "search_queries", "evaluate_search", "compare_retrievers", "table", "main", "RETRIEVERS"]

RETRIEVERS = ("bm25", "vector", "rrf")
K = 10
POOL = 100  # each retriever's list that the fusion sees
GROUPS = ("all",) + tuple(f"level={lv}" for lv in INTENT_LEVELS) + ("typo", "clean")


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str                    # as typed, typos included
    phrase: str                  # what the shopper meant to type
    level: str                   # the intent's level (eval.world.config.INTENT_LEVELS)
    target: int                  # the product bought
    acceptable: frozenset[int]   # every product that satisfies the intent

    @property
    def groups(self) -> tuple[str, ...]:
        return ("all", f"level={self.level}", "typo" if self.text != self.phrase else "clean")


def search_queries(data: Dataset, split, max_queries: int, seed: int = 0,
                   cfg: WorldConfig = WorldConfig()) -> list[SearchQuery]:
    """One query per sampled (held-out order, product) line, phrased and typed as the world's shoppers do."""
    rng = random.Random(seed)
    lines = [(pid, bool(r) if r is not None else None) for o in split.targets
             for pid, r in zip(o.product_ids, o.reordered or (None,) * len(o.product_ids))
             if data.catalog.get(pid) is not None]
    lines = rng.sample(lines, min(max_queries, len(lines)))
    intents, out = IntentModel(data.catalog, cfg), []
    for pid, reordered in lines:
        intent = intents.sample(pid, reordered, rng)
        typed = typed_states(intent.phrase, rng, cfg.typo_rate)
        out.append(SearchQuery(typed[-1] if typed else intent.phrase, intent.phrase, intent.level, pid,
                               intent.acceptable))
    return out


def _gains(ranked: list[int], q: SearchQuery) -> dict[str, float]:
    """recall@K and NDCG@K of one ranked id list, purchased and acceptable."""
    top = ranked[:K]
    hit = [i for i, p in enumerate(top) if p == q.target]
    good = [i for i, p in enumerate(top) if p in q.acceptable]
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(q.acceptable), K)))
    return {"purchased/recall@10": float(bool(hit)),
            "purchased/ndcg@10": 1.0 / math.log2(hit[0] + 2) if hit else 0.0,
            "acceptable/recall@10": len(good) / min(len(q.acceptable), K),
            "acceptable/ndcg@10": sum(1.0 / math.log2(i + 2) for i in good) / ideal}


def _vector(artifact: Artifact):
    for source in artifact.sources:
        if source.name == "vector":
            return source
    raise ArtifactError(f"{artifact.path} has no embedding recall; build it with an encoder")


def evaluate_search(lexical: LexicalIndex, vector: VectorSource, queries: list[SearchQuery],
                    progress: bool = False, vector_weight: float = VECTOR_WEIGHT) -> dict:
    """{retriever: {"GROUP/METRIC": mean, "GROUP/n": count, "latency_ms": {p50, p99}}}."""
    rows_to_ids = lexical.product_ids  # the vector source's rows are the catalog's products too
    vector.search_products("warm up", POOL)  # the first call loads and compiles; it is not a query
    sums = {r: defaultdict(float) for r in RETRIEVERS}
    counts: dict[str, int] = defaultdict(int)
    latency = {r: [] for r in RETRIEVERS}
    relaxed = corrected = expanded = 0
    for q in tqdm(queries, desc="search", unit="query", disable=not progress, file=sys.stderr):
        t0 = time.perf_counter()
        hits = lexical.search(q.text, POOL)
        t1 = time.perf_counter()
        rows, _ = vector.search_products(normalize(q.text), POOL)
        t2 = time.perf_counter()
        bm25, vec = hits.product_ids.tolist(), rows_to_ids[rows].tolist()
        fused = [p for p, _ in reciprocal_rank_fusion([bm25, vec], weights=(1.0, vector_weight))]
        t3 = time.perf_counter()
        latency["bm25"].append(t1 - t0)
        latency["vector"].append(t2 - t1)
        latency["rrf"].append(t3 - t0)
        relaxed += hits.relaxed
        corrected += bool(hits.corrections)
        expanded += bool(hits.expansions)
        for g in q.groups:
            counts[g] += 1
        for name, ranked in zip(RETRIEVERS, (bm25, vec, fused)):
            for metric, value in _gains(ranked, q).items():
                for g in q.groups:
                    sums[name][f"{g}/{metric}"] += value
    report = {}
    for name in RETRIEVERS:
        metrics = {key: round(total / counts[key.split("/")[0]], 4) for key, total in sorted(sums[name].items())}
        metrics.update({f"{g}/n": counts[g] for g in GROUPS if counts[g]})
        ms = np.array(latency[name]) * 1000
        metrics["latency_ms"] = {"p50": round(float(np.percentile(ms, 50)), 3) if len(ms) else None,
                                 "p99": round(float(np.percentile(ms, 99)), 3) if len(ms) else None}
        report[name] = metrics
    return {"queries": len(queries), "k": K, "pool": POOL, "rrf_k": RRF_K,
            "bm25_relaxed": relaxed, "bm25_corrected": corrected, "bm25_expanded": expanded, "retrievers": report}


@contextmanager
def _one_thread():
    """Queries come one at a time, and on a shared two-core machine more threads only wait on each
    other: a base-encoder query took 400 ms on two torch threads and 7 ms on one, faiss 24 ms and 4."""
    torch = sys.modules.get("torch")
    saved = faiss.omp_get_max_threads(), torch.get_num_threads() if torch else None
    faiss.omp_set_num_threads(1)
    if torch:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(saved[0])
        if torch:
            torch.set_num_threads(saved[1])


def compare_retrievers(data: Dataset, out: Path, embed: Embed, encoder: dict, max_queries: int = 2000,
                       seed: int = 0, artifact_dir: Path | None = None, progress: bool = False,
                       query_seed: int | None = None, vector_weight: float = VECTOR_WEIGHT) -> dict:
    """Split, build (or reuse) the training artifact, phrase the held-out purchases, evaluate.

    `query_seed` (default: seed) phrases the queries: tune on one, report on another."""
    query_seed = seed if query_seed is None else query_seed
    split = split_dataset(data, seed=seed)
    if artifact_dir is None:
        artifact_dir = build_artifact(split.train, out / "artifact", progress=progress, embed=embed, encoder=encoder)
    artifact = load_artifact(artifact_dir, embed=embed)
    if (artifact.manifest.get("encoder") or {}).get("name") != encoder.get("name"):
        raise ArtifactError(f"{artifact_dir} was embedded with {artifact.manifest.get('encoder')!r}, not {encoder!r}")
    if artifact.manifest["counts"]["orders"] != len(split.train.orders):
        raise ArtifactError(f"{artifact_dir} was built from {artifact.manifest['counts']['orders']} orders, the "
                            f"training split has {len(split.train.orders)}: it has seen held-out orders")
    # BM25 is rebuilt from the split (seconds), so a reused artifact lends only its embeddings
    lexical = LexicalIndex.build(split.train)
    if not np.array_equal(lexical.product_ids, artifact.table.product_ids):
        raise ArtifactError(f"{artifact_dir} indexes another catalog than the data's")
    with _one_thread():
        report = evaluate_search(lexical, _vector(artifact), search_queries(data, split, max_queries, query_seed),
                                 progress, vector_weight)
    report.update({"data": data.name, "seed": seed, "query_seed": query_seed, "vector_weight": vector_weight, "artifact": artifact.id, "encoder": encoder.get("name"),
                   "held_out_users": len(split.test_users)})
    return report


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in GROUPS if f"{g}/n" in report["retrievers"]["bm25"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
    width = 0.8 / len(RETRIEVERS)
    for ax, metric in zip(axes, ("purchased/recall@10", "purchased/ndcg@10")):
        for i, name in enumerate(RETRIEVERS):
            r = report["retrievers"][name]
            ax.bar(np.arange(len(groups)) + i * width, [r.get(f"{g}/{metric}", 0.0) for g in groups], width,
                   label=f"{name} (p50 {r['latency_ms']['p50']} ms)")
        ax.set_xticks(np.arange(len(groups)) + width, [g.removeprefix("level=") for g in groups], rotation=20)
        ax.set(title=metric)
    axes[0].legend()
    fig.suptitle(f"search retrieval on {report['queries']} held-out purchases ({report['data']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(report: dict) -> str:
    """The markdown table of the headline numbers."""
    rows = ["| retriever | recall@10 | NDCG@10 | acceptable recall@10 | acceptable NDCG@10 | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|---|"]
    for name in RETRIEVERS:
        r = report["retrievers"][name]
        rows.append(f"| {name} | {r['all/purchased/recall@10']} | {r['all/purchased/ndcg@10']} | "
                    f"{r['all/acceptable/recall@10']} | {r['all/acceptable/ndcg@10']} | "
                    f"{r['latency_ms']['p50']} | {r['latency_ms']['p99']} |")
    groups = [g for g in GROUPS[1:] if f"{g}/n" in report["retrievers"]["bm25"]]
    rows += ["", "| recall@10 by query | n | " + " | ".join(RETRIEVERS) + " |", "|---" * (2 + len(RETRIEVERS)) + "|"]
    for g in groups:
        rows.append(f"| {g} | {report['retrievers']['bm25'][f'{g}/n']} | " + " | ".join(
            str(report["retrievers"][n][f"{g}/purchased/recall@10"]) for n in RETRIEVERS) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.search_eval", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-queries", type=int, default=2000)
    p.add_argument("--artifact", type=Path, help="an artifact with embedding recall built from the training split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--query-seed", type=int, help="phrases the queries (default: --seed)")
    p.add_argument("--vector-weight", type=float, default=VECTOR_WEIGHT, help="of the vector list in the fusion")
    args = p.parse_args(argv)
    from adapters.encoder import Encoder  # torch only here

    args.out.mkdir(parents=True, exist_ok=True)
    report = compare_retrievers(dataset_from_args(args), args.out, Encoder.base().encode, {"name": "base", "path": None},
                                args.max_queries, args.seed, args.artifact, progress=True,
                                query_seed=args.query_seed, vector_weight=args.vector_weight)
    (args.out / "search.json").write_text(json.dumps(report, indent=2))
    _plot(report, args.out / "search.png")
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
