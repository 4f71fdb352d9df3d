"""The `--data DIR | --demo` choice every evaluation script offers."""

from __future__ import annotations

import argparse
from pathlib import Path

from suggest.types import Dataset

__all__ = ["add_data_arguments", "dataset_from_args"]


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="data directory in the Instacart layout")
    src.add_argument("--demo", action="store_true", help="use the seeded demo world")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from suggest.demo import make_demo_world
    from suggest.loaders import load_data

    return load_data(args.data) if args.data else make_demo_world()
