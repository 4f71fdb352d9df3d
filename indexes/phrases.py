"""Suggestion phrases mined from the catalog and an optional query log, with product links.

Kinds of phrase: product names, aisle names, product types (frequent head-noun tails such as
"greek yogurt"), brands, brand + type, and logged queries. Every phrase is normalised, plural
variants collapse onto one phrase, and each keeps the products it leads to (best first).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from suggest.text import fold_key, normalize, tokens
from suggest.types import ContextFilter, Dataset

__all__ = ["PhraseTable", "mine_phrases", "KINDS", "SHOWN_PRODUCTS"]

KINDS = ("product", "type", "brand_type", "brand", "aisle", "query")
_KIND_FACTOR = {"product": 1.0, "type": 1.0, "brand_type": 1.0, "brand": 0.7, "aisle": 0.5, "query": 1.0}
_MIN_TYPE_PRODUCTS = 3
SHOWN_PRODUCTS = 8  # products a suggestion shows; a phrase is worth what those products sell
# Words that qualify what follows rather than start a product type: "non fat yogurt" is no "fat yogurt".
_NOT_TYPE_START = frozenset("fat free non low less reduced style flavored flavor size count".split())
_NOT_HEAD = frozenset("oz fl lb lbs ct pack count pk g kg ml l each in x with and of the for a".split())


@dataclass
class PhraseTable:
    texts: list[str]             # normalised phrase text, also what is displayed
    weights: np.ndarray          # (n_phrases,) float32 popularity
    kinds: np.ndarray            # (n_phrases,) uint8 index into KINDS
    link_ptr: np.ndarray         # (n_phrases + 1,) int64 CSR offsets into link_idx
    link_idx: np.ndarray         # (n_links,) int32 product row, best first within a phrase
    product_ids: np.ndarray      # (n_products,) int32
    product_aisle: np.ndarray    # (n_products,) int32
    product_department: np.ndarray  # (n_products,) int32
    product_popularity: np.ndarray  # (n_products,) float32
    stores: dict[str, np.ndarray]   # store -> (n_products,) bool in stock

    def __post_init__(self) -> None:
        self._shown: dict[int, list[int]] = {}  # phrase -> ids of the products it shows, unfiltered

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def priors(self) -> np.ndarray:
        """Weights scaled to [0, 1]: the popularity prior of each phrase."""
        if not hasattr(self, "_priors"):
            self._priors = (self.weights / max(float(self.weights.max(initial=0.0)), 1e-9)).astype(np.float32)
        return self._priors

    def links(self, phrase_id: int) -> np.ndarray:
        return self.link_idx[self.link_ptr[phrase_id]:self.link_ptr[phrase_id + 1]]

    def masks(self, ctx: ContextFilter) -> tuple[np.ndarray, np.ndarray] | None:
        """(phrase mask, product mask) for a context filter; None when nothing is filtered."""
        return self._masks(ctx.department_id, ctx.aisle_id, ctx.store) if ctx.active else None

    @lru_cache(maxsize=256)
    def _masks(self, department_id, aisle_id, store) -> tuple[np.ndarray, np.ndarray]:
        product_ok = np.ones(len(self.product_ids), dtype=bool)
        if department_id is not None:
            product_ok &= self.product_department == department_id
        if aisle_id is not None:
            product_ok &= self.product_aisle == aisle_id
        if store is not None:
            product_ok &= self.stores[store]
        hits = np.concatenate([[0], np.cumsum(product_ok[self.link_idx], dtype=np.int64)])
        phrase_ok = hits[self.link_ptr[1:]] > hits[self.link_ptr[:-1]]
        return phrase_ok, product_ok

    def products_for(self, phrase_id: int, limit: int, product_mask: np.ndarray | None = None) -> list[int]:
        if product_mask is None and limit == SHOWN_PRODUCTS:  # the common case, on every keystroke
            shown = self._shown.get(phrase_id)
            if shown is None:
                shown = self._shown[phrase_id] = self.product_ids[self.links(phrase_id)[:limit]].tolist()
            return shown
        rows = self.links(phrase_id)
        if product_mask is not None:
            rows = rows[product_mask[rows]]
        return self.product_ids[rows[:limit]].tolist()

    def __hash__(self) -> int:  # lru_cache on methods needs a hashable self
        return id(self)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "texts.txt").write_text("\n".join(self.texts), encoding="utf-8")
        stores = sorted(self.stores)
        np.savez(directory / "phrases.npz", weights=self.weights, kinds=self.kinds, link_ptr=self.link_ptr,
                 link_idx=self.link_idx, product_ids=self.product_ids, product_aisle=self.product_aisle,
                 product_department=self.product_department, product_popularity=self.product_popularity,
                 stock=np.stack([self.stores[s] for s in stores]) if stores else np.zeros((0, len(self.product_ids)), bool))
        (directory / "stores.json").write_text(json.dumps(stores))

    @classmethod
    def load(cls, directory: Path) -> "PhraseTable":
        texts = (directory / "texts.txt").read_text(encoding="utf-8").split("\n")
        with np.load(directory / "phrases.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        stores = json.loads((directory / "stores.json").read_text())
        stock = arrays.pop("stock")
        return cls(texts, stores={s: stock[i] for i, s in enumerate(stores)}, **arrays)


def _head_phrases(name: str) -> list[str]:
    """Tail n-grams of the first comma segment that can name a product type ("greek yogurt")."""
    words = [w for w in tokens(normalize(name.split(",")[0])) if w.isalpha() or "'" in w]
    while words and words[-1] in _NOT_HEAD:
        words.pop()
    out = []
    if words and len(words[-1]) >= 3:
        out.append(words[-1])
        if len(words) >= 2 and words[-2] not in _NOT_HEAD and words[-2] not in _NOT_TYPE_START:
            out.append(" ".join(words[-2:]))
    return out


def _product_popularity(data: Dataset) -> dict[int, float]:
    counts: Counter = Counter(data.anonymous_lines)
    for order in data.orders:
        counts.update(order.product_ids)
    return {p.product_id: 1.0 + counts[p.product_id] for p in data.catalog.products}


def mine_phrases(data: Dataset) -> PhraseTable:
    """Mine, weight, normalise and deduplicate suggestion phrases from a dataset."""
    catalog = data.catalog
    pop = _product_popularity(data)
    row_of = {p.product_id: i for i, p in enumerate(catalog.products)}
    raw: list[tuple[str, str, list[int]]] = []  # (text, kind, product ids)
    by_aisle, by_head, by_brand, by_brand_head = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
    for p in catalog.products:
        raw.append((normalize(p.name), "product", [p.product_id]))
        by_aisle[p.aisle_id].append(p.product_id)
        heads = _head_phrases(p.name)
        for h in heads:
            by_head[fold_key(h)].append((h, p.product_id))
        if p.brand:
            brand = normalize(p.brand)
            by_brand[brand].append(p.product_id)
            for h in heads[-1:]:
                by_brand_head[f"{brand} {h}"].append(p.product_id)
    for aisle_id, ids in by_aisle.items():
        raw.append((normalize(catalog.aisles[aisle_id]), "aisle", ids))
    words = _word_index(data)
    for members in by_head.values():
        ids = {pid for _, pid in members}
        if len(ids) >= _MIN_TYPE_PRODUCTS:
            # A type leads to every product whose name holds its words, as a search for it would:
            # "mustard" finds "Mustard Spicy Brown", not only names that end in "mustard".
            text = Counter(h for h, _ in members).most_common(1)[0][0]
            raw.append((text, "type", sorted(ids | _with_words(words, text))))
    raw += [(b, "brand", ids) for b, ids in by_brand.items() if len(ids) >= _MIN_TYPE_PRODUCTS]
    raw += [(t, "brand_type", ids) for t, ids in by_brand_head.items() if len(ids) >= 2]
    queries, query_weight = _query_phrases(data, pop, words)
    return _dedupe(raw + queries, catalog, pop, row_of, data, query_weight)


def _word_index(data: Dataset) -> dict[str, set[int]]:
    """Singular-folded word -> ids of the products whose names hold it."""
    index: dict[str, set[int]] = defaultdict(set)
    for p in data.catalog.products:
        for w in fold_key(normalize(p.name)).split():
            index[w].add(p.product_id)
    return index


def _with_words(index: dict[str, set[int]], text: str) -> set[int]:
    sets = [index.get(w, set()) for w in fold_key(text).split()]
    return set.intersection(*sets) if sets else set()


def _query_phrases(data: Dataset, pop: dict[int, float], words: dict[str, set[int]]):
    """Logged queries, linked to the products whose names hold every query word (singular-folded).

    Query counts are put on the scale of purchase counts so both kinds of phrase compete fairly.
    """
    if not data.query_log:
        return [], {}
    counts: Counter = Counter()
    for entry in data.query_log:
        counts[normalize(entry.query)] += entry.count
    raw = [(text, "query", sorted(_with_words(words, text), key=lambda i: -pop[i])[:200]) for text in counts]
    scale = sum(pop.values()) / max(1, sum(counts.values()))
    return raw, {t: n * scale for t, n in counts.items()}


def _dedupe(raw, catalog, pop, row_of, data, query_weight) -> PhraseTable:
    best: dict[str, tuple[float, str, str, set[int]]] = {}  # fold key -> (weight, text, kind, product ids)
    for text, kind, ids in raw:
        if not text or (kind != "query" and not ids):
            continue
        key = fold_key(text)
        # A phrase is worth the sales of the products it would show: broad phrases whose
        # demand is spread over hundreds of products weigh no more than their best sellers.
        ranked = sorted(ids, key=lambda i: -pop[i])
        weight = query_weight[text] if kind == "query" else _KIND_FACTOR[kind] * sum(pop[i] for i in ranked[:SHOWN_PRODUCTS])
        if key in best:
            w0, t0, k0, ids0 = best[key]
            ids0.update(ids)
            if weight > w0:
                best[key] = (weight, text, kind, ids0)
        else:
            best[key] = (weight, text, kind, set(ids))
    items = sorted(best.values(), key=lambda v: (-v[0], v[1]))
    link_ptr, link_idx = [0], []
    for _, _, _, ids in items:
        link_idx.extend(row_of[i] for i in sorted(ids, key=lambda i: (-pop[i], i)))
        link_ptr.append(len(link_idx))
    products = catalog.products
    stores = {s: np.array([p.product_id not in out for p in products], dtype=bool)
              for s, out in data.out_of_stock.items()}
    return PhraseTable(
        texts=[t for _, t, _, _ in items],
        weights=np.array([w for w, _, _, _ in items], dtype=np.float32),
        kinds=np.array([KINDS.index(k) for _, _, k, _ in items], dtype=np.uint8),
        link_ptr=np.array(link_ptr, dtype=np.int64),
        link_idx=np.array(link_idx, dtype=np.int32),
        product_ids=np.array([p.product_id for p in products], dtype=np.int32),
        product_aisle=np.array([p.aisle_id for p in products], dtype=np.int32),
        product_department=np.array([p.department_id for p in products], dtype=np.int32),
        product_popularity=np.array([pop[p.product_id] for p in products], dtype=np.float32),
        stores=stores,
    )
