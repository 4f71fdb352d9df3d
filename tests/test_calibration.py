"""Calibration: fitted maps fix known miscalibration, metrics match hand computation, files round-trip."""

import numpy as np
import pytest

from ranking.calibration import (
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    calibration_report,
    choose_calibrator,
    expected_calibration_error,
    load_calibrator,
    log_loss,
    reliability_curve,
    reliability_diagram,
)

N = 50_000  # enough that held-out ECE noise (about 0.005 here) sits well under the 0.02 bar


def _world(distort, seed, n=N):
    """Labels drawn with true P(y=1) = sigmoid(z); the 'model' reports distort(z) as its logit."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return distort(z), y


def _fit_and_score(calibrator, distort):
    train, held_out = _world(distort, seed=1), _world(distort, seed=2)
    return calibration_report(*held_out, calibrator.fit(*train))



@pytest.mark.parametrize("calibrator", [PlattScaling(), IsotonicCalibration()], ids=["platt", "iso"])
def test_scale_and_shift_miscalibration_is_fixed(calibrator):
    r = _fit_and_score(calibrator, lambda z: 3 * z + 1)
    assert r["ece_before"] > 0.1
    assert r["ece_after"] < 0.02
    assert r["log_loss_after"] < r["log_loss_before"]


def test_platt_recovers_the_inverse_map():
    # true logit is z and the model says 3z + 1, so the ideal map is (x - 1) / 3
    platt = PlattScaling().fit(*_world(lambda z: 3 * z + 1, seed=1))
    assert platt.a_ == pytest.approx(1 / 3, abs=0.02)
    assert platt.b_ == pytest.approx(-1 / 3, abs=0.03)


def test_platt_never_reverses_the_order_of_a_model_with_no_signal():
    # On these data the scores fall as the labels rise: the fit is the base rate, not an inverted map.
    z, y = _world(lambda z: -z, seed=1, n=5000)
    platt = PlattScaling().fit(z, y)
    p = platt.predict(z)
    assert platt.a_ == 0.0 and p == pytest.approx(np.full(len(z), y.mean()))
    assert PlattScaling().fit(-z, y).a_ > 0.5   # the same scores the right way round keep their slope


def test_temperature_fixes_pure_overconfidence_and_helps_with_a_shift():
    # a single T cannot move the 50% point, so on 3z + 1 it only helps; on 3z it is exact (T = 3)
    r = _fit_and_score(TemperatureScaling(), lambda z: 3 * z)
    assert r["ece_after"] < 0.02 and r["log_loss_after"] < r["log_loss_before"]
    shifted = _fit_and_score(TemperatureScaling(), lambda z: 3 * z + 1)
    assert shifted["ece_after"] < shifted["ece_before"] / 2
    assert shifted["log_loss_after"] < shifted["log_loss_before"]


@pytest.mark.parametrize("calibrator", [PlattScaling(), TemperatureScaling(), IsotonicCalibration()],
                         ids=["platt", "temperature", "iso"])
def test_calibrated_input_stays_calibrated(calibrator):
    r = _fit_and_score(calibrator, lambda z: z)
    assert r["ece_before"] < 0.015 and r["ece_after"] < 0.015
    assert r["log_loss_after"] < r["log_loss_before"] + 1e-3


def test_isotonic_output_is_monotone_and_in_range():
    iso = IsotonicCalibration().fit(*_world(lambda z: 3 * z + 1, seed=1, n=5000))
    p = iso.predict(np.linspace(-20, 20, 1001))
    assert np.all(np.diff(p) >= 0) and p.min() >= 0 and p.max() <= 1


def test_isotonic_pools_violators_by_hand():
    # sigmoid(0) = 0.5: labels 1,0 at x=0.5 tie-pool to 0.5; then p=0.7 (label 0) violates and pools
    logits = np.log(np.array([0.2, 0.5, 0.5, 0.7, 0.9]) / (1 - np.array([0.2, 0.5, 0.5, 0.7, 0.9])))
    iso = IsotonicCalibration().fit(logits, [0, 1, 0, 0, 1])
    np.testing.assert_allclose(iso.y_, [0.0, 1 / 3, 1.0])
    np.testing.assert_allclose(iso.x_, [0.2, (0.5 + 0.5 + 0.7) / 3, 0.9])


def test_choose_calibrator_prefers_platt_on_small_data_and_isotonic_when_it_wins():
    logits, y = _world(lambda z: 3 * z + 1, seed=1, n=2000)
    assert isinstance(choose_calibrator(logits, y, min_isotonic=5000), PlattScaling)
    # a non-logistic distortion (cubic) that two Platt parameters cannot undo
    logits, y = _world(lambda z: z ** 3, seed=1)
    assert isinstance(choose_calibrator(logits, y, min_isotonic=5000), IsotonicCalibration)


# hand-picked ECE cases: (probs, labels, n_bins, strategy, expected, why)
ECE_CASES = [
    ([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1], 2, "uniform", 0.5 * 0.35 + 0.5 * 0.15,
     "bins {.1,.2}: mean .15 vs 1/2 observed; {.8,.9}: mean .85 vs 1; each holds half"),
    ([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1], 2, "quantile", 0.25, "median edge gives the same split"),
    ([0.3, 0.3, 0.9], [0, 1, 1], 1, "uniform", abs(1.5 / 3 - 2 / 3), "one bin: |mean p - mean y|"),
    ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 15, "uniform", 0.0, "p = .5 with half positives is exact"),
    ([0.0, 1.0], [0, 1], 10, "uniform", 0.0, "0 and 1 fall in the end bins, both exact"),
    ([0.5, 1.0], [1, 0], 2, "uniform", abs(0.75 - 0.5),
     "0.5 opens the upper bin [.5, 1], sharing it with 1.0 (split bins would give 0.75)"),
]


@pytest.mark.parametrize("probs, labels, n_bins, strategy, expected, why", ECE_CASES,
                         ids=[c[-1][:30] for c in ECE_CASES])
def test_ece_matches_hand_computation(probs, labels, n_bins, strategy, expected, why):
    assert expected_calibration_error(probs, labels, n_bins, strategy) == pytest.approx(expected)


def test_reliability_curve_and_log_loss_by_hand():
    mean_p, freq, counts = reliability_curve([0.1, 0.2, 0.8, 0.9], [0, 1, 1, 1], n_bins=2)
    np.testing.assert_allclose(mean_p, [0.15, 0.85])
    np.testing.assert_allclose(freq, [0.5, 1.0])
    assert counts.tolist() == [2, 2]
    assert log_loss([0.5, 0.5], [0, 1]) == pytest.approx(np.log(2))
    assert np.isfinite(log_loss([0.0], [1]))  # clipped, not infinite


@pytest.mark.parametrize("calibrator", [PlattScaling(), TemperatureScaling(), IsotonicCalibration()],
                         ids=["platt", "temperature", "iso"])
def test_save_load_round_trips_predictions_exactly(calibrator, tmp_path):
    logits, y = _world(lambda z: 3 * z + 1, seed=1, n=5000)
    calibrator.fit(logits, y)
    path = calibrator.save(tmp_path / "cal.json")
    probe = np.linspace(-12, 12, 257)
    for loaded in (type(calibrator).load(path), load_calibrator(path)):
        assert type(loaded) is type(calibrator)
        assert np.array_equal(loaded.predict(probe), calibrator.predict(probe))


def _good():
    return np.array([0.1, 0.9]), np.array([0, 1])


# (callable, the argument the message must name, message regex)
BAD_INPUTS = [
    (lambda: PlattScaling().fit([0.1, 0.2], [0, 1, 1]), "labels: length 3 differs"),
    (lambda: PlattScaling().fit([0.1, 0.2], [0, 2]), "labels: expected only 0 and 1"),
    (lambda: TemperatureScaling().fit([0.1, np.nan], [0, 1]), "logits: .*finite"),
    (lambda: IsotonicCalibration().fit([0.1, np.inf], [0, 1]), "logits: .*finite"),
    (lambda: PlattScaling().fit([], []), "logits: must not be empty"),
    (lambda: PlattScaling().fit([[0.1, 0.2]], [[0, 1]]), "logits: expected a 1-D array"),
    (lambda: TemperatureScaling().fit([-2.0, -1.0, 1.0, 2.0], [1, 1, 0, 0]), "logits: not positively"),
    (lambda: expected_calibration_error([0.1, 1.2], [0, 1]), r"probs: .*\[0, 1\]"),
    (lambda: expected_calibration_error(*_good(), n_bins=0), "n_bins: expected a positive integer"),
    (lambda: expected_calibration_error(*_good(), strategy="equal"), "strategy: expected"),
    (lambda: log_loss([0.5, np.nan], [0, 1]), "probs: .*finite"),
    (lambda: PlattScaling(max_iter=0), "max_iter: expected a positive integer"),
    (lambda: TemperatureScaling(tol=-1.0), "tol: expected a positive number"),
    (lambda: choose_calibrator(*_good(), min_isotonic=0), "min_isotonic: expected"),
    (lambda: choose_calibrator(*_good(), holdout=1.0), "holdout: expected a fraction"),
    (lambda: reliability_diagram({}, "x.png"), "curves: need at least one"),
]


@pytest.mark.parametrize("call, match", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_or_mismatched_kind_on_load(tmp_path):
    path = tmp_path / "cal.json"
    path.write_text('{"kind": "beta"}')
    with pytest.raises(ValueError, match="kind: unknown calibrator"):
        load_calibrator(path)
    PlattScaling().fit(*_good()).save(path)
    with pytest.raises(ValueError, match="kind: .* holds 'platt', not 'isotonic'"):
        IsotonicCalibration.load(path)


def test_predict_before_fit_raises():
    with pytest.raises(RuntimeError, match="not fitted"):
        PlattScaling().predict([0.0])


def test_reliability_diagram_writes_a_png(tmp_path):
    logits, y = _world(lambda z: 3 * z + 1, seed=1, n=5000)
    after = PlattScaling().fit(logits, y).predict(logits)
    before = 1 / (1 + np.exp(-logits))
    path = reliability_diagram({"click before": (before, y), "click after": (after, y)},
                               tmp_path / "rel.png", title="click")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the PNG file signature
    assert path.stat().st_size > 1000
