"""The search-results path: query -> BM25 + vector retrieval, fused -> ranker -> policy layer -> a page.

Lexical retrieval corrects unknown words and relaxes a query nothing matches (the answer says so);
vector retrieval over product embeddings adds what the words miss ("fizzy water" -> sparkling).
Both are fused by reciprocal rank, scored by the same ranker and policy layer as suggestions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from indexes.fusion import reciprocal_rank_fusion
from indexes.vector import VectorSource
from ranking.features import RankCandidate, RankQuery
from suggest.errors import InvalidQuery
from suggest.policy import PolicyLayer
from suggest.text import normalize
from suggest.types import ContextFilter

__all__ = ["SearchPipeline", "SearchQuery", "SearchAnswer", "SearchResult", "MAX_PAGE", "MAX_SEARCH_K",
           "VECTOR_WEIGHT"]

MAX_SEARCH_K = 100
MAX_PAGE = 50
POOL = 200             # candidates each retriever contributes before fusion
# The base encoder alone finds less than BM25 (recall@10 0.50 vs 0.60 on held-out purchases), so its
# list counts a little less in the fusion: 0.75 was chosen on one half of the held-out users.
VECTOR_WEIGHT = 0.75


@dataclass(frozen=True)
class SearchQuery:
    text: str
    k: int = 20
    page: int = 1
    user_id: int | None = None
    context: ContextFilter = ContextFilter()
    hour: int | None = None


@dataclass(frozen=True)
class SearchResult:
    product_id: int
    name: str
    score: float
    sponsored: bool
    propensity: float
    explanation: dict | None = None


@dataclass(frozen=True)
class SearchAnswer:
    searched: str                              # the text searched, once corrected / relaxed
    corrections: tuple[tuple[str, str], ...]   # (typed word, word read instead)
    relaxed: bool                              # True: no product held every word; `searched` kept fewer
    results: tuple[SearchResult, ...]
    total: int                                 # products retrieved (before paging and constraints)
    policy: str = "greedy"
    list_propensity: float = 1.0


class SearchPipeline:
    def __init__(self, artifact, scorer=None, policy: PolicyLayer | None = None, pool: int = POOL):
        self.artifact, self.table, self.lexical = artifact, artifact.table, artifact.lexical
        if self.lexical is None or not np.array_equal(self.lexical.product_ids, self.table.product_ids):
            raise ValueError("the artifact's lexical index must hold the phrase table's products, in order")
        self.vector = next((s for s in artifact.sources if isinstance(s, VectorSource)), None)
        self.scorer, self.pool = scorer, pool
        self.names = artifact.catalog.names
        self.policy = policy or PolicyLayer.for_artifact(artifact)

    def make_query(self, pipeline, text: str | None, k: int = 20, page: int = 1, user_id: int | None = None,
                   department: str | int | None = None, store: str | None = None,
                   hour: int | None = None) -> SearchQuery:
        """Validate like the suggest path (the suggest `pipeline` resolves names), plus page and k."""
        if text is None or not isinstance(text, str) or not normalize(text):
            raise InvalidQuery("q", "a search needs some text")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SEARCH_K:
            raise InvalidQuery("k", f"must be an integer in 1..{MAX_SEARCH_K}, got {k!r}")
        if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
            raise InvalidQuery("page", f"must be an integer in 1..{MAX_PAGE}, got {page!r}")
        q = pipeline.make_query(text, 1, user_id, department, None, store, hour)
        return SearchQuery(text, k, page, user_id, q.context, hour)

    def search(self, query: SearchQuery, request_id: str = "", explain: bool = False) -> SearchAnswer:
        text = normalize(query.text)
        masks = self.table.masks(query.context)
        product_mask = masks[1] if masks else None
        lex = self.lexical.search(text, self.pool, product_mask)
        rankings = [lex.product_ids.tolist()]
        if self.vector is not None:
            rows, sims = self.vector.search_products(text, self.pool)
            keep = sims >= self.vector.min_similarity
            if product_mask is not None:
                keep &= product_mask[rows]
            rankings.append(self.table.product_ids[rows[keep]].tolist())
        fused = reciprocal_rank_fusion(rankings, weights=(1.0, VECTOR_WEIGHT)[: len(rankings)])[: self.pool]
        if not fused:
            return SearchAnswer(lex.query, lex.corrections, lex.relaxed, (), 0)
        ids = [pid for pid, _ in fused]
        prior = np.array([s for _, s in fused]) / fused[0][1]  # (n,) in (0, 1]
        keys = [f"product:{pid}" for pid in ids]
        scored = None
        if self.scorer is not None:
            local = time.localtime()
            rq = RankQuery(lex.query or text, "search", query.user_id,
                           query.hour if query.hour is not None else local.tm_hour, local.tm_wday, query.context.store)
            cands = [RankCandidate(key, (pid,), float(p)) for key, pid, p in zip(keys, ids, prior)]
            scored = self.scorer.score(rq, cands, query.k)
            value, relevance, ads = scored.value, scored.tasks["relevance"], scored.contributions.get("ads")
        else:
            value, relevance, ads = prior, prior, None
        depth = query.k * query.page
        arranged = self.policy.arrange("search", keys, value, relevance, [(pid,) for pid in ids], depth,
                                       query.context.store, ads, request_id, datetime.now())
        start = (query.page - 1) * query.k
        page = list(range(start, min(start + query.k, len(arranged.order))))
        why = (self.scorer.explain(scored, [arranged.order[j] for j in page]) if explain and scored is not None
               else [{"value": float(value[arranged.order[j]]), "scorer": "fused retrieval rank"} for j in page]
               if explain else [None] * len(page))
        results = tuple(SearchResult(ids[arranged.order[j]], self.names.get(ids[arranged.order[j]], ""),
                                     round(float(value[arranged.order[j]]), 6), arranged.sponsored[j],
                                     arranged.propensities[j], e) for j, e in zip(page, why))
        return SearchAnswer(lex.query, lex.corrections, lex.relaxed, results, max(lex.total, len(fused)),
                            arranged.policy, arranged.list_propensity)
