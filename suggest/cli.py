"""`keystroke` command line: build, serve, suggest, export-demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eval._data import add_data_arguments, add_train_ranker_arguments, encoder_from_args
from suggest.errors import KeystrokeError

__all__ = ["main"]


def _dataset(args):
    from suggest.demo import make_demo_world
    from suggest.loaders import load_data

    if args.data:
        return load_data(args.data, strict=getattr(args, "strict", False))
    # build and export-demo choose the demo world's seed; elsewhere --seed seeds something else
    return make_demo_world(seed=args.demo_seed) if hasattr(args, "demo_seed") else make_demo_world()


def cmd_build(args) -> int:
    from suggest.artifact import build_artifact

    data = _dataset(args)
    embed, encoder = encoder_from_args(args)
    path = build_artifact(data, args.out, progress=not args.quiet, embed=embed, encoder=encoder)
    manifest = json.loads((path / "manifest.json").read_text())
    print(f"built {manifest['id']} in {manifest['build_seconds']}s: {json.dumps(manifest['counts'])}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from suggest.app import create_app
    from suggest.artifact import load_artifact
    from ranking.rules import load_rules
    from suggest.pipeline import Pipeline, prior_scorer
    from suggest.policy import load_policy

    # One request runs on one core: intra-op threads of torch / faiss only contend with the other
    # requests (on two shared cores a 2-thread query embedding took 417 ms instead of 7).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Loaded (and verified) once, before binding the port: a bad artifact is refused at start.
    artifact = load_artifact(args.artifact, adapter=args.adapter)
    scorer = prior_scorer
    if args.ranker:
        from suggest.scoring import load_scorer

        scorer = load_scorer(args.ranker, args.objectives, args.arm, args.redis_url, artifact)
    policies = load_policy(args.policy) if args.policy else None
    rules = load_rules(args.rules) if args.rules else None
    pipeline = Pipeline.from_artifact(artifact, scorer=scorer, cache_size=args.cache_size, policies=policies,
                                      rules=rules)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(1)
    loop, http = ("uvloop", "httptools") if sys.platform != "win32" else ("auto", "auto")
    uvicorn.run(create_app(pipeline=pipeline, events_dir=args.events_dir), host=args.host, port=args.port, loop=loop, http=http,
                access_log=False, log_level=args.log_level)
    return 0


def cmd_publish_features(args) -> int:
    import redis

    from ranking.feature_store import load_store, publish

    version = publish(load_store(args.ranker / "store"), redis.Redis.from_url(args.redis_url))
    print(f"published feature store {version} from {args.ranker / 'store'} to {args.redis_url}")
    return 0


def cmd_suggest(args) -> int:
    from suggest.artifact import load_artifact
    from suggest.pipeline import Pipeline

    pipeline = Pipeline.from_artifact(load_artifact(args.artifact))
    query = pipeline.make_query(args.text, args.k, args.user_id, args.department, args.aisle, args.store, args.hour)
    for s in pipeline.suggest(query):
        print(f"{s.score:10.6f}  {s.text:<50}  {','.join(s.sources):<14} {list(s.product_ids[:3])}")
    return 0


def cmd_train_adapter(args) -> int:
    from adapters.lora import AdapterConfig, train_adapter_on_data
    from eval.split import split_dataset

    split = split_dataset(_dataset(args), seed=args.seed)  # pairs come from the training split only
    config = AdapterConfig(max_steps=args.max_steps, seed=args.seed)
    path = train_adapter_on_data(split.train, args.out, config)
    print(f"adapter saved to {path}: {(path / 'card.json').read_text()}")
    return 0


def cmd_train_ranker(args) -> int:
    from eval.train_ranker import run

    return run(args)


def cmd_simulate(args) -> int:
    from eval.world.config import WorldConfig
    from eval.world.simulate import build_world, simulate

    if args.sessions < 1:
        raise SystemExit("keystroke simulate: error: --sessions must be >= 1")
    args.out.mkdir(parents=True, exist_ok=True)
    # The world (business data, who is held out) has its own seed: logs of training and held-out
    # users must come from one world, or the test users are not held out and prices differ.
    world = build_world(_dataset(args), WorldConfig(), seed=args.world_seed)
    summary = simulate(world, args.policy, args.sessions, seed=args.seed, split=args.split, out=args.out,
                       workers=args.workers)
    print(json.dumps({k: v for k, v in summary.items() if k != "purchase_aisles"}, indent=2))
    return 0


def cmd_export_demo(args) -> int:
    from suggest.demo import make_demo_world
    from suggest.loaders import write_data

    print(write_data(make_demo_world(seed=args.seed), args.out))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keystroke", description="Search autosuggest and ranking for grocery")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build an index artifact")
    add_data_arguments(b)
    b.add_argument("--seed", dest="demo_seed", type=int, default=7, help="demo world seed")
    b.add_argument("--strict", action="store_true", help="reject malformed rows instead of skipping them")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--quiet", action="store_true")
    b.add_argument("--vector", action="store_true", help="add embedding recall with the base encoder")
    b.add_argument("--adapter", help="add embedding recall with this LoRA adapter (name or folder)")
    b.add_argument("--adapters-dir", type=Path, default=Path("artifacts/adapters"), help="where named adapters live")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("serve", help="serve an artifact over HTTP")
    s.add_argument("--artifact", type=Path, required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    s.add_argument("--log-level", default="info")
    s.add_argument("--adapter", help="serve with this adapter; the artifact must have been built with it")
    s.add_argument("--cache-size", type=int, default=20_000,
                   help="anonymous answers kept in an LRU (0 turns the cache off)")
    s.add_argument("--events-dir", type=lambda v: Path(v) if v else None, default=Path("logs/events"),
                   help="durable log of POST /v1/events (default logs/events; '' turns events off)")
    s.add_argument("--ranker", type=Path, help="order suggestions with this trained ranker (keystroke train-ranker)")
    s.add_argument("--objectives", type=Path, help="TOML file of objective weights per surface and arm")
    s.add_argument("--arm", help="the experiment arm of the objectives file this replica serves")
    s.add_argument("--policy", type=Path, help="TOML file of constraints and exploration per surface")
    s.add_argument("--rules", type=Path, help="TOML file of merchandising rules: pins, boosts, blocks")
    s.add_argument("--redis-url", help="read features from this Redis (keystroke publish-features) "
                                       "instead of the ranker's snapshot")
    s.set_defaults(func=cmd_serve)

    f = sub.add_parser("publish-features", help="copy a ranker's feature store into Redis for every replica")
    f.add_argument("--ranker", type=Path, required=True)
    f.add_argument("--redis-url", required=True)
    f.set_defaults(func=cmd_publish_features)

    q = sub.add_parser("suggest", help="print suggestions for a typed text")
    q.add_argument("artifact", type=Path)
    q.add_argument("text", nargs="?", default="")
    q.add_argument("-k", type=int, default=10)
    q.add_argument("--user-id", type=int)
    q.add_argument("--department")
    q.add_argument("--aisle")
    q.add_argument("--store")
    q.add_argument("--hour", type=int)
    q.set_defaults(func=cmd_suggest)

    m = sub.add_parser("simulate", help="simulate logged sessions in the interaction world (eval/WORLD.md)")
    add_data_arguments(m)
    m.add_argument("--sessions", type=int, required=True)
    m.add_argument("--policy", default="plackett-luce", choices=("popularity", "epsilon-greedy", "plackett-luce", "uniform"))
    m.add_argument("--split", default="train", choices=("train", "test"), help="whose sessions: training or held-out users")
    m.add_argument("--seed", type=int, default=0, help="seed of the sessions")
    m.add_argument("--world-seed", type=int, default=0, help="seed of the world: business data and the train/test split")
    m.add_argument("--workers", type=int, default=1, help="parallel seeded shards (one events file each)")
    m.add_argument("--strict", action="store_true")
    m.add_argument("--out", type=Path, required=True, help="log folder (events-*.jsonl.gz, manifest.json)")
    m.set_defaults(func=cmd_simulate)

    t = sub.add_parser("train-adapter", help="train a LoRA adapter of the encoder on the training split")
    add_data_arguments(t)
    t.add_argument("--out", type=Path, required=True, help="adapter folder, e.g. artifacts/adapters/v1")
    t.add_argument("--max-steps", type=int, default=600)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--strict", action="store_true")
    t.set_defaults(func=cmd_train_adapter)

    r = sub.add_parser("train-ranker", help="train the multi-task ranker on simulated or real logs")
    add_train_ranker_arguments(r)
    r.set_defaults(func=cmd_train_ranker)

    e = sub.add_parser("export-demo", help="write the demo world as CSV files in the Instacart layout")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--seed", type=int, default=7)
    e.set_defaults(func=cmd_export_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeystrokeError, ValueError) as e:  # bad input or config: a message, not a traceback
        print(f"keystroke: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
