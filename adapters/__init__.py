"""Sentence encoder and its LoRA adapters: mine pairs, train, save in peft's format, find by name."""

from adapters.encoder import BASE_NAME, Encoder, base_model_path
from adapters.lora import Adapter, AdapterConfig, attach_lora
from adapters.pairs import mine_pairs, pairs_sha256, product_text
from adapters.registry import list_adapters, resolve
from adapters.train import History, evaluate, mnrl_loss, split_pairs, train_adapter, train_adapter_on_data

__all__ = [
    "BASE_NAME", "Encoder", "base_model_path",
    "Adapter", "AdapterConfig", "attach_lora",
    "mine_pairs", "pairs_sha256", "product_text",
    "list_adapters", "resolve",
    "History", "evaluate", "mnrl_loss", "split_pairs", "train_adapter", "train_adapter_on_data",
]
