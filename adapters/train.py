"""Training a LoRA adapter with in-batch negatives, validation every few steps and early stopping.

The loss is sentence-transformers' MultipleNegativesRankingLoss: for a batch of (anchor, positive)
pairs, cross-entropy over `scale * cosine(anchor_i, positive_j)` with the target j = i, so every other
positive in the batch is a negative. Batches never hold the same text twice, which would otherwise
turn a true match into a negative (sentence-transformers' NoDuplicatesBatchSampler does the same).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from adapters.encoder import Encoder
from adapters.lora import Adapter, AdapterConfig, attach_lora
from adapters.pairs import mine_pairs, pairs_sha256
from suggest.types import Dataset

__all__ = ["History", "mnrl_loss", "split_pairs", "evaluate", "train_adapter", "train_adapter_on_data"]

Pair = tuple[str, str]
_RECALL_K = 10


@dataclass(frozen=True)
class History:
    train_loss: tuple[float, ...]        # one per optimiser step
    evals: tuple[dict[str, float], ...]  # {"step", "val_loss", "recall@10"}; step 0 is the untrained base
    best_step: int                       # the step whose weights the adapter keeps
    stopped_early: bool
    seconds: float

    @property
    def steps(self) -> int:
        return len(self.train_loss)


def mnrl_loss(anchors: torch.Tensor, positives: torch.Tensor, scale: float) -> torch.Tensor:
    """Cross-entropy of each anchor against all positives in the batch; its own positive is the target."""
    # anchors, positives: (batch, dim) unit vectors → logits (batch, batch)
    logits = scale * anchors @ positives.T
    return F.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))


def split_pairs(pairs: Sequence[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, validation): a seeded shuffle, the last `fraction` held out."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = int(round(fraction * len(pairs)))
    if fraction > 0 and n_val < 2:
        raise ValueError(f"AdapterConfig.validation_fraction={fraction!r} leaves {n_val} validation pairs "
                         f"of {len(pairs)}; need at least 2 (or set it to 0)")
    train = [pairs[i] for i in order[: len(pairs) - n_val]]
    return train, [pairs[i] for i in order[len(pairs) - n_val:]]


def _batches(pairs: Sequence[Pair], size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Indices of one shuffled pass over `pairs`; a pair whose text is already in the batch waits for the next."""
    order = rng.permutation(len(pairs)).tolist()
    while len(order) >= 2:
        batch, seen, waiting = [], set(), []
        for pos, i in enumerate(order):
            if len(batch) == size:
                waiting.extend(order[pos:])
                break
            anchor, positive = pairs[i]
            if anchor in seen or positive in seen:
                waiting.append(i)
            else:
                batch.append(i)
                seen.update((anchor, positive))
        if len(batch) < 2:
            return  # the rest all repeat one text: nothing left to contrast
        yield batch
        order = waiting


