"""The request path: Query -> candidates from every source -> merge -> score -> top-k Suggestions."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from indexes.base import CandidateSource
from indexes.phrases import SHOWN_PRODUCTS, PhraseTable
from ranking.rules import Rules
from suggest.errors import InvalidQuery
from suggest.policy import PolicyLayer, SurfacePolicy
from suggest.search import SearchPipeline
from suggest.text import has_control_chars, normalize
from suggest.types import Candidate, ContextFilter, Query, Suggestion

__all__ = ["Pipeline", "Merged", "Scorer", "prior_scorer", "MAX_K", "MAX_QUERY_CHARS", "PRODUCTS_PER_SUGGESTION"]

MAX_K = 50
MAX_QUERY_CHARS = 200
CACHE_REFRESH_SECONDS = 60.0
PRODUCTS_PER_SUGGESTION = SHOWN_PRODUCTS


@dataclass(frozen=True, slots=True)
class Merged:
    """One phrase after merging what every source said about it."""

    phrase_id: int
    prior: float
    sources: tuple[str, ...]
    highlight: tuple[tuple[int, int], ...]
    edits: int


Scorer = Callable[[Query, PhraseTable, Sequence[Merged]], np.ndarray]


def prior_scorer(query: Query, table: PhraseTable, merged: Sequence[Merged]) -> np.ndarray:
    """The popularity prior, discounted by match quality; the ranker replaces it behind this seam."""
    return np.array([m.prior for m in merged], dtype=np.float32)  # (n_candidates,)


def _merge(candidates: list[Candidate]) -> list[Merged]:
    """One Merged per phrase: the best prior and its highlight, every source that found it."""
    out: dict[int, Merged] = {}
    for c in candidates:
        m = out.get(c.phrase_id)
        if m is None:
            out[c.phrase_id] = Merged(c.phrase_id, c.prior, (c.source,), c.highlight, c.edits)
        else:
            best = c if c.prior > m.prior else m
            sources = m.sources if c.source in m.sources else m.sources + (c.source,)
            highlight = best.highlight or c.highlight or m.highlight  # vector matches mark nothing
            out[c.phrase_id] = Merged(c.phrase_id, best.prior, sources, highlight, min(m.edits, c.edits))
    return list(out.values())


class Pipeline:
    def __init__(self, table: PhraseTable, sources: Sequence[CandidateSource], artifact_id: str = "",
                 departments: dict[int, str] | None = None, aisles: dict[int, str] | None = None,
                 stores: Sequence[str] = (), scorer: Scorer = prior_scorer, cache_size: int = 0,
                 policy: PolicyLayer | None = None):
        self.table, self.sources, self.artifact_id, self.scorer = table, tuple(sources), artifact_id, scorer
        # The policy layer (constraints, rules, exploration); None: top-k by score, as fast as it gets.
        self.policy = policy
        self._explores = policy is not None and policy.policies["suggest"].exploration is not None
        self.search: SearchPipeline | None = None  # set by from_artifact: the other surface
        # Anonymous answers depend only on (text, k, context, hour), and shoppers type the same
        # short prefixes all day: an LRU of them saves the head of the traffic. Personal ones bypass it.
        self._cached = lru_cache(maxsize=cache_size)(self._compute) if cache_size > 0 else None
        self._cache_cleared_at = float("-inf")
        self._primary = tuple(s for s in self.sources if not s.fallback)
        self._fallback = tuple(s for s in self.sources if s.fallback)
        self.departments, self.aisles, self.stores = departments or {}, aisles or {}, frozenset(stores)
        self._department_by_name = {normalize(v): k for k, v in self.departments.items()}
        self._aisle_by_name = {normalize(v): k for k, v in self.aisles.items()}

    @classmethod
    def from_artifact(cls, artifact, scorer: Scorer = prior_scorer, cache_size: int = 0,
                      policies: dict[str, SurfacePolicy] | None = None, rules: Rules | None = None) -> "Pipeline":
        """Both surfaces over one artifact, sharing the scorer and one policy layer (and its budgets)."""
        m, table = artifact.manifest, artifact.table
        layer = PolicyLayer.for_artifact(artifact, policies, rules)
        trivial = policies is None and rules is None and not artifact.catalog.campaigns
        pipeline = cls(table, artifact.sources, artifact.id,
                       {int(k): v for k, v in m["departments"].items()}, {int(k): v for k, v in m["aisles"].items()},
                       m["stores"], scorer, cache_size, None if trivial else layer)
        pipeline.search = SearchPipeline(artifact, scorer if hasattr(scorer, "score") else None, layer)
        return pipeline

    def make_query(self, text: str | None = "", k: int = 10, user_id: int | None = None,
                   department: str | int | None = None, aisle: str | int | None = None,
                   store: str | None = None, hour: int | None = None) -> Query:
        """Validate raw request values into a Query; raises InvalidQuery naming the field."""
        text = "" if text is None else text
        if not isinstance(text, str):
            raise InvalidQuery("q", "must be a string")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidQuery("q", f"at most {MAX_QUERY_CHARS} characters, got {len(text)}")
        if has_control_chars(text):
            raise InvalidQuery("q", "control characters are not allowed")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidQuery("k", f"must be an integer in 1..{MAX_K}, got {k!r}")
        if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 0):
            raise InvalidQuery("user_id", f"must be a non-negative integer, got {user_id!r}")
        if hour is not None and (not isinstance(hour, int) or not 0 <= hour <= 23):
            raise InvalidQuery("hour", f"must be an integer in 0..23, got {hour!r}")
        if store is not None and store not in self.stores:
            known = ", ".join(sorted(self.stores)) or "none (this artifact has no stock data)"
            raise InvalidQuery("store", f"unknown store {store!r}; known stores: {known}")
        context = ContextFilter(self._resolve("department", department, self.departments, self._department_by_name),
                                self._resolve("aisle", aisle, self.aisles, self._aisle_by_name), store)
        return Query(text, k, user_id, context, hour)

    @staticmethod
    def _resolve(field: str, value, by_id: dict[int, str], by_name: dict[str, int]) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            if int(value) in by_id:
                return int(value)
        elif isinstance(value, str) and normalize(value) in by_name:
            return by_name[normalize(value)]
        raise InvalidQuery(field, f"unknown {field} {value!r}")

    def suggest(self, query: Query, explain: bool = False, request_id: str = "") -> list[Suggestion]:
        """Top-k suggestions; with `explain`, each says why it ranked where it did (never cached).

        `request_id` seeds exploration and lets a later click on a sponsored slot be charged."""
        text = normalize(query.text)
        if text and query.text[-1].isspace():
            text += " "  # a finished word: "pan " means "pan di stelle", not "pancakes"
        hour = query.hour if query.hour is not None else time.localtime().tm_hour
        if self._cached is not None and query.user_id is None and not explain and not self._explores:
            return list(self._cached(text, query.k, query.context, None, hour if not text else None))
        return list(self._compute(text, query.k, query.context, query.user_id, hour, explain, request_id))

    def observe(self, record) -> None:
        """Feed one durable event (suggest.events) to every component that learns from events."""
        for source in self.sources:
            observe = getattr(source, "observe", None)
            if observe is not None:
                observe(record)  # sources change only personal answers, which the cache never holds
        if self.search is not None:
            self.search.policy.observe(record)   # sponsored clicks spend campaign budgets
        observe = getattr(self.scorer, "observe", None)
        if observe is not None:
            observe(record)
            # A learning scorer changes anonymous answers too, but click counts move slowly and
            # clearing on every event would leave the cache empty under traffic: at most once a minute.
            now = time.monotonic()
            if self._cached is not None and now - self._cache_cleared_at >= CACHE_REFRESH_SECONDS:
                self._cached.cache_clear()
                self._cache_cleared_at = now

    def cache_info(self):
        return self._cached.cache_info() if self._cached is not None else None

    def _compute(self, text: str, k: int, context: ContextFilter, user_id: int | None,
                 hour: int | None, explain: bool = False, request_id: str = "") -> tuple[Suggestion, ...]:
        query = Query(text, k, user_id, context, hour)
        masks = self.table.masks(context)
        phrase_mask, product_mask = masks if masks else (None, None)
        candidates: list[Candidate] = []
        for source in self._primary:
            candidates += source.candidates(text, k, phrase_mask, user_id, hour)
        if len({c.phrase_id for c in candidates}) < k:
            for source in self._fallback:
                candidates += source.candidates(text, k, phrase_mask, user_id, hour)
        merged = _merge(candidates)
        if not merged:
            return ()
        scored = self.scorer.score_merged(query, self.table, merged) if hasattr(self.scorer, "score_merged") else None
        values = scored.value if scored is not None else np.asarray(self.scorer(query, self.table, merged))
        scores = values.tolist()
        keep: list[int] = []
        products: dict[int, list[int]] = {}
        shown: set[int] = set()
        for i in sorted(range(len(merged)), key=lambda i: (-scores[i], merged[i].phrase_id)):
            found = self.table.products_for(merged[i].phrase_id, PRODUCTS_PER_SUGGESTION, product_mask)
            if found and shown.issuperset(found):
                continue  # leads only to products already on the list: it would waste a slot
            shown.update(found)
            keep.append(i)
            products[i] = found
            if self.policy is None and len(keep) == k:
                break
        if self.policy is None:
            rows, sponsored, props = keep, [False] * len(keep), [1.0] * len(keep)
        else:
            relevance = scored.tasks["relevance"][keep] if scored is not None else np.clip(values[keep], 0, 1)
            ads = scored.contributions.get("ads") if scored is not None else None
            arranged = self.policy.arrange("suggest", [self.table.texts[merged[i].phrase_id] for i in keep],
                                           values[keep], relevance, [tuple(products[i]) for i in keep], k,
                                           context.store, ads[keep] if ads is not None else None, request_id)
            rows = [keep[j] for j in arranged.order]
            sponsored, props = arranged.sponsored, arranged.propensities
            products.update({keep[j]: list(p) for j, p in zip(arranged.order, arranged.product_ids)})
        out = [Suggestion(self.table.texts[merged[i].phrase_id], round(scores[i], 6), merged[i].sources,
                          merged[i].highlight, tuple(products[i]), sponsored=sp, propensity=pr)
               for i, sp, pr in zip(rows, sponsored, props)]
        if explain:
            why = (self.scorer.explain(scored, rows) if scored is not None else
                   [{"value": s.score, "scorer": "popularity prior"} for s in out])
            out = [dataclasses.replace(s, explanation=e) for s, e in zip(out, why)]
        return tuple(out)
