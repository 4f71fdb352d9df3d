"""The multi-task ranker: MMoE's synthetic benchmark, masked losses, persistence, attributions."""

import numpy as np
import pytest
import torch

from ranking.model import (
    MultiTaskRanker,
    RankerConfig,
    TaskSpec,
    fit,
    gradient_x_input,
    masked_loss,
    predict,
)

BIN_REG = (TaskSpec("click", "binary"), TaskSpec("value", "regression", 0.5))


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # deterministic and fair timings on a 2-core box
    torch.manual_seed(0)


# Ma et al. 2018, sec. 3.2: alpha_i, beta_i are "given parameters" whose values the paper does not
# state (its N(0, 0.01) is the label noise epsilon). Fixed once here, drawn from N(0, 1): with
# these f(z) = z + sum_i sin(alpha_i z + beta_i) is clearly non-linear (a straight line in z leaves
# ~60% of its variance unexplained), yet learnable from a few thousand rows.
_SINE_ALPHA, _SINE_BETA = np.random.default_rng(1000).normal(size=(2, 10))


def _sine_f(z: np.ndarray) -> np.ndarray:
    return z + np.sin(np.multiply.outer(z, _SINE_ALPHA) + _SINE_BETA).sum(-1)


def _sine_tasks(rho: float, seed: int, n: int, d: int = 100):
    """Ma et al. 2018 sec. 3.2 with c=1, m=10: unit u1 orthogonal to unit u2, w1 = u1,
    w2 = rho*u1 + sqrt(1-rho^2)*u2, x ~ N(0, I_d), y_k = f(w_k.x) + eps_k, eps_k ~ N(0, 0.1^2).
    The labels are then put in units of f's own spread: (y - mean f) / std f, with the mean and std
    of f(z), z ~ N(0, 1), taken by quadrature, one constant affine map for every rho and seed."""
    rng = np.random.default_rng(seed)
    u1, u2 = np.linalg.qr(rng.normal(size=(d, 2)))[0].T
    X = rng.normal(size=(n, d)).astype(np.float32)
    eps = rng.normal(0, 0.1, size=(2, n))
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    mean = np.sum(w * _sine_f(z))
    std = np.sqrt(np.sum(w * (_sine_f(z) - mean) ** 2))
    ws = {"a": u1, "b": rho * u1 + np.sqrt(1 - rho**2) * u2}
    return X, {t: ((_sine_f(X @ wt) + eps[k] - mean) / std).astype(np.float32)
               for k, (t, wt) in enumerate(ws.items())}


def _heldout_mse(architecture: str, rho: float, seed: int, n_train: int = 8000,
                 n_test: int = 2000) -> float:
    """Total held-out MSE over both tasks; the seed draws the data (u1, u2, x, noise), the
    initialisation and the batching. The paper's sizes: 8 single-layer experts of 16 units (14.8k
    parameters with gates and towers) against a 113-unit shared bottom (13.3k); towers of 8."""
    X, y = _sine_tasks(rho, seed, n_train + n_test)
    sizes = ({"n_experts": 8, "expert_hidden": (16,)} if architecture == "mmoe"
             else {"bottom_hidden": (113,)})
    tasks = (TaskSpec("a", "regression"), TaskSpec("b", "regression"))
    config = RankerConfig(n_features=X.shape[1], architecture=architecture, tasks=tasks,
                          tower_hidden=8, seed=seed, **sizes)
    model = MultiTaskRanker(config)
    fit(model, X[:n_train], {t: v[:n_train] for t, v in y.items()},
        {t: np.ones(n_train, bool) for t in y}, epochs=40, batch_size=256, lr=3e-3,
        val_fraction=0.2, patience=5, seed=seed)
    p = predict(model, X[n_train:])
    return float(sum(np.mean((p[t] - y[t][n_train:]) ** 2) for t in y))


