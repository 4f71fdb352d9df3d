"""The adapter evaluation tells a better encoder from a worse one (plain-function encoders, no model)."""

import numpy as np

from eval.adapters import evaluate_encoders
from suggest.demo import make_demo_world
from tests.test_vector import trigram_embed


def random_embed(texts):
    rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
    v = rng.normal(size=(len(texts), 64)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_spelling_aware_encoder_beats_noise():
    data = make_demo_world(seed=3, n_users=150, variants=6)
    report = evaluate_encoders(data, {"trigram": trigram_embed, "noise": random_embed}, n_targets=150,
                               corpus_size=500, seed=1)
    good, bad = report["encoders"]["trigram"], report["encoders"]["noise"]
    assert good["prefix/recall@10"] > bad["prefix/recall@10"] + 0.2
    assert good["prefix/len=12/recall@10"] >= good["prefix/len=3/recall@10"]   # more typed, easier
    assert good["phrase/mrr@50"] > bad["phrase/mrr@50"]
    assert {"prefix/head/recall@10", "prefix/tail/n"} <= set(good)
    assert report["queries"] > report["targets"]
