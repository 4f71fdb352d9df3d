"""Training pairs (anchor, positive) mined from purchases, for the in-batch contrastive loss.

Three kinds, each drawn in proportion to purchases so that best-sellers dominate as they do in traffic:

    prefix       "greek yo"             → "greek yogurt plain | yogurt"   what a shopper types → what they buy
    aisle        "yogurt"               → "greek yogurt plain | yogurt"   a category word → its products
    co-purchase  "granola | cereal"     → "greek yogurt plain | yogurt"   bought in one order → related

The caller passes a dataset already restricted to the training split; only products that occur in its
orders are used.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from suggest.text import normalize
from suggest.types import Dataset, Product

__all__ = ["mine_pairs", "product_text", "pairs_sha256", "PAIR_KINDS"]

PAIR_KINDS = ("prefix", "aisle", "copurchase")
_DEFAULT_MIX = (0.5, 0.2, 0.3)  # typed prefixes are what the encoder serves, so they lead
_MIN_PREFIX, _MAX_PREFIX = 3, 12
_TRIES_PER_PAIR = 20  # a small catalog runs out of new pairs; stop drawing rather than loop forever


def product_text(product: Product, aisles: dict[int, str]) -> str:
    """The text a product is embedded as: "greek yogurt plain | yogurt"."""
    aisle = normalize(aisles.get(product.aisle_id, ""))
    name = normalize(product.name)
    return f"{name} | {aisle}" if aisle else name


def pairs_sha256(pairs: Sequence[tuple[str, str]]) -> str:
    """Checksum of the training pairs, in order; recorded on the adapter's card."""
    h = hashlib.sha256()
    for anchor, positive in pairs:
        h.update(anchor.encode("utf-8") + b"\t" + positive.encode("utf-8") + b"\n")
    return h.hexdigest()


def _typed_prefix(name: str, rng: np.random.Generator) -> str:
    """A prefix as typed: the first one or two words, or a cut of 3..12 characters."""
    words = name.split()
    if rng.random() < 0.3:
        return " ".join(words[: int(rng.integers(1, 3))])
    cut = int(rng.integers(_MIN_PREFIX, min(_MAX_PREFIX, len(name)) + 1)) if len(name) > _MIN_PREFIX else len(name)
    return name[:cut].rstrip()


def _draws(rng: np.random.Generator, n_lines: int, mix: np.ndarray, limit: int, chunk: int = 8192):
    """(pair kind, purchased line) draws, generated a chunk at a time so a large `limit` costs no memory."""
    for start in range(0, limit, chunk):
        size = min(chunk, limit - start)
        yield from zip(rng.choice(len(mix), size=size, p=mix).tolist(), rng.integers(0, n_lines, size=size).tolist())


def mine_pairs(data: Dataset, seed: int = 0, max_pairs: int = 20_000,
               mix: tuple[float, float, float] = _DEFAULT_MIX) -> list[tuple[str, str]]:
    """Up to `max_pairs` distinct (anchor, positive) pairs; the same for the same data and seed."""
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs!r}")
    if len(mix) != len(PAIR_KINDS) or any(w < 0 for w in mix) or sum(mix) <= 0:
        raise ValueError(f"mix must be {len(PAIR_KINDS)} weights >= 0 with a positive sum, got {mix!r}")
    catalog = data.catalog
    # One row per purchased line: drawing a row uniformly draws a product in proportion to its purchases.
    line_order: list[int] = []
    line_product: list[int] = []
    baskets: list[list[int]] = []
    for order in data.orders:
        basket = [pid for pid in dict.fromkeys(order.product_ids) if catalog.get(pid) is not None]
        if not basket:
            continue
        for pid in basket:
            line_order.append(len(baskets))
            line_product.append(pid)
        baskets.append(basket)
    if not line_product:
        return []
    texts = {pid: product_text(catalog.get(pid), catalog.aisles) for pid in set(line_product)}
    names = {pid: normalize(catalog.get(pid).name) for pid in texts}

    rng = np.random.default_rng(seed)
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for kind, line in _draws(rng, len(line_product), np.asarray(mix) / sum(mix), max_pairs * _TRIES_PER_PAIR):
        pid = line_product[line]
        if kind == 0:
            anchor = _typed_prefix(names[pid], rng)
        elif kind == 1:
            anchor = normalize(catalog.aisles.get(catalog.get(pid).aisle_id, ""))
        else:
            basket = baskets[line_order[line]]
            anchor = texts[basket[int(rng.integers(0, len(basket)))]]  # may be pid itself: dropped below
        pair = (anchor, texts[pid])
        if anchor and anchor != pair[1] and pair not in seen:
            seen.add(pair)
            pairs.append(pair)
            if len(pairs) == max_pairs:
                break
    return pairs