def test_mmoe_beats_shared_bottom_when_tasks_are_uncorrelated():
    # Sec. 5.1 of the paper at its sizes; both models get the same Adam, lr and early stopping.
    # lr 3e-3 is the shared bottom's best of 1e-3/3e-3/1e-2 (rho=0: 0.099/0.077/0.126): at 1e-2 its
    # 8-unit ReLU towers on 113 non-negative features can die and one task stalls near 0.2.
    # Held-out total MSE (noise floor 0.009), mean +- std over seeds 0-2:
    #   rho   mmoe            shared bottom
    #   0.0   0.056 +- 0.005  0.077 +- 0.012
    #   0.5   0.053 +- 0.004  0.074 +- 0.006
    #   0.9   0.054 +- 0.006  0.090 +- 0.023
    #   1.0   0.051 +- 0.006  0.105 +- 0.029
    # Reproduced: MMoE ahead at every correlation (obs. 3) and nearly insensitive to it (obs. 2).
    # Not reproduced: the shared bottom degrading as correlation falls. Here it does the opposite
    # (0.105 at rho=1 -> 0.077 at rho=0; 0.126 -> 0.099 at lr 1e-3), so its gap to MMoE is widest
    # at rho=1 and this test asserts no correlation-driven gap.
    # Thresholds: MMoE/bottom measured 0.73 (rho=0) and 0.49 (rho=1), asserted < 0.85; MMoE's
    # rho=0/rho=1 ratio measured 1.10, asserted within 1.25x either way.
    mse = {(arch, rho): float(np.mean([_heldout_mse(arch, rho, s) for s in range(3)]))
           for arch in ("mmoe", "shared_bottom") for rho in (0.0, 1.0)}
    for rho in (0.0, 1.0):
        assert mse["mmoe", rho] < 0.85 * mse["shared_bottom", rho], mse
    assert abs(np.log(mse["mmoe", 0.0] / mse["mmoe", 1.0])) < np.log(1.25), mse