def evaluate(encoder: Encoder, pairs: Sequence[Pair], config: AdapterConfig) -> dict[str, float]:
    """Validation loss (fixed batches, eval mode) and recall@10 of each anchor's positive among all of them."""
    texts = sorted({t for pair in pairs for t in pair})
    index = {t: i for i, t in enumerate(texts)}
    emb = torch.from_numpy(encoder.encode(texts))  # (n_texts, dim) float32
    a = torch.tensor([index[p[0]] for p in pairs])
    p = torch.tensor([index[p[1]] for p in pairs])
    losses, weights = [], []
    for batch in _batches(pairs, config.batch_size, np.random.default_rng(config.seed)):
        losses.append(float(mnrl_loss(emb[a[batch]], emb[p[batch]], config.scale)))
        weights.append(len(batch))
    # Recall against the distinct positives, so a product named by two anchors counts once.
    candidates = torch.unique(p)
    target = torch.searchsorted(candidates, p)
    k = min(_RECALL_K, len(candidates))
    hits = 0
    for start in range(0, len(pairs), 1024):  # chunks keep the score matrix small
        scores = emb[a[start:start + 1024]] @ emb[candidates].T  # (chunk, n_candidates)
        top = scores.topk(k, dim=1).indices
        hits += int((top == target[start:start + 1024, None]).any(1).sum())
    return {"val_loss": float(np.average(losses, weights=weights)) if losses else math.nan,
            f"recall@{_RECALL_K}": hits / len(pairs)}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def train_adapter(encoder: Encoder, train_pairs: Sequence[Pair], config: AdapterConfig,
                  progress: bool = True) -> tuple[Adapter, History]:
    """Fit LoRA on a copy of `encoder` (left unchanged); the adapter keeps the best-validated weights."""
    started = time.perf_counter()
    _seed_everything(config.seed)
    pairs = list(train_pairs)
    train, val = split_pairs(pairs, config.validation_fraction, config.seed)
    if len(train) < 2:
        raise ValueError(f"need at least 2 training pairs after the validation split, got {len(train)}")
    student = attach_lora(encoder, config)
    model = student.model
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    evals: list[dict[str, float]] = []
    best_loss, best_step, best_weights, stale = math.inf, 0, _trainable(model), 0

    def validate(step: int) -> bool:
        """Record a validation; True when patience has run out."""
        nonlocal best_loss, best_step, best_weights, stale
        metrics = {"step": step, **evaluate(student, val, config)}
        evals.append(metrics)
        if metrics["val_loss"] < best_loss:
            best_loss, best_step, best_weights, stale = metrics["val_loss"], step, _trainable(model), 0
        else:
            stale += 1
        return stale >= config.patience

    if val:
        validate(0)
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = min(config.max_steps or math.inf, config.epochs * per_epoch)
    losses: list[float] = []
    stopped_early = False
    with tqdm(total=total, desc="adapter", unit="step", disable=not progress) as bar:
        for _ in range(config.epochs):
            for batch in _batches(train, config.batch_size, rng):
                model.train()
                anchors = student.embed([train[i][0] for i in batch])
                positives = student.embed([train[i][1] for i in batch])
                loss = mnrl_loss(anchors, positives, config.scale)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                bar.update()
                bar.set_postfix(loss=f"{losses[-1]:.3f}", best_val=f"{best_loss:.3f}")
                if val and len(losses) % config.eval_every == 0 and validate(len(losses)):
                    stopped_early = True
                if stopped_early or len(losses) == config.max_steps:
                    break
            if stopped_early or len(losses) == config.max_steps:
                break
    if val and evals[-1]["step"] != len(losses):
        validate(len(losses))
    if val:
        with torch.no_grad():  # back to the best validated weights
            for name, p in model.named_parameters():
                if name in best_weights:
                    p.copy_(best_weights[name])
    else:
        best_step = len(losses)
    model.eval()
    history = History(tuple(losses), tuple(evals), best_step, stopped_early, time.perf_counter() - started)
    best = next((e for e in evals if e["step"] == best_step), {})
    card = {
        "data_sha256": pairs_sha256(pairs),
        "n_pairs": {"train": len(train), "validation": len(val)},
        "metrics": {
            "best_val_loss": best.get("val_loss"), f"best_recall@{_RECALL_K}": best.get(f"recall@{_RECALL_K}"),
            "base_val_loss": evals[0]["val_loss"] if evals else None,
            f"base_recall@{_RECALL_K}": evals[0][f"recall@{_RECALL_K}"] if evals else None,
            "steps": len(losses), "best_step": best_step, "stopped_early": stopped_early,
            "seconds": round(history.seconds, 2),
        },
        "evals": list(evals),
    }
    return Adapter(student, config, card), history


def train_adapter_on_data(data: Dataset, out_dir: Path | str, config: AdapterConfig | None = None,
                          progress: bool = True, max_pairs: int = 20_000,
                          encoder: Encoder | None = None) -> Path:
    """Mine pairs from `data` (already the training split), train on the base encoder, save; name = folder name."""
    config = config or AdapterConfig()
    out_dir = Path(out_dir)
    pairs = mine_pairs(data, seed=config.seed, max_pairs=max_pairs)
    if not pairs:
        raise ValueError(f"dataset {data.name!r} has no purchased products to mine pairs from")
    adapter, _ = train_adapter(encoder or Encoder.base(), pairs, config, progress=progress)
    adapter.card["data"] = {"name": data.name, "orders": len(data.orders), "max_pairs": max_pairs}
    return adapter.save(out_dir)
