"""LoRA adapters on a tiny BERT built in code: the loss falls, save/load is exact, early stopping keeps the best."""

from __future__ import annotations

import dataclasses
import json
import string

import numpy as np
import pytest
import torch

from adapters import (Adapter, AdapterConfig, Encoder, evaluate, list_adapters, mine_pairs, pairs_sha256,
                      product_text, resolve, split_pairs, train_adapter, train_adapter_on_data)
from suggest.demo import make_demo_world
from suggest.errors import ArtifactError
from suggest.text import normalize

_COLORS = "red green blue black white pink gold gray".split()
_THINGS = "apple bean chip donut egg fig grape ham".split()
_AISLES = {"apple": "fruit", "fig": "fruit", "grape": "fruit", "bean": "pantry",
           "chip": "snacks", "donut": "bakery", "egg": "dairy", "ham": "meat"}


def _tiny_pairs() -> list[tuple[str, str]]:
    """64 products "red apple | fruit"; the anchor is what a shopper types: a cut of the name."""
    pairs = []
    for i, color in enumerate(_COLORS):
        for j, thing in enumerate(_THINGS):
            name = f"{color} {thing}"
            pairs.append((name[: len(color) + 1 + 1 + (i + j) % 3], f"{name} | {_AISLES[thing]}"))
    return pairs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Encoder:
    """A 2-layer, 32-wide BERT with a word + character WordPiece vocab, saved so a card can point at it."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted(set(_COLORS + _THINGS + list(_AISLES.values())))
    chars = list(string.ascii_lowercase + string.digits)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "|", *words, *chars, *("##" + c for c in chars)]
    # transformers 5: BertTokenizer takes `vocab=` (a dict); a `vocab_file=` is silently ignored.
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64))
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Encoder.from_dir(path, name="tiny-bert")


_FAST = dict(lr=2e-2, batch_size=16, validation_fraction=0.0, max_steps=60, epochs=100, seed=1)


@pytest.fixture(scope="module")
def trained(tiny):
    before = tiny.encode(["red apple | fruit"])
    adapter, history = train_adapter(tiny, _tiny_pairs(), AdapterConfig(**_FAST), progress=False)
    assert np.array_equal(tiny.encode(["red apple | fruit"]), before), "training must not touch the base"
    return adapter, history


def test_training_makes_the_contrastive_loss_fall(trained):
    _, history = trained
    first, last = np.mean(history.train_loss[:5]), np.mean(history.train_loss[-5:])
    assert history.steps == 60
    assert last < 0.6 * first, (first, last)


def test_save_then_load_reproduces_embeddings(trained, tiny, tmp_path):
    adapter, _ = trained
    texts = [p for pair in _tiny_pairs()[:20] for p in pair]
    expected = adapter.encoder().encode(texts)
    assert not np.allclose(expected, tiny.encode(texts), atol=1e-3), "the adapter should have changed something"
    path = adapter.save(tmp_path / "tiny-v1")
    assert {"adapter_config.json", "adapter_model.safetensors", "card.json"} <= {p.name for p in path.iterdir()}
    # Unmerged LoRA computes the same float ops as before saving: exact.
    assert np.array_equal(Adapter.load(path, base=tiny).encoder().encode(texts), expected)
    assert np.array_equal(Adapter.load(path).encoder().encode(texts), expected)  # base found from the card
    # Merging folds B @ A into the weights: the same function up to float rounding.
    np.testing.assert_allclose(Encoder.load(path).encode(texts), expected, atol=1e-5)


def test_card_records_base_config_data_and_metrics(trained, tmp_path):
    adapter, history = trained
    path = adapter.save(tmp_path / "tiny-v2")
    card = json.loads((path / "card.json").read_text())
    assert card["name"] == "tiny-v2" and card["base"]["name"] == "tiny-bert"
    assert AdapterConfig.from_dict(card["config"]) == AdapterConfig(**_FAST)
    assert card["data_sha256"] == pairs_sha256(_tiny_pairs())
    assert card["metrics"]["steps"] == history.steps and card["created"]


def test_early_stopping_stops_before_max_steps_and_keeps_the_best_weights(tiny):
    # 48 training pairs and a high learning rate: validation loss falls, then overfitting turns it up.
    config = AdapterConfig(lr=2e-2, batch_size=16, validation_fraction=0.25, eval_every=5, patience=3,
                           max_steps=300, epochs=100, seed=3)
    adapter, history = train_adapter(tiny, _tiny_pairs(), config, progress=False)
    assert history.stopped_early and history.steps < 300
    val_losses = [e["val_loss"] for e in history.evals]
    best = int(np.argmin(val_losses))
    assert 0 < history.best_step == history.evals[best]["step"] < history.steps
    assert len(history.evals) - 1 - best == config.patience  # stopped exactly when patience ran out
    _, val = split_pairs(_tiny_pairs(), config.validation_fraction, config.seed)
    assert evaluate(adapter.encoder(), val, config)["val_loss"] == pytest.approx(min(val_losses), abs=1e-6)


BAD_CONFIGS = [
    ({"r": 0}, "r"), ({"r": 2.5}, "r"), ({"alpha": 0}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"target_modules": ()}, "target_modules"), ({"lr": -1e-4}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"weight_decay": -1}, "weight_decay"), ({"batch_size": 1}, "batch_size"), ({"epochs": 0}, "epochs"),
    ({"max_steps": 0}, "max_steps"), ({"scale": 0}, "scale"), ({"eval_every": 0}, "eval_every"),
    ({"patience": 0}, "patience"), ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"seed": "x"}, "seed"), ({"max_seq_len": 1}, "max_seq_len"), ({"batch_size": True}, "batch_size"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_CONFIGS)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"AdapterConfig\.{field} "):
        AdapterConfig(**kwargs)


def test_mine_pairs_is_deterministic_and_uses_only_purchased_products():
    world = make_demo_world(n_users=30, variants=3)
    data = dataclasses.replace(world, orders=world.orders[:40])  # as if the caller kept a training split
    assert mine_pairs(data, seed=5, max_pairs=300) == mine_pairs(data, seed=5, max_pairs=300)
    assert mine_pairs(data, seed=5, max_pairs=300) != mine_pairs(data, seed=6, max_pairs=300)
    bought = {data.catalog.get(pid) for o in data.orders for pid in o.product_ids}
    texts = {product_text(p, data.catalog.aisles) for p in bought}
    names = {normalize(p.name) for p in bought}
    aisles = {normalize(data.catalog.aisles[p.aisle_id]) for p in bought}
    pairs = mine_pairs(data, seed=5, max_pairs=300)
    assert len(pairs) == len(set(pairs)) == 300
    for anchor, positive in pairs:
        assert positive in texts
        assert anchor in texts or anchor in aisles or any(n.startswith(anchor) for n in names), anchor
    kinds = {"copurchase" if a in texts else "aisle" if a in aisles else "prefix" for a, _ in pairs}
    assert kinds == {"prefix", "aisle", "copurchase"}


def test_train_on_data_saves_a_named_adapter_the_registry_finds(tiny, tmp_path):
    data = make_demo_world(n_users=10, variants=2)
    config = AdapterConfig(batch_size=8, max_steps=3, eval_every=2, validation_fraction=0.2)
    path = train_adapter_on_data(data, tmp_path / "demo-v1", config, progress=False, max_pairs=80, encoder=tiny)
    assert path == tmp_path / "demo-v1"
    cards = list_adapters(tmp_path)
    assert list(cards) == ["demo-v1"] and cards["demo-v1"]["data"]["name"] == data.name
    assert cards["demo-v1"]["metrics"]["steps"] == 3
    assert resolve(tmp_path, "demo-v1") == path
    with pytest.raises(ArtifactError, match="known: demo-v1"):
        resolve(tmp_path, "nope")
    with pytest.raises(ArtifactError, match="plain folder name"):
        resolve(tmp_path, "../demo-v1")


@pytest.mark.slow
def test_real_base_ranks_related_text_higher_and_a_short_training_round_trips(tmp_path):
    from sentence_transformers import SentenceTransformer

    from adapters import base_model_path

    base = Encoder.base()
    texts = ["greek yogurt", "yogurt greek plain | yogurt", "paper towels | paper goods"]
    q, near, far = base.encode(texts)
    assert q @ near > q @ far
    reference = SentenceTransformer(str(base_model_path()), device="cpu", local_files_only=True)
    np.testing.assert_allclose(base.encode(texts), reference.encode(texts, normalize_embeddings=True), atol=1e-5)

    pairs = mine_pairs(make_demo_world(n_users=50), seed=0, max_pairs=400)
    config = AdapterConfig(batch_size=32, max_steps=4, eval_every=2, validation_fraction=0.1)
    adapter, history = train_adapter(base, pairs, config, progress=False)
    assert history.steps == 4 and len(history.evals) == 3
    path = adapter.save(tmp_path / "demo-real")
    expected = adapter.encoder().encode(texts)
    assert np.array_equal(Adapter.load(path, base=base).encoder().encode(texts), expected)
    np.testing.assert_allclose(Encoder.load(path).encode(texts), expected, atol=1e-5)