def _small_problem(n: int = 1200, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    click = (rng.random(n) < 1 / (1 + np.exp(-2 * X[:, 0] + X[:, 1]))).astype(np.float32)
    value = (X[:, 2] * X[:, 3] + 0.5 * X[:, 0] + rng.normal(0, 0.1, n)).astype(np.float32)
    masks = {"click": np.ones(n, bool), "value": click.astype(bool)}  # value known only on clicks
    value[~masks["value"]] = np.nan  # unlabelled rows may hold anything
    return X, {"click": click, "value": value}, masks


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe", "ple"])
def test_every_architecture_trains(architecture):
    X, labels, masks = _small_problem()
    config = RankerConfig(n_features=8, architecture=architecture, tasks=BIN_REG,
                          expert_hidden=(16,), bottom_hidden=(32,), tower_hidden=8)
    history = fit(MultiTaskRanker(config), X, labels, masks, epochs=15, batch_size=128,
                  lr=1e-2, val_fraction=0.2, patience=15, seed=0)
    assert np.isfinite(history["train"]).all() and np.isfinite(history["val"]).all()
    assert history["train"][-1] < 0.7 * history["train"][0]
    assert min(history["val"]) < 0.8 * history["val"][0]


def test_fit_is_deterministic_for_a_seed():
    X, labels, masks = _small_problem(n=400)
    config = RankerConfig(n_features=8, architecture="ple", tasks=BIN_REG, dropout=0.2)
    runs = [fit(MultiTaskRanker(config), X, labels, masks, epochs=3, batch_size=64, lr=1e-2,
                val_fraction=0.25, patience=3, seed=7) for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe", "ple"])
def test_an_unlabelled_task_adds_exactly_zero_and_no_gradient(architecture):
    config = RankerConfig(n_features=8, architecture=architecture, tasks=BIN_REG)
    model = MultiTaskRanker(config)
    X, labels, masks = _small_problem(n=64)
    masks = {"click": masks["click"], "value": np.zeros(64, bool)}
    out = model(torch.as_tensor(X))
    total, per_task = masked_loss(out, {t: torch.as_tensor(v) for t, v in labels.items()},
                                  {t: torch.as_tensor(v) for t, v in masks.items()}, config)
    assert per_task["value"].item() == 0.0
    assert torch.isfinite(total) and total.item() == per_task["click"].item()
    total.backward()
    for p in model.towers["value"].parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.towers["click"].parameters())


def test_no_labelled_rows_at_all_gives_zero_not_nan():
    config = RankerConfig(n_features=4, tasks=BIN_REG)
    out = MultiTaskRanker(config)(torch.randn(5, 4))
    nan = torch.full((5,), float("nan"))
    none = torch.zeros(5, dtype=torch.bool)
    total, _ = masked_loss(out, {"click": nan, "value": nan}, {"click": none, "value": none}, config)
    assert total.item() == 0.0


@pytest.mark.parametrize("architecture", ["shared_bottom", "mmoe", "ple"])
def test_save_load_round_trip_predicts_identically(architecture, tmp_path):
    config = RankerConfig(n_features=6, architecture=architecture, n_experts=3,
                          n_shared_experts=1, n_task_experts=2, seed=3)
    model = MultiTaskRanker(config)
    X = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    loaded = MultiTaskRanker.load(model.save(tmp_path / "ranker"))
    assert loaded.config == config
    assert sorted(p.name for p in (tmp_path / "ranker").iterdir()) == ["config.json",
                                                                       "model.safetensors"]
    before, after = predict(model, X), predict(loaded, X)
    assert set(before) == {"relevance", "purchase", "margin", "churn"}
    for t in before:
        np.testing.assert_array_equal(before[t], after[t])
    assert ((before["purchase"] > 0) & (before["purchase"] < 1)).all()  # binary: probabilities


BAD_CONFIGS = [
    ({"n_features": 0}, "n_features"),
    ({"n_features": 2.5}, "n_features"),
    ({"architecture": "moe"}, "architecture"),
    ({"expert_hidden": ()}, "expert_hidden"),
    ({"bottom_hidden": (32, 0)}, r"bottom_hidden\[1\]"),
    ({"n_experts": 0}, "n_experts"),
    ({"n_shared_experts": -1}, "n_shared_experts"),
    ({"n_shared_experts": 0, "n_task_experts": 0}, "n_shared_experts"),
    ({"n_task_experts": True}, "n_task_experts"),
    ({"tower_hidden": 0}, "tower_hidden"),
    ({"dropout": 1.0}, "dropout"),
    ({"tasks": ()}, "tasks"),
    ({"tasks": (TaskSpec("a", "binary"), TaskSpec("a", "regression"))}, "tasks"),
    ({"tasks": ({"name": "a", "kind": "ordinal"},)}, "tasks.kind"),
    ({"tasks": ({"name": "a b", "kind": "binary"},)}, "tasks.name"),
    ({"tasks": ({"name": "a", "kind": "binary", "weight": -1.0},)}, "tasks.weight"),
    ({"seed": "0"}, "seed"),
    ({"tasks": ({"name": "a", "kind": "regression", "given": "b"}, {"name": "b", "kind": "binary"})}, "tasks.given"),
    ({"tasks": ({"name": "a", "kind": "binary", "given": "a"},)}, "tasks.given"),
    ({"tasks": ({"name": "a", "kind": "binary", "given": "nope"},)}, "tasks.given"),
    ({"tasks": ({"name": "a", "kind": "binary", "given": "m"}, {"name": "m", "kind": "regression"})}, "tasks.given"),
    ({"tasks": ({"name": "a", "kind": "binary", "given": "b"}, {"name": "b", "kind": "binary", "given": "c"},
                {"name": "c", "kind": "binary"})}, "tasks.given"),
    ({"bias_inputs": 4}, "bias_inputs"),
    ({"bias_inputs": -1}, "bias_inputs"),
    ({"tasks": ({"name": "m", "kind": "regression", "position_bias": True},)}, "tasks.position_bias"),
    ({"tasks": ({"name": "a", "kind": "binary", "given": "b", "position_bias": True},
                {"name": "b", "kind": "binary"})}, "tasks.position_bias"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_CONFIGS)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        RankerConfig(**{"n_features": 4, **overrides})


def test_gradient_x_input_finds_the_one_feature_that_matters():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 6)).astype(np.float32)
    tasks = (TaskSpec("only0", "regression"),)
    y = {"only0": (3 * X[:, 0] + rng.normal(0, 0.05, 1500)).astype(np.float32)}
    model = MultiTaskRanker(RankerConfig(n_features=6, architecture="mmoe", tasks=tasks))
    fit(model, X, y, {"only0": np.ones(1500, bool)}, epochs=20, batch_size=128, lr=1e-2,
        val_fraction=0.2, patience=5, seed=0)
    attribution = gradient_x_input(model, X[:300], "only0")
    assert attribution.shape == (300, 6)
    strength = np.abs(attribution).mean(axis=0)
    assert strength.argmax() == 0 and strength[0] > 5 * np.sort(strength)[-2]
    with pytest.raises(ValueError, match="task"):
        gradient_x_input(model, X[:3], "margin")


