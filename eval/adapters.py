"""Offline evaluation of encoders: the base model against each LoRA adapter, on held-out users.

    python -m eval.adapters --data ../shared/data/instacart --adapters artifacts/adapters/v1 --out reports/adapters

For each held-out user's target purchase (eval.split), two retrieval tasks over a product corpus
(the targets plus a seeded sample of other products; `--corpus`):
- prefix -> product: the first 3, 5, 8 and 12 characters of the product's name; a hit is the
  product itself in the top k;
- phrase -> product: the interaction world's intent phrase for the product (eval.world.intents,
  made independently of the suggestion miner) at type or brand+type level; a hit is any product
  that satisfies the intent.
Reports recall@10, recall@50 and MRR@50 per encoder, by prefix length and by the target's
popularity in training (head: the products making the first half of sales, torso: the next 40%,
tail: the rest). Writes adapters.json and adapters.png. This is how an adapter is chosen.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from eval._data import add_data_arguments, dataset_from_args
from eval.split import split_dataset
from eval.world.config import WorldConfig
from eval.world.intents import IntentModel
from indexes.vector import product_text
from suggest.text import normalize

__all__ = ["evaluate_encoders", "main"]

PREFIX_LENGTHS = (3, 5, 8, 12)
KS = (10, 50)


def _popularity_buckets(train, product_ids) -> dict[int, str]:
    sales: Counter = Counter(train.anonymous_lines)
    for o in train.orders:
        sales.update(o.product_ids)
    ranked = sorted(sales, key=lambda p: -sales[p])
    total, running, bucket = sum(sales.values()), 0, {}
    for p in ranked:
        running += sales[p]
        bucket[p] = "head" if running <= 0.5 * total else "torso" if running <= 0.9 * total else "tail"
    return {p: bucket.get(p, "tail") for p in product_ids}


def _queries(data, split, n_targets: int, seed: int):
    """(task, text, relevant product set, target, prefix length or 0) for sampled held-out targets."""
    rng = random.Random(seed)
    targets = sorted({p for o in split.targets for p in o.product_ids})
    targets = rng.sample(targets, min(n_targets, len(targets)))
    intents = IntentModel(data.catalog, WorldConfig(intent_level_weights={"type": 0.6, "brand_type": 0.4}))
    out = []
    for pid in targets:
        name = normalize(data.catalog.get(pid).name)
        out += [("prefix", name[:n], frozenset((pid,)), pid, n) for n in PREFIX_LENGTHS if len(name) > n]
        intent = intents.sample(pid, False, rng)
        out.append(("phrase", intent.phrase, intent.acceptable, pid, 0))
    return targets, out


def _corpus(data, targets, size: int, seed: int) -> list[int]:
    others = sorted({p.product_id for p in data.catalog.products} - set(targets))
    return sorted(set(targets) | set(random.Random(seed + 1).sample(others, max(0, min(size, len(others))))))


def evaluate_encoders(data, encoders: dict, n_targets: int = 1000, corpus_size: int = 10_000, seed: int = 0) -> dict:
    """encoders: name -> embed(texts) -> (n, dim) normalised. Returns {encoder: {metric: value}}."""
    split = split_dataset(data, seed=seed)
    targets, queries = _queries(data, split, n_targets, seed)
    corpus = _corpus(data, targets, corpus_size, seed)
    row = {p: i for i, p in enumerate(corpus)}
    texts = [product_text(data.catalog.get(p).name, data.catalog.aisles[data.catalog.get(p).aisle_id])
             for p in corpus]
    bucket = _popularity_buckets(split.train, targets)
    report = {}
    for name, embed in encoders.items():
        docs = embed(texts)                                         # (n_corpus, dim)
        q = embed([t for _, t, _, _, _ in queries])                 # (n_queries, dim)
        top = np.argsort(-(q @ docs.T), axis=1)[:, : max(KS)]       # (n_queries, 50) corpus rows
        groups: dict[str, list[tuple[int, float]]] = defaultdict(list)  # group -> (rank or 0, recall@10)
        for (task, _, relevant, pid, n), rows in zip(queries, top):
            hits = [i for i, r in enumerate(rows.tolist()) if corpus[r] in relevant]
            rank = hits[0] + 1 if hits else 0
            for g in (task, f"{task}/{bucket[pid]}", f"{task}/len={n}" if n else None):
                if g:
                    groups[g].append((rank, len(relevant)))
        metrics = {}
        for g, ranks in sorted(groups.items()):
            r = np.array([x for x, _ in ranks])
            metrics[f"{g}/recall@10"] = round(float(np.mean((r > 0) & (r <= 10))), 4)
            metrics[f"{g}/recall@50"] = round(float(np.mean(r > 0)), 4)
            metrics[f"{g}/mrr@50"] = round(float(np.mean(np.where(r > 0, 1.0 / np.maximum(r, 1), 0.0))), 4)
            metrics[f"{g}/n"] = len(r)
        report[name] = metrics
    return {"targets": len(targets), "corpus": len(corpus), "queries": len(queries), "seed": seed,
            "encoders": report}


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = ["prefix/len=3", "prefix/len=5", "prefix/len=8", "prefix/len=12", "prefix/head", "prefix/torso",
              "prefix/tail", "phrase"]
    names = list(report["encoders"])
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        vals = [report["encoders"][name].get(f"{g}/recall@10", 0.0) for g in groups]
        ax.bar(np.arange(len(groups)) + i * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, groups, rotation=20)
    ax.set(ylabel="recall@10", title=f"held-out retrieval, {report['targets']} targets, corpus {report['corpus']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.adapters", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--adapters", type=Path, nargs="*", default=[], help="adapter folders to compare with the base")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--targets", type=int, default=1000)
    p.add_argument("--corpus", type=int, default=10_000, help="products besides the targets")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from adapters.encoder import Encoder

    encoders = {"base": Encoder.base().encode}
    for a in args.adapters:
        encoders[a.name] = Encoder.load(a).encode
    report = evaluate_encoders(dataset_from_args(args), encoders, args.targets, args.corpus, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapters.json").write_text(json.dumps(report, indent=2))
    _plot(report, args.out / "adapters.png")
    keys = ["prefix/recall@10", "prefix/recall@50", "prefix/mrr@50", "prefix/len=3/recall@10", "prefix/len=8/recall@10",
            "prefix/head/recall@10", "prefix/tail/recall@10", "phrase/recall@10", "phrase/mrr@50"]
    print("| metric | " + " | ".join(encoders) + " |")
    print("|---" * (len(encoders) + 1) + "|")
    for k in keys:
        print(f"| {k} | " + " | ".join(str(report["encoders"][n].get(k)) for n in encoders) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
