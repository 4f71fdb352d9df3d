"""Reporting for eval.bench_suggest: targets, markdown tables, latency histograms, machine facts."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

__all__ = ["TARGETS", "targets", "markdown", "histograms", "machine", "background_busy", "code_version"]

TARGETS = {"inprocess_trie_p99_ms": 0.2, "inprocess_all_p99_ms": 2.0, "http_c1_p99_ms": 3.0,
           "http_c32_trie_rps_vs_floor": 0.5}


def targets(inproc: dict, http_res: dict | None) -> list[dict]:
    s = inproc["summary"]
    rows = [("in-process trie p99 (ms)", s["trie"]["p99_us"] / 1e3, "<=", TARGETS["inprocess_trie_p99_ms"]),
            ("in-process all p99 (ms)", s["all"]["p99_us"] / 1e3, "<=", TARGETS["inprocess_all_p99_ms"])]
    if http_res:
        runs = http_res["runs"]
        rows += [(f"HTTP {name} c=1 p99 (ms)", runs[f"{name} c=1"]["p99_ms"], "<=", TARGETS["http_c1_p99_ms"])
                 for name in ("trie", "all") if f"{name} c=1" in runs]
        rows += [(f"HTTP {name} c=32 throughput / floor", runs[f"{name} c=32"]["rps_vs_floor"], ">=",
                  TARGETS["http_c32_trie_rps_vs_floor"]) for name in ("trie", "trie+cache") if f"{name} c=32" in runs]
    return [{"target": t, "value": round(v, 3), "goal": f"{op} {g}", "met": bool(v <= g if op == "<=" else v >= g)}
            for t, v, op, g in rows]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def markdown(report: dict) -> str:
    m, inp, h = report["machine"], report["inprocess"], report.get("http")
    w, code, busy = report["workload"], report["code"], m["background_cpu_busy"]
    out = ["# Keystroke latency benchmark\n",
           f"- artifact `{report['artifact']['id']}`: {json.dumps(report['artifact']['counts'])}",
           f"- workload: {w['n']} typed texts from {w['sessions']} seeded typing sessions over catalog product names "
           f"({w['typos']} with a typo, mean {w['mean_chars']} chars, seed {w['seed']})",
           f"- code `{code['commit']}`" + (f", uncommitted changes to {', '.join(code['modified'])}"
                                           if code["modified"] else ""),
           f"- machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}",
           f"- other load (busy share of all cpus, sampled while this benchmark idles): {json.dumps(busy)}"
           + (" — **noisy neighbours, treat tails with care**" if max(v or 0 for v in busy.values()) > 0.2 else ""),
           "\n## In-process (µs per `suggest(make_query(q, k=10))`)\n",
           _table(["config", "p50", "p95", "p99", "mean", "max", "p50 ×top", "p99 ×top", "p50 ×bisect"],
                  [[k, s["p50_us"], s["p95_us"], s["p99_us"], s["mean_us"], s["max_us"], s["p50_x_sortedkeys.top"],
                    s["p99_x_sortedkeys.top"], s["p50_x_bisect"]] for k, s in inp["summary"].items()]),
           f"\nFloors run on pre-normalised text; `source:*` is one source's `candidates` alone. "
           f"Timer overhead ≈ {inp['timer_overhead_ns']:.0f} ns per sample, included.",
           "\n## In-process by query kind (p50 / p99 µs)\n"]
    names = [k for k in inp["summary"] if k not in ("sortedkeys.top", "bisect")]
    out.append(_table(["kind", "n"] + names, [[b, next(iter(v.values()))["n"]] +
                                              [f"{v[k]['p50_us']:.0f} / {v[k]['p99_us']:.0f}" for k in names]
                                              for b, v in inp["by_bucket"].items()]))
    out += ["\n## Where `all` spends its time (cProfile, one pass, by own time)\n",
            _table(["function", "calls", "tottime ms", "cumtime ms"],
                   [[r["function"], r["calls"], r["tottime_ms"], r["cumtime_ms"]] for r in inp["profile_all"]])]
    if h:
        pin = h["pinning"]
        out += ["\n## HTTP over loopback (uvicorn + uvloop + httptools, keep-alive)\n",
                _table(["run", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "req/s vs floor",
                        "p50 − floor ms"],
                       [[k, r["requests"], r["errors"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["rps"],
                         r["rps_vs_floor"], r["p50_minus_floor_ms"]] for k, r in h["runs"].items()]),
                f"\nOne server process each, single-threaded. The load generator (asyncio raw sockets, "
                f"{next(iter(h['runs'].values()))['loop'] if h['runs'] else '?'}) is a separate process on the same "
                f"{m['nproc']}-core machine, so client and server compete for CPU: "
                + (f"servers were pinned to cpu {pin['servers']}, the load generator to cpu {pin['loadgen']}."
                   if pin["servers"] else "nothing was pinned.")
                + " Latency includes the client's own time."]
    out += ["\n## Targets (reported, not asserted)\n",
            _table(["target", "value", "goal", "met"],
                   [[t["target"], t["value"], t["goal"], "yes" if t["met"] else "**no**"] for t in report["targets"]])]
    return "\n".join(out) + "\n"


def histograms(inproc_ns: dict[str, np.ndarray], http_ms: dict[str, np.ndarray], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(ax, series: dict[str, np.ndarray], xlabel: str) -> None:
        values = np.concatenate(list(series.values()))
        bins = np.geomspace(max(values.min(), 1e-3), values.max(), 80)
        for name, v in series.items():
            ax.hist(v, bins=bins, histtype="step", label=name, linewidth=1.2)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("requests")
        ax.legend(fontsize=8)

    fig, ax = plt.subplots(figsize=(9, 5))
    draw(ax, {k: v / 1e3 for k, v in inproc_ns.items() if not k.startswith("source:")}, "latency (µs, log)")
    ax.set_title("In-process suggest latency")
    fig.tight_layout()
    fig.savefig(out / "inprocess_hist.png", dpi=120)
    plt.close(fig)
    if http_ms:
        conc = sorted({k.split("c=")[1] for k in http_ms}, key=int)
        fig, axes = plt.subplots(1, len(conc), figsize=(6 * len(conc), 5), squeeze=False)
        for ax, c in zip(axes[0], conc):
            draw(ax, {k: v for k, v in http_ms.items() if k.endswith(f"c={c}") and len(v)}, "latency (ms, log)")
            ax.set_title(f"HTTP latency, concurrency {c}")
        fig.tight_layout()
        fig.savefig(out / "http_hist.png", dpi=120)
        plt.close(fig)


def background_busy(seconds: float = 1.0) -> float | None:
    """Busy share of all cpus over a second while this benchmark idles: other tenants' load."""
    def read() -> list[int]:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    try:
        a = read()
        time.sleep(seconds)
        b = read()
    except OSError:
        return None
    d = [y - x for x, y in zip(a, b)]
    idle = d[3] + (d[4] if len(d) > 4 else 0)  # idle + iowait
    return round(1 - idle / max(1, sum(d)), 3)


def code_version(root: Path) -> dict:
    """The commit measured, and which tracked files differed from it: numbers belong to code."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout
    try:
        return {"commit": git("rev-parse", "--short", "HEAD").strip(),
                "modified": [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()]}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": []}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform()}
