"""Keystroke latency benchmark: in-process per configuration, and over HTTP beside a do-nothing floor.

    python -m eval.bench_suggest --data ../shared/data/instacart --out reports/bench
    python -m eval.bench_suggest --demo --out reports/bench-demo [--artifact PATH] [--requests N]

Writes bench.json (every number, machine info), bench.md (the tables, also printed),
inprocess_hist.png and http_hist.png to --out. Targets are reported, never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import os
import pstats
import random
import socket
import subprocess
import sys
import time
from bisect import bisect_left
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import urlencode

import numpy as np
from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from eval._bench_report import TARGETS, background_busy, code_version, histograms, machine, markdown, targets
from eval._loadgen import HOST
from eval._servers import prefix_only
from suggest.artifact import build_artifact, load_artifact
from suggest.pipeline import Pipeline
from suggest.text import normalize

__all__ = ["main", "make_workload", "bench_inprocess", "bench_http", "TARGETS"]

ROOT = Path(__file__).resolve().parents[1]
_BUCKETS = ("empty", "1-2", "3-4", "5-7", "8-12", "13+", "typo")


def make_workload(names: Sequence[str], n: int = 5000, seed: int = 0, max_chars: int = 20,
                  typo_rate: float = 0.2) -> list[tuple[str, bool]]:
    """(typed text, is typo) for seeded typing sessions: the empty box, every prefix, some slips."""
    rng = random.Random(seed)
    pool = sorted({t for t in (normalize(x) for x in names) if t})
    out: list[tuple[str, bool]] = []
    while len(out) < n:
        name = rng.choice(pool)[:max_chars]
        out.append(("", False))  # focusing the box asks for zero-prefix suggestions before any key
        for j in range(1, len(name) + 1):
            prefix = name[:j]
            out.append((prefix, False))
            if j >= 5 and rng.random() < typo_rate:
                i = rng.randrange(1, j - 1)  # first letters are rarely wrong
                slip = (prefix[:i] + prefix[i + 1] + prefix[i] + prefix[i + 2:] if rng.random() < 0.5
                        else prefix[:i] + prefix[i + 1:])
                if slip != prefix:
                    out.append((slip, True))
    return out[:n]


def _bucket(text: str, typo: bool) -> str:
    if typo:
        return "typo"
    n = len(text)
    return "empty" if n == 0 else "1-2" if n <= 2 else "3-4" if n <= 4 else "5-7" if n <= 7 else \
        "8-12" if n <= 12 else "13+"


def _summary_us(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1e3
    p50, p95, p99 = np.percentile(us, [50, 95, 99])
    return {"n": int(len(us)), "p50_us": round(float(p50), 2), "p95_us": round(float(p95), 2),
            "p99_us": round(float(p99), 2), "mean_us": round(float(us.mean()), 2), "max_us": round(float(us.max()), 2)}


def _time_calls(configs: dict[str, tuple[Callable[[str], object], list[str]]], chunk: int = 250
                ) -> dict[str, np.ndarray]:
    """ns per call of each config over its texts; chunks rotate through the configs, so a burst of
    outside load lands on all of them rather than on whichever happened to be running."""
    for fn, texts in configs.values():  # warm-up: lazy priors, lru caches, the allocator's free lists
        for t in texts:
            fn(t)
    gc.collect()
    n = len(next(iter(configs.values()))[1])
    clock = time.perf_counter_ns
    out = {name: np.empty(n, np.int64) for name in configs}  # (n_queries,) int64 ns each
    for lo in tqdm(range(0, n, chunk), desc="in-process", unit="chunk", file=sys.stderr):
        for name, (fn, texts) in configs.items():
            times = out[name]
            for i in range(lo, min(n, lo + chunk)):
                t = texts[i]
                t0 = clock()
                fn(t)
                times[i] = clock() - t0
    return out


def _configs(artifact) -> dict[str, Callable[[str], object]]:
    trie, full = Pipeline.from_artifact(prefix_only(artifact)), Pipeline.from_artifact(artifact)
    keys = trie.sources[0].keys
    hour = time.localtime().tm_hour
    configs: dict[str, Callable[[str], object]] = {
        "trie": lambda q: trie.suggest(trie.make_query(q, k=10)),
        "all": lambda q: full.suggest(full.make_query(q, k=10)),
        # Floors, on pre-normalised text: the data-structure lookup alone, and one Python bisection.
        "sortedkeys.top": lambda t: keys.top(t, 10) if t else None,  # PrefixSource skips "" the same way
        "bisect": lambda t: bisect_left(keys.keys, t),
    }
    for s in full.sources:  # each source alone: which one "all" pays for
        configs[f"source:{s.name}"] = lambda t, s=s: s.candidates(t, 10, None, None, hour)
    return configs


def _profile(fn: Callable[[str], object], texts: list[str], top: int = 15) -> list[dict]:
    prof = cProfile.Profile()
    prof.runcall(lambda: [fn(t) for t in texts])
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (prim calls, calls, tottime, cumtime, callers)
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]

    def label(file: str, line: int, name: str) -> str:
        short = file.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        return f"{short}:{line} {name}" if line else name

    return [{"function": label(*k), "calls": v[1], "tottime_ms": round(v[2] * 1e3, 1),
             "cumtime_ms": round(v[3] * 1e3, 1)} for k, v in rows]


def bench_inprocess(artifact, workload: list[tuple[str, bool]]) -> dict:
    """Per-call latency of each configuration over the same workload, side by side in one process."""
    raw = [t for t, _ in workload]
    normed = [normalize(t) for t in raw]
    configs = _configs(artifact)
    timings = _time_calls({name: (fn, raw if name in ("trie", "all") else normed) for name, fn in configs.items()})
    clock = time.perf_counter_ns
    overhead = np.median([-clock() + clock() for _ in range(10000)])
    summary = {name: _summary_us(ns) for name, ns in timings.items()}
    for name, s in summary.items():
        for base in ("sortedkeys.top", "bisect"):
            for q in ("p50", "p99"):
                s[f"{q}_x_{base}"] = round(s[f"{q}_us"] / summary[base][f"{q}_us"], 1)
    buckets = np.array([_bucket(t, typo) for t, typo in workload])
    by_bucket = {b: {name: _summary_us(ns[buckets == b]) for name, ns in timings.items()}
                 for b in _BUCKETS if (buckets == b).any()}
    return {"summary": summary, "by_bucket": by_bucket, "timer_overhead_ns": float(overhead),
            "profile_all": _profile(configs["all"], raw), "_timings": timings}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _wait_ready(proc: subprocess.Popen, port: int, path: str, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if _get(port, path, timeout=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s; see {log}")


def _loadgen(port: int, paths: list[str], concurrency: int, n: int, cpus: set[int] | None) -> dict:
    timeout = 30 + n * 0.01  # 10 ms a request is far beyond any sane result: something hangs
    cmd = [sys.executable, "-m", "eval._loadgen", "--port", str(port), "--concurrency", str(concurrency),
           "--requests", str(n), "--warmup", str(min(1000, n // 10)), "--timeout", str(timeout)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    try:
        out, err = proc.communicate("\n".join(paths), timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"load generator timed out after {timeout + 10:.0f}s")
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}):\n{err[-2000:]}")
    return json.loads(out)


def bench_http(artifact_path: Path, workload: list[tuple[str, bool]], out: Path,
               runs: Sequence[tuple[int, int]] = ((1, 5000), (32, 20000)), pin: bool = False) -> dict:
    """p50/p95/p99 and throughput over loopback for the floor, trie-only and full servers."""
    py, art = sys.executable, str(artifact_path)
    servers = {  # name -> (argv without the port, readiness path)
        "floor": ([py, "-m", "eval._servers", "floor"], "/v1/suggest"),
        "trie": ([py, "-m", "eval._servers", "trie", "--artifact", art, "--cache-size", "0"], "/readyz"),
        "all": ([py, "-m", "suggest.cli", "serve", "--artifact", art, "--cache-size", "0"], "/readyz"),
        # As deployed: the LRU of anonymous answers on (the workload repeats short prefixes, as traffic does)
        "trie+cache": ([py, "-m", "eval._servers", "trie", "--artifact", art, "--cache-size", "20000"], "/readyz"),
        "all+cache": ([py, "-m", "suggest.cli", "serve", "--artifact", art], "/readyz"),
    }
    # Opt-in: on a 2-vCPU VM pinning made both c=1 and c=32 slower (cross-core wake-ups, and a pinned
    # process cannot dodge other load), so by default the scheduler places client and servers.
    ncpu = len(os.sched_getaffinity(0))
    server_cpus, client_cpus = ({0}, {1}) if pin and ncpu >= 2 else (None, None)
    paths = [f"/v1/suggest?{urlencode({'q': t, 'k': 10})}" for t, _ in workload]
    procs: dict[str, subprocess.Popen] = {}
    ports: dict[str, int] = {}
    logs = []
    results: dict = {"pinning": {"servers": sorted(server_cpus or ()), "loadgen": sorted(client_cpus or ())},
                     "runs": {}, "checks": {}}
    latencies: dict[str, np.ndarray] = {}
    try:
        for name, (argv, _) in servers.items():
            ports[name] = _free_port()
            logs.append((out / f"server-{name}.log").open("w"))
            procs[name] = subprocess.Popen(argv + ["--port", str(ports[name]), "--log-level", "warning"], cwd=ROOT,
                                           stdout=subprocess.DEVNULL, stderr=logs[-1])
            if server_cpus:
                os.sched_setaffinity(procs[name].pid, server_cpus)
        for name, (_, ready) in servers.items():
            _wait_ready(procs[name], ports[name], ready, out / f"server-{name}.log")
            status, body = _get(ports[name], "/v1/suggest?q=ban&k=10")
            n = len(json.loads(body)) if name == "floor" else len(json.loads(body)["suggestions"])
            results["checks"][name] = {"status": status, "items_for_ban": n}
        plan = [(c, n, name) for c, n in runs for name in servers]
        for c, n, name in tqdm(plan, desc="http", unit="run", file=sys.stderr):
            r = _loadgen(ports[name], paths, c, n, client_cpus)
            ms = np.array(r.pop("latency_ns"), dtype=np.float64) / 1e6
            latencies[f"{name} c={c}"] = ms
            p50, p95, p99 = np.percentile(ms, [50, 95, 99]) if len(ms) else (np.nan,) * 3
            results["runs"][f"{name} c={c}"] = {
                "server": name, "concurrency": c, "requests": n, "ok": int(r["statuses"].get("200", 0)),
                "errors": r["errors"], "statuses": r["statuses"], "seconds": round(r["seconds"], 3),
                "rps": round(len(ms) / r["seconds"], 1), "p50_ms": round(float(p50), 3),
                "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3),
                "mean_ms": round(float(ms.mean()), 3), "loop": r["loop"]}
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    for key, r in results["runs"].items():
        floor = results["runs"][f"floor c={r['concurrency']}"]
        r["rps_vs_floor"] = round(r["rps"] / floor["rps"], 3)
        r["p50_minus_floor_ms"] = round(r["p50_ms"] - floor["p50_ms"], 3)
    results["_latencies"] = latencies
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.bench_suggest", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--artifact", type=Path, help="reuse this artifact, or build it here (default: build OUT/artifact afresh)")
    p.add_argument("--queries", type=int, default=5000, help="size of the typed-prefix workload")
    p.add_argument("--requests", type=int, default=5000, help="HTTP requests at concurrency 1")
    p.add_argument("--concurrent-requests", type=int, help="HTTP requests at --concurrency (default 4 × --requests)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-http", action="store_true", help="in-process only")
    p.add_argument("--pin", action="store_true", help="pin servers to cpu 0 and the load generator to cpu 1")
    args = p.parse_args(argv)
    if min(args.queries, args.requests, args.concurrency) < 1:
        p.error("--queries, --requests and --concurrency must be positive")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    code = code_version(ROOT)  # at start: what this process and the servers import
    background = {"start": background_busy()}
    data = dataset_from_args(args)
    artifact_path = (args.artifact or out / "artifact").resolve()
    if args.artifact is None or not (artifact_path / "manifest.json").is_file():  # only --artifact is reused
        build_artifact(data, artifact_path)
    artifact = load_artifact(artifact_path)
    workload = make_workload([pr.name for pr in data.catalog.products], args.queries, args.seed)

    inproc = bench_inprocess(artifact, workload)
    inproc_ns = inproc.pop("_timings")
    http_res, http_ms = None, {}
    if not args.no_http:
        background["before_http"] = background_busy()
        runs = ((1, args.requests), (args.concurrency, args.concurrent_requests or 4 * args.requests))
        http_res = bench_http(artifact_path, workload, out, runs, pin=args.pin)
        http_ms = http_res.pop("_latencies")
    background["end"] = background_busy()
    report = {
        "machine": {**machine(), "background_cpu_busy": background},
        "code": code,
        "artifact": {"id": artifact.id, "path": str(artifact_path), "counts": artifact.manifest["counts"]},
        "workload": {"n": len(workload), "seed": args.seed, "sessions": sum(t == "" for t, _ in workload),
                     "typos": sum(typo for _, typo in workload),
                     "mean_chars": round(float(np.mean([len(t) for t, _ in workload])), 2)},
        "inprocess": inproc, "http": http_res, "targets": targets(inproc, http_res),
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    md = markdown(report)
    (out / "bench.md").write_text(md)
    histograms(inproc_ns, http_ms, out)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