def test_listwise_loss_hand_case_and_invariances():
    from ranking.model import listwise_loss
    z = torch.tensor([2.0, 0.0, 1.0, 5.0, -1.0])
    y = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    m = torch.tensor([True, True, True, True, False])
    g = torch.tensor([7, 7, 7, 9, 9])
    # list 7 chose its first row: -log(e^2 / (e^2 + e^0 + e^1)); list 9 chose nothing; row 4 is masked
    expected = -(2.0 - np.log(np.exp(2) + 1 + np.exp(1)))
    assert float(listwise_loss(z, y, m, g)) == pytest.approx(expected, rel=1e-6)
    shifted = z + torch.tensor([3.0, 3.0, 3.0, -2.0, 0.0])   # a constant per list changes nothing
    assert float(listwise_loss(shifted, y, m, g)) == pytest.approx(expected, rel=1e-6)
    assert float(listwise_loss(z, torch.zeros(5), m, g)) == 0.0  # no choice, no loss


def test_a_listwise_term_learns_the_choice_within_lists_that_the_list_level_confounds():
    # Whether anything in a list is clicked depends on a list-level draw the features can't see;
    # which item is clicked depends on x. The listwise term ranks by x at least as well.
    rng = np.random.default_rng(0)
    n_lists, per = 600, 6
    X = rng.normal(size=(n_lists * per, 4)).astype(np.float32)
    group = np.repeat(np.arange(n_lists), per)
    y = np.zeros(len(X), np.float32)
    for gi in range(n_lists):
        if rng.random() < 0.3:  # a list with a click
            rows = np.flatnonzero(group == gi)
            p = np.exp(2 * X[rows, 0]) / np.exp(2 * X[rows, 0]).sum()
            y[rows[rng.choice(per, p=p)]] = 1.0
    tasks = (TaskSpec("click", "binary"),)
    ranked = MultiTaskRanker(RankerConfig(n_features=4, architecture="shared_bottom", tasks=tasks, bottom_hidden=(16,)))
    fit(ranked, X, {"click": y}, {"click": np.ones(len(X), bool)}, epochs=15, batch_size=60, lr=1e-2, seed=0,
        group=group, listwise={"click": 1.0})
    s = predict(ranked, X)["click"]
    hits = [np.argmax(s[group == gi]) == np.argmax(y[group == gi]) for gi in range(n_lists) if y[group == gi].any()]
    assert np.mean(hits) > 0.4   # chance is 1/6; the true choice model gets ~0.5 (softmax of 2x)
    with pytest.raises(ValueError, match="listwise"):
        fit(ranked, X, {"click": y}, {"click": np.ones(len(X), bool)}, listwise={"click": 1.0})


