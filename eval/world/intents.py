"""What a shopper is after, how they put it into words, and how they type it.

Intent phrases come from rules of their own, kept apart from the suggestion-phrase mining in
`indexes/`, so that the evaluation cannot reward the miner for agreeing with itself:
- product: the start of the product's name as a shopper remembers it (sizes dropped, often
  without a leading "organic"), 2-4 words;
- type: the word of the name most characteristic of its aisle (tf-idf within the aisle, a
  signal the miner does not use), sometimes with the word before it, plural or not;
- brand_type: the derived brand (or the first word) with that type word;
- aisle: the aisle's name, or its most telling word.
The products that would satisfy each intent are the simulator's ground truth of relevance.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from eval.world.config import INTENT_LEVELS, WorldConfig
from suggest.text import normalize, singular
from suggest.types import Catalog

__all__ = ["Intent", "IntentModel", "typed_states"]

_SKIP = frozenset("oz fl lb lbs ct pack count pk g kg ml l each in x with and of the for a to or on by".split())
_DROPPABLE = frozenset("organic natural fresh original classic premium".split())
# Words that describe rather than name a kind of product: never a type word.
_NOT_TYPE = _DROPPABLE | frozenset("whole large small mini sweet light lite plain pure free fat low reduced "
                                   "extra all real simply baby bag bags box jar can bottle".split())
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEIGHBOURS = {c: "".join(row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)) + "".join(
    other[i] for other in _ROWS if other != row and i < len(other) and abs(_ROWS.index(other) - _ROWS.index(row)) == 1)
    for row in _ROWS for i, c in enumerate(row)}


@dataclass(frozen=True, slots=True)
class Intent:
    level: str                    # one of INTENT_LEVELS
    phrase: str                   # what the shopper means to type
    target: int                   # the product actually bought in the real data
    acceptable: frozenset[int]    # every product that would satisfy the intent (contains target)


def _content_words(name: str) -> list[str]:
    words = normalize(name.split(",")[0]).split()
    return [w for w in words if w not in _SKIP and not any(ch.isdigit() for ch in w)] or words


class IntentModel:
    def __init__(self, catalog: Catalog, cfg: WorldConfig = WorldConfig()):
        self.catalog, self.cfg = catalog, cfg
        self.words = {p.product_id: _content_words(p.name) for p in catalog.products}
        self.by_aisle: dict[int, list[int]] = defaultdict(list)
        for p in catalog.products:
            self.by_aisle[p.aisle_id].append(p.product_id)
        df: dict[int, Counter] = defaultdict(Counter)   # aisle -> word -> products holding it
        aisles_with: Counter = Counter()
        for a, ids in self.by_aisle.items():
            for pid in ids:
                df[a].update({singular(w) for w in self.words[pid]})
            aisles_with.update(df[a].keys())
        n_aisles = len(self.by_aisle)
        self._tfidf = {a: {w: (n / len(self.by_aisle[a])) * math.log(1 + n_aisles / aisles_with[w]) for w, n in c.items()}
                       for a, c in df.items()}
        self._aisle_sets = {a: frozenset(ids) for a, ids in self.by_aisle.items()}
        self._word_sets: dict[tuple[int, str], frozenset[int]] = {}
        weights = cfg.intent_level_weights
        self._levels = [lv for lv in INTENT_LEVELS if weights.get(lv, 0) > 0]
        self._weights = [weights[lv] for lv in self._levels]

    def _type_word(self, pid: int) -> tuple[int, str]:
        """Index and word of the name most characteristic of the product's aisle."""
        p, words = self.catalog.get(pid), self.words[pid]
        scores = self._tfidf[p.aisle_id]
        i = max(range(len(words)), key=lambda j: (words[j] not in _NOT_TYPE and len(words[j]) > 2,
                                                  scores.get(singular(words[j]), 0.0), j))
        return i, words[i]

    def _with_word(self, aisle: int, word: str) -> frozenset[int]:
        key = (aisle, singular(word))
        if key not in self._word_sets:
            self._word_sets[key] = frozenset(q for q in self.by_aisle[aisle]
                                             if key[1] in {singular(w) for w in self.words[q]})
        return self._word_sets[key]

    def sample(self, pid: int, reordered: bool | None, rng: random.Random) -> Intent:
        weights = [w * (self.cfg.reorder_exact_boost if reordered and lv == "product" else 1.0)
                   for lv, w in zip(self._levels, self._weights)]
        level = rng.choices(self._levels, weights)[0]
        p, words = self.catalog.get(pid), self.words[pid]
        if level == "product":
            start = 1 if len(words) > 2 and words[0] in _DROPPABLE and rng.random() < 0.5 else 0
            n = rng.choice((2, 3, 3, 4))
            return Intent(level, " ".join(words[start:start + n]), pid, frozenset((pid,)))
        i, word = self._type_word(pid)
        same_type = self._with_word(p.aisle_id, word)
        if level == "aisle":
            aisle = normalize(self.catalog.aisles[p.aisle_id])
            phrase = aisle if rng.random() < 0.5 else max(aisle.split(), key=len)
            return Intent(level, phrase, pid, self._aisle_sets[p.aisle_id])
        if rng.random() < 0.3:  # plural or singular, whichever the name did not use
            word = singular(word) if singular(word) != word else word + "s"
        if level == "brand_type":
            brand = normalize(p.brand) if p.brand else words[0]
            acceptable = frozenset(q for q in same_type
                                   if (normalize(self.catalog.get(q).brand or "") or self.words[q][0]) == brand)
            return Intent(level, f"{brand} {word}", pid, acceptable | {pid})
        phrase = f"{words[i - 1]} {word}" if i > 0 and rng.random() < 0.3 else word
        return Intent(level, phrase, pid, same_type | {pid})


def typed_states(phrase: str, rng: random.Random, typo_rate: float) -> list[str]:
    """The text in the box after each keystroke, with neighbouring-key, swap and dropped-letter typos."""
    states, typed, i = [], "", 0
    while i < len(phrase):
        ch, r = phrase[i], rng.random()
        if r < typo_rate / 3 and ch in _NEIGHBOURS:
            typed += rng.choice(_NEIGHBOURS[ch])
        elif r < 2 * typo_rate / 3 and i + 1 < len(phrase):
            typed += phrase[i + 1]
            states.append(typed)
            typed += ch
            i += 1
        elif r < typo_rate and i > 0:
            i += 1
            continue  # the letter was never typed
        else:
            typed += ch
        states.append(typed)
        i += 1
    return states
