"""Whole-phrase and any-word prefix sources ("yog" finds "greek yogurt", as Lucene's infix suggester)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexes._ranges import SortedKeys
from indexes.phrases import PhraseTable
from suggest.types import Candidate, Dataset

__all__ = ["PrefixSource", "InfixSource"]

INFIX_DISCOUNT = 0.25  # a match inside the phrase is weaker evidence than one at its start


class PrefixSource:
    name = "prefix"
    fallback = False
    discount = 1.0

    def __init__(self, table: PhraseTable, keys: SortedKeys):
        self.table, self.keys = table, keys

    @staticmethod
    def _entries(table: PhraseTable) -> list[tuple[str, int, int]]:
        return [(text, i, 0) for i, text in enumerate(table.texts)]

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset | None = None):
        return cls(table, SortedKeys.build(cls._entries(table)))

    def candidates(self, text, k, phrase_mask=None, user_id=None, hour=None) -> list[Candidate]:
        if not text:
            return []
        idx = self.keys.top(text, k, phrase_mask)
        phrases = self.keys.phrase[idx]
        priors = (self.table.priors[phrases] * self.discount).tolist()
        n, name = len(text), self.name
        return [Candidate(p, name, prior, ((start, start + n),))
                for p, prior, start in zip(phrases.tolist(), priors, self.keys.offset[idx].tolist())]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.keys.save(directory, self.name)

    @classmethod
    def load(cls, directory: Path, table: PhraseTable):
        return cls(table, SortedKeys.load(directory, cls.name))

    def __len__(self) -> int:
        return len(self.keys)


class InfixSource(PrefixSource):
    """Prefix matches that start at any word after the first (the first word is PrefixSource's)."""

    name = "infix"
    discount = INFIX_DISCOUNT

    @staticmethod
    def _entries(table: PhraseTable) -> list[tuple[str, int, int]]:
        out = []
        for i, text in enumerate(table.texts):
            start = text.find(" ")
            while start >= 0:
                out.append((text[start + 1:], i, start + 1))
                start = text.find(" ", start + 1)
        return out
