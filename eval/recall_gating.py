"""How often embedding recall runs, and how often its prefix-embedding cache answers.

    python -m eval.recall_gating --artifact ARTIFACT_WITH_VECTORS --data DIR|--demo [--sessions 2000]

Replays simulated typing sessions (the interaction world's intents and typos, eval.world.intents)
of held-out users' purchases through the pipeline, keystroke by keystroke, and reports the share
of keystrokes on which the vector source was asked (it is a fallback: only when the exact sources
found fewer than k), the LRU hit rate of its query embeddings, and the share of shown suggestions
that came from it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tqdm import tqdm

from eval._data import add_data_arguments, dataset_from_args
from eval.split import split_dataset
from eval.world.intents import IntentModel, typed_states
from suggest.artifact import load_artifact
from suggest.pipeline import Pipeline

__all__ = ["replay", "main"]


def replay(pipeline: Pipeline, data, sessions: int, seed: int = 0, typo_rate: float = 0.03, progress: bool = True) -> dict:
    vector = next(s for s in pipeline.sources if s.name == "vector")
    split = split_dataset(data, seed=seed)
    rng = random.Random(seed)
    lines = [(o.user_id, p) for o in split.targets for p in o.product_ids]
    intents = IntentModel(data.catalog)
    keystrokes = asked = shown = from_vector = 0
    start = vector.cache_info()
    for user, pid in tqdm(rng.sample(lines, min(sessions, len(lines))), desc="replay", file=sys.stderr,
                          disable=not progress):
        for text in typed_states(intents.sample(pid, False, rng).phrase, rng, typo_rate):
            before = vector.cache_info()
            got = pipeline.suggest(pipeline.make_query(text, 10, user))
            after = vector.cache_info()
            keystrokes += 1
            asked += (after.hits + after.misses) > (before.hits + before.misses)
            shown += len(got)
            from_vector += sum("vector" in s.sources for s in got)
    end = vector.cache_info()
    hits, misses = end.hits - start.hits, end.misses - start.misses
    return {"sessions": min(sessions, len(lines)), "keystrokes": keystrokes,
            "vector_asked_share": round(asked / max(keystrokes, 1), 4),
            "cache_hit_rate": round(hits / max(hits + misses, 1), 4),
            "shown_from_vector_share": round(from_vector / max(shown, 1), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.recall_gating", description=__doc__.splitlines()[0])
    add_data_arguments(p)
    p.add_argument("--artifact", type=Path, required=True, help="an artifact built with --vector or --adapter")
    p.add_argument("--sessions", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    pipeline = Pipeline.from_artifact(load_artifact(args.artifact))
    report = replay(pipeline, dataset_from_args(args), args.sessions, args.seed)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recall_gating.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
