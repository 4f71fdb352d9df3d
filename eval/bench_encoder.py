"""Encoder speed and the quality each speed-up costs.

    python -m eval.bench_encoder --data ../shared/data/instacart --out reports/encoder [--adapter DIR]

For the base model (or an adapter merged into it), three ways to run it side by side in one
process: eager (autograd on, default threads), `torch.inference_mode` with threads set to the
cores, and dynamic int8 quantisation of the linear layers. Reports batch-1 latency of one short
prefix (p50/p95/p99) and build throughput (texts/s at batch 64), and the quality cost against the
eager embeddings: mean cosine, and the overlap of each prefix's top-10 products.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from indexes.vector import product_text
from suggest.text import normalize

__all__ = ["main"]


def _variants(encoder):
    """name -> encode(texts, batch_size) for each way of running the same weights."""
    from adapters.encoder import Encoder

    def eager(texts, batch):  # autograd on, as a plain forward pass would run
        out = [encoder.embed(texts[i:i + batch]).detach().numpy() for i in range(0, len(texts), batch)]
        return np.concatenate(out)

    quantised = Encoder(torch.ao.quantization.quantize_dynamic(copy.deepcopy(encoder.model), {torch.nn.Linear},
                                                               dtype=torch.qint8), encoder.tokenizer)
    return {"eager": eager, "inference_mode": encoder.encode, "int8": quantised.encode}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench_encoder", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--adapter", type=Path, help="a saved LoRA adapter (default: the base model)")
    p.add_argument("--prefixes", type=int, default=300)
    p.add_argument("--products", type=int, default=2000, help="texts for the throughput and quality runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from adapters.encoder import Encoder

    encoder = Encoder.load(args.adapter) if args.adapter else Encoder.base()
    data = dataset_from_args(args)
    rng = random.Random(args.seed)
    products = rng.sample(list(data.catalog.products), min(args.products, len(data.catalog)))
    texts = [product_text(x.name, data.catalog.aisles[x.aisle_id]) for x in products]
    prefixes = [normalize(x.name)[: rng.randint(3, 10)] for x in rng.sample(products, min(args.prefixes, len(products)))]
    threads = len(os.sched_getaffinity(0))  # the cores this process may use (cpu_count says the host)
    results, reference, ref_top = {}, None, None
    default_threads = torch.get_num_threads()
    for name, encode in _variants(encoder).items():
        torch.set_num_threads(default_threads if name == "eager" else threads)
        encode(prefixes[:20], 1)  # warm-up
        lat = []
        for q in tqdm(prefixes, desc=f"{name} batch 1", file=sys.stderr, leave=False):
            t = time.perf_counter_ns()
            encode([q], 1)
            lat.append((time.perf_counter_ns() - t) / 1e6)
        t = time.perf_counter()
        product_vecs = encode(texts, 64)
        throughput = len(texts) / (time.perf_counter() - t)
        prefix_vecs = encode(prefixes, 64)
        top = np.argsort(-(prefix_vecs @ product_vecs.T), axis=1)[:, :10]
        if reference is None:
            reference, ref_top = (prefix_vecs, product_vecs), top
        cos = float(np.mean(np.sum(product_vecs * reference[1], axis=1)))
        overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top)]))
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        results[name] = {"batch1_p50_ms": round(p50, 3), "batch1_p95_ms": round(p95, 3), "batch1_p99_ms": round(p99, 3),
                         "texts_per_s": round(throughput, 1), "cosine_vs_eager": round(cos, 5),
                         "top10_overlap_vs_eager": round(overlap, 4)}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"encoder": str(args.adapter or "base"), "threads": threads, "torch": torch.__version__,
              "prefixes": len(prefixes), "texts": len(texts), "variants": results}
    (args.out / "encoder.json").write_text(json.dumps(report, indent=2))
    header = "| variant | batch-1 p50 ms | p95 | p99 | texts/s (batch 64) | cosine vs eager | top-10 overlap |"
    rows = [f"| {n} | {r['batch1_p50_ms']} | {r['batch1_p95_ms']} | {r['batch1_p99_ms']} | {r['texts_per_s']} | "
            f"{r['cosine_vs_eager']} | {r['top10_overlap_vs_eager']} |" for n, r in results.items()]
    table = "\n".join([header, "|---" * 7 + "|", *rows])
    (args.out / "encoder.md").write_text(f"# Encoder speed ({report['encoder']}, {threads} threads)\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
