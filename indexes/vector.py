"""Embedding recall: faiss indexes over phrase and product embeddings, and semantic features.

A candidate source for what the trie cannot match ("oat mi" when no phrase starts so, "soda" for
"sparkling water"). It is a fallback: the pipeline asks it only when the exact sources found fewer
than k, and query embeddings are cached (LRU), so recall does not cost every keystroke. The
encoder sits behind one seam, `embed(texts) -> (n, dim) float32 L2-normalised`, so tests pass a
plain function and the server passes the (LoRA-adapted) encoder.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import faiss
import numpy as np
from tqdm import tqdm

from indexes.phrases import PhraseTable
from suggest.text import normalize
from suggest.types import Candidate, Dataset

__all__ = ["VectorSource", "Embed", "HNSW_ABOVE", "product_text"]

Embed = Callable[[Sequence[str]], np.ndarray]
HNSW_ABOVE = 200_000      # rows; below it an exact flat index is fast enough and loses nothing
VECTOR_DISCOUNT = 0.02    # semantic matches rank below exact ones of any popularity
MIN_CHARS = 3             # one or two letters say too little to embed
NOISE_SIGMAS = 2.0        # a neighbour must beat random pairs' cosine by this many standard deviations
QUERY_CACHE = 50_000      # prefix embeddings kept


def product_text(name: str, aisle: str) -> str:
    """What a product's embedding is computed from: "greek yogurt plain | yogurt" (adapters/pairs.py
    trains on the same form)."""
    return f"{normalize(name)} | {normalize(aisle)}"


def _embed_all(embed: Embed, texts: Sequence[str], desc: str, progress: bool, chunk: int = 2048) -> np.ndarray:
    """(n, dim) float32, in chunks so that a long build shows its progress."""
    parts = [embed(texts[i:i + chunk]).astype(np.float32)
             for i in tqdm(range(0, len(texts), chunk), desc=desc, unit="chunk", disable=not progress, file=sys.stderr)]
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)


def _noise_floor(vectors: np.ndarray, pairs: int = 2000) -> float:
    """Mean + NOISE_SIGMAS * std of the cosine between random pairs of rows (seeded)."""
    if len(vectors) < 2:
        return 0.0
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(vectors), pairs), rng.integers(0, len(vectors), pairs)
    sims = np.sum(vectors[a] * vectors[b], axis=1)
    return float(sims.mean() + NOISE_SIGMAS * sims.std())


def _index(vectors: np.ndarray) -> faiss.Index:
    dim = vectors.shape[1]
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT) if len(vectors) > HNSW_ABOVE \
        else faiss.IndexFlatIP(dim)
    index.add(vectors)
    return index


class VectorSource:
    name = "vector"
    fallback = True

    def __init__(self, table: PhraseTable, phrase_vectors: np.ndarray, product_vectors: np.ndarray,
                 embed: Embed | None, encoder: dict, indexes: tuple[faiss.Index, faiss.Index] | None = None,
                 min_similarity: float | None = None):
        self.table, self.encoder = table, encoder      # encoder: what embedded the rows (name, checksum)
        # Encoders differ in how alike unrelated texts look (a contrastive adapter lifts every cosine),
        # so the floor is measured on this encoder's own rows rather than fixed.
        self.min_similarity = _noise_floor(phrase_vectors) if min_similarity is None else min_similarity
        self.phrase_vectors = phrase_vectors           # (n_phrases, dim) float32
        self.product_vectors = product_vectors         # (n_products, dim) float32, rows as table.product_ids
        self.phrases, self.products = indexes or (_index(phrase_vectors), _index(product_vectors))
        self._embed = embed
        self._query = lru_cache(maxsize=QUERY_CACHE)(self._embed_one)

    @classmethod
    def build(cls, table: PhraseTable, data: Dataset, embed: Embed, encoder: dict | None = None,
              progress: bool = False) -> "VectorSource":
        catalog = data.catalog
        names = [product_text(p.name, catalog.aisles[p.aisle_id]) for p in catalog.products]
        return cls(table, _embed_all(embed, table.texts, "embed phrases", progress),
                   _embed_all(embed, names, "embed products", progress), embed, encoder or {"name": "unnamed"})

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit rows from this source's encoder."""
        if self._embed is None:
            raise RuntimeError("this vector source was loaded without an encoder")
        return np.asarray(self._embed(list(texts)), dtype=np.float32)

    def _embed_one(self, text: str) -> np.ndarray:
        v = self.embed([text])
        v.setflags(write=False)
        return v  # (1, dim)

    def query_vector(self, text: str) -> np.ndarray:
        return self._query(text)

    def cache_info(self):
        return self._query.cache_info()

    def candidates(self, text, k, phrase_mask=None, user_id=None, hour=None) -> list[Candidate]:
        if len(text.strip()) < MIN_CHARS:
            return []
        fetch = 4 * k if phrase_mask is None else 16 * k
        sims, ids = self.phrases.search(self.query_vector(text.strip()), min(fetch, len(self.table)))
        out = []
        for sim, ph in zip(sims[0].tolist(), ids[0].tolist()):
            if ph < 0 or sim < self.min_similarity or (phrase_mask is not None and not phrase_mask[ph]):
                continue
            out.append(Candidate(ph, self.name, VECTOR_DISCOUNT * min(sim, 1.0)))
            if len(out) == k:
                break
        return out

    def similarity(self, text: str, phrase_ids: Sequence[int]) -> np.ndarray:
        """Query-candidate cosine, a ranker feature: (len(phrase_ids),) float32."""
        return (self.phrase_vectors[np.asarray(phrase_ids, dtype=np.int64)] @ self.query_vector(text)[0]).astype(np.float32)

    def history_similarity(self, history_rows: Sequence[int], phrase_ids: Sequence[int], shown: int = 8) -> np.ndarray:
        """Cosine between the centroid of the user's purchased products and each phrase's products' centroid."""
        if len(history_rows) == 0:
            return np.zeros(len(phrase_ids), np.float32)
        user = self.product_vectors[np.asarray(history_rows, dtype=np.int64)].mean(axis=0)
        user /= np.linalg.norm(user) or 1.0
        out = np.zeros(len(phrase_ids), np.float32)
        for i, ph in enumerate(phrase_ids):
            rows = self.table.links(int(ph))[:shown]
            if len(rows):
                c = self.product_vectors[rows].mean(axis=0)
                out[i] = float(c @ user) / (float(np.linalg.norm(c)) or 1.0)
        return out

    def search_products(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(k,) product rows and cosines nearest to the text: vector retrieval for search."""
        sims, rows = self.products.search(self.query_vector(text.strip()), k)
        keep = rows[0] >= 0
        return rows[0][keep], sims[0][keep]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "phrase_vectors.npy", self.phrase_vectors)
        np.save(directory / "product_vectors.npy", self.product_vectors)
        faiss.write_index(self.phrases, str(directory / "phrases.faiss"))
        faiss.write_index(self.products, str(directory / "products.faiss"))
        kinds = {"phrases": type(self.phrases).__name__, "products": type(self.products).__name__}
        (directory / "vector.json").write_text(json.dumps({"encoder": self.encoder, "index": kinds,
                                                           "dim": int(self.phrase_vectors.shape[1]),
                                                           "min_similarity": self.min_similarity}, indent=2))

    @classmethod
    def load(cls, directory: Path, table: PhraseTable, embed: Embed | None = None) -> "VectorSource":
        meta = json.loads((directory / "vector.json").read_text())
        indexes = (faiss.read_index(str(directory / "phrases.faiss")), faiss.read_index(str(directory / "products.faiss")))
        return cls(table, np.load(directory / "phrase_vectors.npy"), np.load(directory / "product_vectors.npy"),
                   embed, meta["encoder"], indexes, meta["min_similarity"])

    def __len__(self) -> int:
        return len(self.table)
