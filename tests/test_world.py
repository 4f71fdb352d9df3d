"""The interaction world: reproducible, logged in the event schema, and true to its own configuration."""

import dataclasses

import numpy as np
import pytest

from eval.world.behaviour import examination, purchase_probability
from eval.world.business import with_business
from eval.world.config import WorldConfig
from eval.world.intents import IntentModel, typed_states
from eval.world.simulate import _scores, build_world, make_policy, policy_value, simulate
from suggest.demo import make_demo_world
from suggest.errors import DataError
from suggest.events import Impression, Visit, read_events
from suggest.loaders import load_data, write_business, write_data


@pytest.fixture(scope="module")
def world():
    return build_world(make_demo_world(seed=5, n_users=150, variants=8), progress=False)


def _events(folder):
    return [e for f in sorted(folder.glob("events-*.jsonl.gz")) for e in read_events(f)]


def test_a_seeded_run_is_reproducible_byte_for_byte(world, tmp_path):
    for name, seed, workers in [("a", 3, 1), ("b", 3, 1), ("c", 4, 1), ("d", 3, 2), ("e", 3, 2)]:
        simulate(world, "epsilon-greedy", 300, seed=seed, out=tmp_path / name, workers=workers, progress=False)
    read = {n: b"".join(f.read_bytes() for f in sorted((tmp_path / n).glob("events-*"))) for n in "abcde"}
    manifest = {n: (tmp_path / n / "manifest.json").read_text() for n in "abcde"}
    assert read["a"] == read["b"] and manifest["a"] == manifest["b"]
    assert read["d"] == read["e"] and manifest["d"] == manifest["e"]
    assert read["a"] != read["c"]  # another seed, another world


def test_logs_follow_the_event_schema(world, tmp_path):
    summary = simulate(world, "popularity", 200, seed=1, out=tmp_path, progress=False)
    events = _events(tmp_path)
    impressions = [e for e in events if isinstance(e, Impression)]
    visits = [e for e in events if isinstance(e, Visit)]
    assert len(impressions) == summary["impressions"] and len(visits) == summary["visits"]
    assert {e.surface for e in impressions} == {"suggest", "search"}
    assert sum(v.sessions for v in visits) == 200
    for e in impressions:
        assert 1 <= len(e.items) <= world.cfg.k and [i.position for i in e.items] == list(range(len(e.items)))
        assert e.list_propensity == 1.0 and all(i.propensity == 1.0 for i in e.items)  # greedy: no randomness
        assert all(0 <= c < len(e.items) for c in e.clicks)
        assert e.revenue == 0.0 or (e.surface == "search" and e.add_to_carts)
    assert sum(e.revenue for e in impressions) == pytest.approx(summary["gtv_per_session"] * 200)


def test_other_schema_versions_are_refused(world, tmp_path):
    simulate(world, "popularity", 5, seed=1, out=tmp_path, progress=False)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"schema_version": 99, "type": "visit"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: schema_version 99"):
        list(read_events(path))


def test_logged_propensities_are_exact_and_sum_to_one(world, tmp_path):
    simulate(world, "epsilon-greedy", 150, seed=2, out=tmp_path, progress=False)
    policy = make_policy("epsilon-greedy")
    checked = 0
    for e in _events(tmp_path):
        if not isinstance(e, Impression) or e.surface != "suggest":
            continue
        pool = world.suggestions(e.query)
        scores = _scores([s.score for s in pool])
        probs = policy.position_probabilities(scores, world.cfg.k)   # (pool, k)
        assert np.allclose(probs.sum(axis=0)[: len(e.items)], 1.0)   # each shown position holds someone
        texts = [s.text for s in pool]
        for item in e.items:
            assert item.propensity == pytest.approx(probs[texts.index(item.item), item.position])
        checked += 1
    assert checked > 100


def test_plackett_luce_logs_list_propensities(world, tmp_path):
    simulate(world, "plackett-luce", 100, seed=2, out=tmp_path, progress=False)
    imps = [e for e in _events(tmp_path) if isinstance(e, Impression)]
    assert all(0.0 < e.list_propensity <= 1.0 and all(i.propensity is None for i in e.items) for e in imps)
    assert len({e.list_propensity for e in imps}) > 10


def test_click_through_falls_with_position_as_configured(world):
    # Under a uniform policy relevance is independent of position, so CTR(p) / CTR(0) is the
    # configured examination probability 1 / (1 + p) ** eta.
    summary = simulate(world, "uniform", 2500, seed=7, progress=False)
    ctr = np.array(summary["ctr_by_position"])
    exam = np.array(examination(world.cfg.k, world.cfg.examination_eta))
    assert np.all(np.diff(ctr[:5]) < 0)
    np.testing.assert_allclose(ctr[1:5] / ctr[0], exam[1:5] / exam[0], rtol=0.25)