def _funnel(n: int, seed: int):
    """Clicks depend on x0, carts (always after a click) on x1: P(cart) = P(click) P(cart | click)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    click = rng.random(n) < 1 / (1 + np.exp(-(2 * X[:, 0] - 1.5)))
    cart = click & (rng.random(n) < 1 / (1 + np.exp(-(1.5 * X[:, 1] - 1.0))))
    return X, {"click": click.astype(np.float32), "cart": cart.astype(np.float32)}


def _cart_log_loss(tasks, seed: int) -> float:
    X, y = _funnel(3000, seed)
    Xt, yt = _funnel(20000, 100 + seed)
    model = MultiTaskRanker(RankerConfig(n_features=6, architecture="mmoe", tasks=tasks, expert_hidden=(16,),
                                         tower_hidden=8, seed=seed))
    names = [t.name for t in tasks]
    fit(model, X, {t: y[t] for t in names}, {t: np.ones(len(X), bool) for t in names}, epochs=40,
        batch_size=128, lr=3e-3, val_fraction=0.2, patience=5, seed=seed)
    p = np.clip(predict(model, Xt)["cart"], 1e-6, 1 - 1e-6)
    return float(-np.mean(yt["cart"] * np.log(p) + (1 - yt["cart"]) * np.log(1 - p)))


def test_a_cart_given_the_click_learns_from_the_clicks_too():
    # ~9% of rows are carts; the click that every cart needs is 3x as common. Given the click, the
    # cart head borrows its dense evidence (ESMM); alone it must find x0 from the carts. Measured
    # held-out log loss, seeds 0-4: given 0.241, 0.242, 0.238, 0.234, 0.238 vs alone 0.246, 0.247,
    # 0.245, 0.240, 0.241 (given ahead on every seed).
    given = (TaskSpec("click", "binary"), TaskSpec("cart", "binary", given="click"))
    alone = (TaskSpec("cart", "binary"),)
    pairs = [(_cart_log_loss(given, s), _cart_log_loss(alone, s)) for s in range(3)]
    assert all(g < a for g, a in pairs), pairs


def test_a_given_task_is_never_likelier_than_what_it_needs():
    X, y = _funnel(500, 0)
    tasks = (TaskSpec("click", "binary"), TaskSpec("cart", "binary", given="click"))
    model = MultiTaskRanker(RankerConfig(n_features=6, tasks=tasks))
    fit(model, X, y, {t: np.ones(500, bool) for t in y}, epochs=2, seed=0)
    p = predict(model, X * 5)  # far from the data too
    assert np.all(p["cart"] <= p["click"] + 1e-6) and np.all(p["cart"] > 0)
    with torch.no_grad():
        z = model(torch.as_tensor(X))        # logits: the product is exact, not an approximation
    conditional = model.towers["cart"](model._trunk(torch.as_tensor(X))["cart"]).squeeze(-1)
    want = torch.sigmoid(z["click"]) * torch.sigmoid(conditional)
    assert torch.allclose(torch.sigmoid(z["cart"]), want, atol=1e-5)


def _examined_clicks(n_lists: int, seed: int, per: int = 10):
    """Clicks = look at the position (1 / (1 + p)) x attraction sigmoid(2 x0 - 1); the logging policy
    puts items high by x1, which clicks ignore. Inputs: x0, x1, log1p(position) as the last column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists, per, 2))
    position = np.argsort(np.argsort(-(x[..., 1] + 0.3 * rng.normal(size=(n_lists, per))), axis=1), axis=1)
    look = 1 / (1 + position)
    click = rng.random((n_lists, per)) < look / (1 + np.exp(-(2 * x[..., 0] - 1)))
    X = np.concatenate([x, np.log1p(position)[..., None]], axis=2).reshape(-1, 3).astype(np.float32)
    return X, click.reshape(-1).astype(np.float32)


def test_a_position_tower_learns_the_look_and_cannot_reorder_a_list():
    # Guo et al. 2019 (PAL): the position adds to the click logit through a shallow tower of its own,
    # so an item's score at the top (how it is served) is free of where the logs happened to show it.
    X, click = _examined_clicks(3000, seed=0)
    tasks = (TaskSpec("click", "binary", position_bias=True), TaskSpec("cart", "binary", given="click"))
    model = MultiTaskRanker(RankerConfig(n_features=3, bias_inputs=1, tasks=tasks, expert_hidden=(16,), tower_hidden=8))
    fit(model, X, {"click": click}, {"click": np.ones(len(X), bool)}, epochs=8, batch_size=256, lr=3e-3, seed=0)
    rng = np.random.default_rng(1)
    items = rng.normal(size=(200, 2)).astype(np.float32)
    at = {p: np.c_[items, np.full(200, np.log1p(p), np.float32)] for p in range(10)}
    with torch.no_grad():
        logit = {p: model(torch.as_tensor(at[p]))["click"].numpy() for p in at}
        cart = {p: model(torch.as_tensor(at[p]))["cart"].numpy() for p in (0, 9)}
    shift = {p: logit[p] - logit[0] for p in at}
    for p in at:  # the same shift for every item: the position cannot reorder a list
        np.testing.assert_allclose(shift[p], shift[p][0], atol=1e-5)
    assert not np.allclose(cart[9] - cart[0], (cart[9] - cart[0])[0])  # the cart, given the click, inherits it
    # ...and it is the look: falling with the position, about log 1 / (1 + p) at these click rates
    curve = np.array([shift[p][0] for p in range(10)])
    assert np.all(np.diff(curve) < 0.05) and -3.0 < curve[9] < -1.5, curve
    # Served at the top, items are ordered by what attracts clicks (x0). Measured correlation, seeds 0-2:
    # 0.96, 0.96, 0.96; a model blind to the position 0.87 (it also credits x1, where the logs showed them).
    assert np.corrcoef(logit[0], items[:, 0])[0, 1] > 0.93
