"""LoRA adapters on the encoder's attention: their config, and (config, weights) on disk in peft's format.

An adapter folder holds what `PeftModel.save_pretrained` writes (adapter_config.json and
adapter_model.safetensors) plus `card.json`: the base model, the `AdapterConfig`, a checksum of the
training pairs, the training metrics, a date and a name.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from adapters.encoder import BASE_NAME, Encoder, base_model_path
from suggest.errors import ArtifactError

__all__ = ["AdapterConfig", "Adapter", "attach_lora", "CARD_FILE"]

CARD_FILE = "card.json"
_CARD_FORMAT = 1


@dataclass(frozen=True)
class AdapterConfig:
    """How the adapter is shaped and trained. Every field is checked once, here."""

    r: int = 8                      # LoRA rank: width of the low-rank update
    alpha: float = 16.0             # LoRA scaling numerator; the update is scaled by alpha / r
    dropout: float = 0.1            # dropout on the LoRA branch's input while training, in [0, 1)
    target_modules: tuple[str, ...] = ("query", "key", "value")  # BERT self-attention projections
    lr: float = 2e-4                # AdamW learning rate
    weight_decay: float = 0.01      # AdamW weight decay
    batch_size: int = 64            # pairs per step; every other positive in the batch is a negative
    epochs: int = 1                 # passes over the training pairs (training stops at max_steps first)
    max_steps: int | None = None    # hard cap on optimiser steps; None = epochs decide
    scale: float = 20.0             # logits = scale * cosine (1 / temperature); sentence-transformers MNRL uses 20
    eval_every: int = 50            # steps between validation runs
    patience: int = 3               # validations without a better validation loss before stopping
    validation_fraction: float = 0.1  # share of the pairs held out for validation, in [0, 1); 0 = none
    seed: int = 0                   # seeds torch, numpy and random; fixes LoRA init, data order and split
    max_seq_len: int = 32           # tokens per text; grocery names are short, longer ones are truncated

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        _check(self.r, "r", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        _check(self.alpha, "alpha", lambda v: _is_real(v) and v > 0, "a number > 0")
        _check(self.dropout, "dropout", lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)")
        _check(self.target_modules, "target_modules",
               lambda v: len(v) > 0 and all(isinstance(m, str) and m for m in v), "a non-empty tuple of names")
        _check(self.lr, "lr", lambda v: _is_real(v) and v > 0, "a number > 0")
        _check(self.weight_decay, "weight_decay", lambda v: _is_real(v) and v >= 0, "a number >= 0")
        # Two is the least that gives the in-batch loss a negative to learn from.
        _check(self.batch_size, "batch_size", lambda v: _is_int(v) and v >= 2, "an int >= 2")
        _check(self.epochs, "epochs", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        _check(self.max_steps, "max_steps", lambda v: v is None or (_is_int(v) and v >= 1), "None or an int >= 1")
        _check(self.scale, "scale", lambda v: _is_real(v) and v > 0, "a number > 0")
        _check(self.eval_every, "eval_every", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        _check(self.patience, "patience", lambda v: _is_int(v) and v >= 1, "an int >= 1")
        _check(self.validation_fraction, "validation_fraction", lambda v: _is_real(v) and 0 <= v < 1,
               "a number in [0, 1)")
        _check(self.seed, "seed", _is_int, "an int")
        _check(self.max_seq_len, "max_seq_len", lambda v: _is_int(v) and v >= 2, "an int >= 2")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"AdapterConfig: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if k == "target_modules" else v for k, v in d.items()})

    def lora_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), task_type="FEATURE_EXTRACTION")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(value: Any, name: str, ok, expected: str) -> None:
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        raise ValueError(f"AdapterConfig.{name} must be {expected}, got {value!r}")


def attach_lora(encoder: Encoder, config: AdapterConfig) -> Encoder:
    """A new Encoder whose transformer is a copy of `encoder`'s with fresh LoRA layers (the original is untouched)."""
    from peft import get_peft_model

    torch.manual_seed(config.seed)  # LoRA's A matrices are drawn at random
    # get_peft_model rewrites the modules it is given in place, so it gets a copy.
    model = get_peft_model(copy.deepcopy(encoder.model), config.lora_config())
    return Encoder(model, encoder.tokenizer, name=encoder.name, path=encoder.path, max_seq_len=config.max_seq_len)


@dataclass
class Adapter:
    """A trained LoRA adapter (unmerged) on its base encoder, with the card that describes it."""

    encoder_: Encoder               # the base with LoRA layers in it (a peft model)
    config: AdapterConfig
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.card.get("name", "unnamed")

    def encoder(self, merge: bool = False) -> Encoder:
        """The adapted encoder; `merge=True` folds LoRA into the base weights (a copy) for serving."""
        if not merge:
            return self.encoder_
        model = copy.deepcopy(self.encoder_.model).merge_and_unload()
        e = self.encoder_
        return Encoder(model, e.tokenizer, name=self.name, path=e.path, max_seq_len=e.max_seq_len)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder_.model.save_pretrained(str(path))
        card = {**self.card, "format": _CARD_FORMAT, "config": self.config.to_dict()}
        card["name"] = path.name  # the registry finds adapters by folder name
        card.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        card["base"] = {"name": self.encoder_.name, "path": self.encoder_.path}
        (path / CARD_FILE).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        self.card = card
        return path

    @classmethod
    def load(cls, path: Path | str, base: Encoder | None = None) -> Adapter:
        """Load an adapter; its base comes from the card unless given (a given base is copied, not changed)."""
        from peft import PeftModel

        path = Path(path)
        card = read_card(path)
        config = AdapterConfig.from_dict(card["config"])
        if base is None:
            base = _base_from_card(card, path)
            base_model = base.model
        else:  # PeftModel.from_pretrained injects LoRA into the module it gets: leave the caller's alone
            base_model = copy.deepcopy(base.model)
        model = PeftModel.from_pretrained(base_model, str(path))
        encoder = Encoder(model.eval(), base.tokenizer, name=base.name, path=base.path,
                          max_seq_len=config.max_seq_len)
        return cls(encoder, config, card)


def read_card(path: Path) -> dict[str, Any]:
    card_path = Path(path) / CARD_FILE
    if not card_path.exists() or not (Path(path) / "adapter_config.json").exists():
        raise ArtifactError(f"{path}: not an adapter folder (needs {CARD_FILE} and adapter_config.json)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{card_path}: corrupt card: {e}") from e
    if card.get("format") != _CARD_FORMAT:
        raise ArtifactError(f"{card_path}: card format {card.get('format')!r}, this code reads {_CARD_FORMAT}")
    return card


def _base_from_card(card: dict[str, Any], path: Path) -> Encoder:
    base = card.get("base", {})
    if base.get("name") == BASE_NAME:
        # The package's install path differs between machines; the name is what identifies it.
        return Encoder.from_dir(base_model_path(), name=BASE_NAME)
    if base.get("path") and Path(base["path"]).exists():
        return Encoder.from_dir(base["path"], name=base.get("name"))
    raise ArtifactError(f"{path}: base model {base!r} not found; pass base= to Adapter.load")