def test_purchase_probability_falls_with_price_against_the_reference():
    cfg = WorldConfig()
    assert purchase_probability(0.75, 1.0, cfg) == pytest.approx(0.75)   # at the aisle's median: as configured
    dear, cheap = purchase_probability(0.75, 2.0, cfg), purchase_probability(0.75, 0.5, cfg)
    assert cheap > 0.75 > dear > 0.0 and cheap < 1.0
    assert purchase_probability(0.75, 2.0, WorldConfig(price_sensitivity=0.0)) == 0.75
    assert purchase_probability(0.0, 0.5, cfg) == 0.0 and purchase_probability(0.3, 0.0, cfg) == 0.3  # no price: base


def _cart_rate_by_price(world, sessions: int, out) -> tuple[float, float]:
    """Share of clicked search products that went into the cart: (cheaper than 0.8 x, dearer than 1.25 x
    their aisle's median price)."""
    simulate(world, "uniform", sessions, seed=12, out=out, progress=False)
    carts = {"cheap": [0, 0], "dear": [0, 0]}
    for imp in _events(out):
        if not isinstance(imp, Impression) or imp.surface != "search":
            continue
        for item in imp.items:
            ratio = world.price_ratio(item.product_ids[0])
            band = "cheap" if ratio < 0.8 else "dear" if ratio > 1.25 else None
            if band and item.position in imp.clicks:
                carts[band][0] += item.product_ids[0] in imp.add_to_carts
                carts[band][1] += 1
    return carts["cheap"][0] / carts["cheap"][1], carts["dear"][0] / carts["dear"][1]


def test_shoppers_buy_dear_products_less_once_clicked(world, tmp_path):
    # Clicks are price-blind; the cart is not. Without price sensitivity the two bands convert alike.
    cheap, dear = _cart_rate_by_price(world, 2000, tmp_path / "priced")
    blind = dataclasses.replace(world, cfg=dataclasses.replace(world.cfg, price_sensitivity=0.0))
    cheap0, dear0 = _cart_rate_by_price(blind, 2000, tmp_path / "blind")
    assert cheap - dear > 0.08
    assert abs(cheap0 - dear0) < cheap - dear - 0.05


def test_ground_truth_values_rank_policies(world):
    best = policy_value(world, "popularity", 1500, seed=3)
    worst = policy_value(world, "uniform", 1500, seed=3)
    assert best == policy_value(world, "popularity", 1500, seed=3)   # rollouts are seeded
    assert best["gtv_per_session"] > worst["gtv_per_session"] and best["success_rate"] > worst["success_rate"]
    assert 0.0 < best["return_rate"] < 1.0


def test_business_attributes_and_their_csv_round_trip(tmp_path):
    data = with_business(make_demo_world(seed=2, n_users=20, variants=3), seed=4)
    assert all(p > 0 for p in data.prices.values()) and len(data.prices) == len(data.catalog)
    assert all(0.08 <= m <= 0.40 for m in data.margin_rates.values())
    brands = {p.brand for p in data.catalog.products}
    assert data.campaigns and all(c.brand in brands and c.bid > 0 for c in data.campaigns)
    write_data(data, tmp_path / "data")
    write_business(data, tmp_path / "biz")
    for back in (load_data(tmp_path / "data"), load_data(tmp_path / "data", business=tmp_path / "biz")):
        assert back.prices == pytest.approx(data.prices, abs=0.006)
        assert back.campaigns == data.campaigns and back.out_of_stock == data.out_of_stock
    real_prices = dataclasses.replace(data, prices={p: 1.0 for p in data.prices})
    assert with_business(real_prices, seed=9).prices == real_prices.prices  # real values always win


def test_typing_and_intents(world):
    import random
    assert typed_states("oat milk", random.Random(0), 0.0) == ["o", "oa", "oat", "oat ", "oat m", "oat mi", "oat mil", "oat milk"]
    typos = [s[-1] for s in (typed_states("strawberries", random.Random(i), 0.3) for i in range(50))]
    assert any(t != "strawberries" for t in typos)
    model = IntentModel(world.data.catalog)
    rng = random.Random(1)
    levels = [model.sample(p.product_id, False, rng) for p in world.data.catalog.products[:400]]
    assert all(i.target in i.acceptable and i.phrase for i in levels)
    assert {i.level for i in levels} == {"product", "brand_type", "type", "aisle"}


@pytest.mark.parametrize("field, value", [
    ("typo_rate", 1.5), ("look_rate", -0.1), ("k", 0), ("pool", 5), ("stores", -1), ("base_return", 2.0),
    ("intent_level_weights", {"galaxy": 1.0}),
])
def test_bad_world_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"WorldConfig.{field.split('[')[0]}"):
        WorldConfig(**{field: value})


def test_unknown_policy_and_empty_split(world):
    with pytest.raises(ValueError, match="unknown policy 'best'"):
        simulate(world, "best", 10, progress=False)


def test_simulate_command(tmp_path, capsys):
    from suggest.cli import main

    out = tmp_path / "logs"
    assert main(["simulate", "--demo", "--sessions", "40", "--policy", "popularity", "--out", str(out)]) == 0
    assert (out / "manifest.json").is_file() and list(out.glob("events-000.jsonl.gz"))
    assert '"sessions_per_second"' in capsys.readouterr().out
    assert main(["simulate", "--demo", "--sessions", "40", "--out", str(out)]) == 2  # never mixes two runs
    assert "already holds events" in capsys.readouterr().err
