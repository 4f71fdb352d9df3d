"""The `--data DIR | --demo` choice every evaluation script offers."""

from __future__ import annotations

import argparse
from pathlib import Path

from suggest.types import Dataset

__all__ = ["add_data_arguments", "dataset_from_args", "add_train_ranker_arguments", "encoder_from_args"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="data directory in the Instacart layout")
    src.add_argument("--demo", action="store_true", help="use the seeded demo world")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from suggest.demo import make_demo_world
    from suggest.loaders import load_data

    return load_data(args.data) if args.data else make_demo_world()


def encoder_from_args(args: argparse.Namespace) -> tuple:
    """(embed, description) for --vector / --adapter NAME (with --adapters-dir), or (None, None)."""
    if not (args.vector or args.adapter):
        return None, None
    from adapters.registry import load_encoder  # torch only when an encoder is asked for

    return load_encoder(args.adapter, args.adapters_dir)


def add_train_ranker_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `keystroke train-ranker` and `python -m eval.train_ranker` (kept here: no torch import)."""
    add_data_arguments(p)
    p.add_argument("--logs", type=Path, required=True, help="training logs (keystroke simulate --split train)")
    p.add_argument("--test-logs", type=Path, help="held-out users' logs (keystroke simulate --split test)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--architecture", default="shared_bottom", choices=("shared_bottom", "mmoe", "ple"),
                   help="the trunk (default: ranking.model.DEFAULT_ARCHITECTURE, which says why)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="train every model once per seed and report mean and spread; the first is saved")
    p.add_argument("--ranking-logs", type=Path,
                   help="held-out logs whose lists were shown in random order (simulate --policy uniform) for the "
                        "ranking metrics, free of position bias; default: the test logs")
    p.add_argument("--calibration-logs", type=Path,
                   help="fit the calibrators on these logs (e.g. other sessions of the served population) "
                        "instead of the last 15%% of the training lists")
    p.add_argument("--config", help='RankerConfig fields as JSON, e.g. \'{"n_experts": 8, "expert_hidden": [64]}\' '
                                     '(tasks: [{"name": "margin", "kind": "regression", "weight": 0.1}, ...])')
    p.add_argument("--listwise", type=float, default=1.0,
                   help="weight of the per-list softmax loss on relevance (suggest) and purchase (search); 0: pointwise only")
    p.add_argument("--baselines", action="store_true", help="also train single-task models on the same inputs")
    enc = p.add_mutually_exclusive_group()
    enc.add_argument("--vector", action="store_true",
                     help="learn the query-candidate cosine feature with the base encoder (serve with an artifact "
                          "built with --vector)")
    enc.add_argument("--adapter", help="... with this LoRA adapter (name or folder; serve with an artifact built with it)")
    p.add_argument("--adapters-dir", type=Path, default=Path("artifacts/adapters"), help="where named adapters live")
