"""The servers the HTTP benchmark runs beside `keystroke serve`: a do-nothing floor and a trie-only Keystroke.

    python -m eval._servers floor --port P
    python -m eval._servers trie --artifact ART --port P

Both are served exactly as `keystroke serve` serves (uvicorn, uvloop + httptools, no access log),
so the only difference between the three is the work behind `/v1/suggest`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from litestar import Litestar, get

from suggest.artifact import Artifact

__all__ = ["app", "prefix_only", "main"]

_FLOOR_BODY = ["banana", "organic banana", "bag of organic bananas"]


# Same path as the real handler, and it ignores the query string, so one request list drives all three.
@get("/v1/suggest", sync_to_thread=False)
def _floor() -> list[str]:
    return _FLOOR_BODY


app = Litestar(route_handlers=[_floor])


def prefix_only(artifact: Artifact) -> Artifact:
    """The artifact with only its whole-phrase prefix source: the "trie path"."""
    prefix = next(s for s in artifact.sources if s.name == "prefix")
    return dataclasses.replace(artifact, sources=(prefix,))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval._servers", description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("floor", "trie"))
    p.add_argument("--artifact", help="artifact to serve (trie only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log-level", default="warning")
    p.add_argument("--cache-size", type=int, default=0)
    args = p.parse_args(argv)
    if args.kind == "trie" and not args.artifact:
        p.error("trie needs --artifact")

    import uvicorn

    target = app
    if args.kind == "trie":
        from suggest.app import create_app
        from suggest.artifact import load_artifact
        from suggest.pipeline import Pipeline

        artifact = prefix_only(load_artifact(args.artifact))
        target = create_app(pipeline=Pipeline.from_artifact(artifact, cache_size=args.cache_size))
    uvicorn.run(target, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
