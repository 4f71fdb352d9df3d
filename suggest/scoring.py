"""The trained ranker behind the pipeline's scorer seam: candidates -> features -> task scores -> value.

`RankerScorer` replaces the popularity prior for suggestions (and scores product lists for search):
it featurises the merged candidates through the feature store, asks the ranker for calibrated
per-task scores, and blends them into one value with the surface's objective. `explain` says, for
the items shown, what each task predicted, what it added to the value and which features moved it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from indexes.phrases import SHOWN_PRODUCTS, PhraseTable
from indexes.vector import VectorSource
from ranking.features import FEATURES, FeatureStore, RankCandidate, RankQuery, featurize
from ranking.feature_store import RedisFeatureStore, load_store
from ranking.objective import DEFAULT_OBJECTIVES, Objectives, load_objectives, quantities
from ranking.ranker import Ranker
from suggest.artifact import Artifact
from suggest.errors import ArtifactError
from suggest.semantic import Similarity
from suggest.types import Query

__all__ = ["RankerScorer", "Scored", "load_scorer"]

_PRICE, _BID, _BOUGHT = (FEATURES.index(f) for f in ("log_price", "sponsored_bid", "bought_before"))
EXPLAINED_TASKS = ("relevance", "purchase")


@dataclass(frozen=True)
class Scored:
    value: np.ndarray                       # (n,) float64 the objective's value, what the list is sorted by
    tasks: dict[str, np.ndarray]            # task -> (n,) calibrated score
    contributions: dict[str, np.ndarray]    # quantity -> (n,) weight * quantity; they sum to value
    inputs: np.ndarray                      # (n, n_inputs) float32 standardised model inputs


class RankerScorer:
    def __init__(self, ranker: Ranker, store: FeatureStore, objectives: Objectives = DEFAULT_OBJECTIVES,
                 arm: str | None = None, cosine: Callable[[str, Sequence[str]], np.ndarray] | None = None):
        if ranker.encoder is not None and cosine is None:
            raise ArtifactError(f"the ranker learnt the cosine feature with encoder {ranker.encoder.get('name')!r}; "
                                "serve it with an artifact built with that encoder")
        self.ranker, self.store, self.objectives, self.arm = ranker, store, objectives, arm
        self.cosine = cosine if ranker.encoder is not None else None  # a ranker without it learnt nothing from it

    def score(self, query: RankQuery, candidates: Sequence[RankCandidate], k: int) -> Scored:
        """Score one request's candidates; the k with the best prior stand in for the list it would
        have shown (the model learnt features relative to such lists)."""
        X = featurize(query, candidates, self.store, self.cosine)  # (n, n_features)
        reference = X[np.argsort([-c.prior for c in candidates], kind="stable")[:k]]
        Z = self.ranker.standardised(X, reference)
        tasks = self.ranker.scores(Z)
        price = np.where(X[:, _PRICE] != 0, np.exp(X[:, _PRICE]), 0.0)
        q = quantities(tasks, price, X[:, _BID].astype(np.float64), X[:, _BOUGHT].astype(np.float64))
        objective = self.objectives.get(query.surface, self.arm)
        contributions = objective.contributions(q)
        return Scored(objective.value(q), tasks, contributions, Z)

    def explain(self, scored: Scored, rows: Sequence[int], top: int = 5) -> list[dict]:
        """Per chosen row: the value, each task's calibrated score, each quantity's contribution and
        the top feature attributions (gradient x input) of the relevance and purchase heads."""
        rows = list(rows)
        attributions = {t: self.ranker.attributions(scored.inputs[rows], t, top) for t in EXPLAINED_TASKS
                        if t in self.ranker.tasks} if rows else {}
        return [{"value": round(float(scored.value[r]), 6),
                 "tasks": {t: round(float(v[r]), 6) for t, v in scored.tasks.items()},
                 "contributions": {name: round(float(v[r]), 6) for name, v in scored.contributions.items()},
                 "attributions": {t: [{"feature": f, "value": a} for f, a in attributions[t][i]]
                                  for t in attributions}}
                for i, r in enumerate(rows)]

    def observe(self, record) -> None:
        """Feed a logged event to the feature store: impressions move priors, purchases a user's history."""
        kind = getattr(record, "type", None)
        if kind == "impression":
            self.store.add_impression(record)
        elif kind == "purchase" and record.user_id is not None:
            self.store.add_purchase(record.user_id, record.product_ids)

    # --- the pipeline's Scorer seam -------------------------------------------------------------
    def __call__(self, query: Query, table: PhraseTable, merged: Sequence) -> np.ndarray:
        return self.score_merged(query, table, merged).value

    def score_merged(self, query: Query, table: PhraseTable, merged: Sequence) -> Scored:
        local = time.localtime()
        rq = RankQuery(query.text, "suggest", query.user_id, query.hour if query.hour is not None else local.tm_hour,
                       local.tm_wday, query.context.store)
        cands = [RankCandidate(table.texts[m.phrase_id], tuple(table.products_for(m.phrase_id, SHOWN_PRODUCTS)),
                               m.prior, m.sources, m.edits, m.highlight[0][0] if m.highlight else 0) for m in merged]
        return self.score(rq, cands, query.k)


def load_scorer(ranker_dir: Path | str, objectives: Path | str | None = None, arm: str | None = None,
                redis_url: str | None = None, artifact: Artifact | None = None) -> RankerScorer:
    """The scorer a server runs: the trained ranker, its feature store (the snapshot saved beside it,
    or the Redis store at `redis_url`, published there with `keystroke publish-features`) and the
    objectives file. A ranker that learnt the cosine feature reads it from the artifact's vector
    source, which must come from the same encoder. Raises ArtifactError / ValueError naming what is wrong."""
    ranker = Ranker.load(ranker_dir)
    if redis_url:
        import redis

        store = RedisFeatureStore(redis.Redis.from_url(redis_url))
    else:
        store = load_store(Path(ranker_dir) / "store")
    chosen = load_objectives(objectives) if objectives else DEFAULT_OBJECTIVES
    if arm is not None:
        chosen.get("suggest", arm)  # an unknown arm fails at start-up
    return RankerScorer(ranker, store, chosen, arm, _cosine(ranker, artifact, ranker_dir))


def _cosine(ranker: Ranker, artifact: Artifact | None, ranker_dir) -> Similarity | None:
    if ranker.encoder is None:
        return None
    wanted = ranker.encoder.get("name")
    vector = next((s for s in artifact.sources if isinstance(s, VectorSource)), None) if artifact else None
    if vector is None or vector.encoder.get("name") != wanted:
        have = "no artifact" if artifact is None else f"{artifact.path} has {'no vector source' if vector is None else 'encoder ' + repr(vector.encoder.get('name'))}"
        raise ArtifactError(f"{ranker_dir} learnt the cosine feature with encoder {wanted!r} but {have}; build the "
                            f"artifact with {'--vector' if wanted == 'base' else '--adapter ' + str(wanted)}")
    return Similarity.from_vector_source(vector)
