"""The one interface every candidate source implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from indexes.phrases import PhraseTable
from suggest.types import Candidate, Dataset

__all__ = ["CandidateSource"]


@runtime_checkable
class CandidateSource(Protocol):
    """build / candidates / save / load / len, as Lucene's `Lookup` has."""

    name: str
    fallback: bool  # True: asked only when the other sources found fewer than k candidates

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset) -> "CandidateSource": ...

    def candidates(self, text: str, k: int, phrase_mask: np.ndarray | None = None,
                   user_id: int | None = None, hour: int | None = None) -> list[Candidate]:
        """Up to k candidates for the normalised text, best first, passing phrase_mask."""
        ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, table: PhraseTable) -> "CandidateSource": ...

    def __len__(self) -> int: ...
