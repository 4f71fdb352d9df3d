"""Query-candidate cosine, the ranker's semantic feature (`cosine`), from one encoder.

Training featurises logged items by their text: a suggestion is its phrase, "product:<id>" the
product's name and aisle (the text the artifact's product vectors come from). Serving reads the
same vectors from the artifact's vector source, so the model sees one quantity in both places, and
the ranker remembers which encoder it learnt it from. One or two typed characters say too little to
embed (as in vector recall): their cosine is 0, in training and serving alike. The ranker asks for
it on search results only (`ranking.features.featurize`).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from indexes.vector import MIN_CHARS, QUERY_CACHE, Embed, VectorSource, product_text
from suggest.text import normalize
from suggest.types import Dataset

__all__ = ["Similarity", "product_texts"]

PRODUCT_PREFIX = "product:"


def product_texts(data: Dataset) -> dict[int, str]:
    """product id -> the text its embedding is computed from."""
    aisles = data.catalog.aisles
    return {p.product_id: product_text(p.name, aisles[p.aisle_id]) for p in data.catalog.products}


class Similarity:
    """`cosine(text, items) -> (n,) float32`: the seam `ranking.features.featurize` takes."""

    def __init__(self, embed: Embed, encoder: dict, products: Mapping[int, str],
                 items: dict[str, np.ndarray] | None = None, query_vector: Callable[[str], np.ndarray] | None = None):
        self.embed, self.encoder, self.products = embed, encoder, products
        self._items = items if items is not None else {}     # item key -> (dim,) float32 unit vector
        self._queries: dict[str, np.ndarray] = {}             # warmed query text -> (dim,)
        self._query_vector = query_vector or lru_cache(maxsize=QUERY_CACHE)(lambda t: self.embed([t])[0])

    @classmethod
    def from_vector_source(cls, source: VectorSource) -> Similarity:
        """Serving: the artifact's own product vectors (search results, the only items the ranker
        asks about) and its cached query embeddings; any other item is embedded on first use."""
        items = {f"{PRODUCT_PREFIX}{pid}": v for pid, v in zip(source.table.product_ids.tolist(), source.product_vectors)}
        return cls(source.embed, source.encoder, {}, items, lambda t: source.query_vector(t)[0])

    @classmethod
    def for_encoder(cls, encoder: dict, data: Dataset) -> Similarity:
        """Offline (evaluation in the world): the encoder a ranker names, embedding on demand."""
        from adapters.registry import load_encoder

        embed, description = load_encoder(encoder.get("path"))
        return cls(embed, description, product_texts(data))

    def _item_text(self, key: str) -> str:
        if key.startswith(PRODUCT_PREFIX) and key[len(PRODUCT_PREFIX):].isdigit():
            pid = int(key[len(PRODUCT_PREFIX):])
            if pid in self.products:
                return self.products[pid]
        return key

    def warm(self, queries: Iterable[str], items: Iterable[str], chunk: int = 1024, progress: bool = False) -> None:
        """Embed every query and item not seen yet, in batches (training featurises many rows)."""
        texts = sorted({t for t in (normalize(q) for q in queries) if len(t) >= MIN_CHARS} - self._queries.keys())
        keys = sorted(set(items) - self._items.keys())
        with tqdm(total=len(texts) + len(keys), desc="embed queries and items", unit="text",
                  disable=not progress, file=sys.stderr) as bar:
            for cache, todo, text_of in ((self._queries, texts, str), (self._items, keys, self._item_text)):
                for i in range(0, len(todo), chunk):
                    batch = todo[i:i + chunk]
                    cache.update(zip(batch, np.asarray(self.embed([text_of(t) for t in batch]), np.float32)))
                    bar.update(len(batch))

    def _item(self, key: str) -> np.ndarray:
        v = self._items.get(key)
        if v is None:
            v = self._items[key] = np.asarray(self.embed([self._item_text(key)])[0], np.float32)
        return v

    def __call__(self, text: str, items: Sequence[str]) -> np.ndarray:
        text = normalize(text)
        if len(text) < MIN_CHARS or not items:
            return np.zeros(len(items), np.float32)
        q = self._queries.get(text)
        if q is None:
            q = self._query_vector(text)
        return (np.stack([self._item(k) for k in items]) @ q).astype(np.float32)  # (n,)

