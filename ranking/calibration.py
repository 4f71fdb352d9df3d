"""Post-hoc probability calibration for the ranker's binary tasks, and the metrics that judge it.

Every calibrator maps raw logits to probabilities and is fitted on held-out (logit, label) pairs:

    PlattScaling          sigmoid(a * logit + b)     fixes scale and shift; the safe default
    TemperatureScaling    sigmoid(logit / T)         fixes over/under-confidence only, not a shift
    IsotonicCalibration   monotone step fit (PAV) on sigmoid(logit), linearly interpolated;
                          needs thousands of points or it memorises noise

`choose_calibrator` picks between Platt and isotonic. Parameters are a handful of floats, so a
fitted calibrator is one JSON file (`save`/`load`) rather than config.json + safetensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Calibrator", "PlattScaling", "TemperatureScaling", "IsotonicCalibration",
    "choose_calibrator", "calibrator_from_dict", "load_calibrator",
    "expected_calibration_error", "log_loss", "reliability_curve", "reliability_diagram",
    "calibration_report",
]

_EPS = 1e-15  # log-loss clip: one confident mistake should cost a lot, not infinity


# ---------------------------------------------------------------- input checks

def _as_1d(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: all values must be finite (found NaN or inf)")
    return arr


def _pair(x_name: str, x: Any, labels: Any, *, probs: bool = False) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _as_1d(x_name, x), _as_1d("labels", labels)
    if xs.shape != ys.shape:
        raise ValueError(f"labels: length {ys.size} differs from {x_name} length {xs.size}")
    if not np.all((ys == 0) | (ys == 1)):
        raise ValueError(f"labels: expected only 0 and 1, got {sorted(set(ys.tolist()))[:5]}")
    if probs and (xs.min() < 0 or xs.max() > 1):
        raise ValueError(f"{x_name}: probabilities must lie in [0, 1]")
    return xs, ys


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # no overflow warning for large |z|


# ---------------------------------------------------------------- parametric fits

def _fit_logistic(X: np.ndarray, y: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Weights minimising mean log loss of sigmoid(X @ w): damped Newton (the loss is convex)."""
    def loss(w: np.ndarray) -> float:
        s = X @ w
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    w = np.zeros(X.shape[1])
    w[0] = 1.0  # start from the identity map: the uncalibrated model
    current = loss(w)
    for _ in range(max_iter):
        p = _sigmoid(X @ w)
        grad = X.T @ (p - y) / len(y)
        # tiny ridge keeps the Hessian invertible when the data are (nearly) separable
        hess = (X.T * (p * (1 - p))) @ X / len(y) + 1e-12 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        decrease = float(grad @ step)
        if decrease < tol:
            break
        t = 1.0
        while (new := loss(w - t * step)) > current - 1e-4 * t * decrease and t > 1e-10:
            t *= 0.5  # backtrack: a full Newton step can overshoot far from the optimum
        w, current = w - t * step, new
    return w


class _Serialisable:
    kind: str

    def to_dict(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path):
        calibrator = calibrator_from_dict(json.loads(Path(path).read_text()))
        if not isinstance(calibrator, cls):
            raise ValueError(f"kind: {path} holds {calibrator.kind!r}, not {cls.kind!r}")
        return calibrator

    def _fitted(self, attr: str) -> Any:
        value = getattr(self, attr)
        if value is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        return value


@dataclass
class _NewtonFit(_Serialisable):
    """The solver settings Platt and temperature scaling share."""

    max_iter: int = 50   # Newton steps; convergence is quadratic, 10-20 is typical
    tol: float = 1e-12   # stop when the Newton decrement falls below this

    def __post_init__(self) -> None:
        self.max_iter = _positive_int("max_iter", self.max_iter)
        if not self.tol > 0:
            raise ValueError(f"tol: expected a positive number, got {self.tol!r}")


@dataclass
class PlattScaling(_NewtonFit):
    """sigmoid(a * logit + b), fitted by Newton's method on log loss, with a >= 0.

    A calibrator must not reverse the model's order: where the logits fall as the labels rise, the
    model carries no usable signal on these data and the fit is the base rate (a = 0)."""

    a_: float | None = field(default=None, init=False)
    b_: float | None = field(default=None, init=False)
    kind = "platt"

    def fit(self, logits: Any, labels: Any) -> PlattScaling:
        z, y = _pair("logits", logits, labels)
        self.a_, self.b_ = map(float, _fit_logistic(np.c_[z, np.ones_like(z)], y, self.max_iter, self.tol))
        if self.a_ < 0:
            rate = float(np.clip(y.mean(), _EPS, 1 - _EPS))
            self.a_, self.b_ = 0.0, float(np.log(rate / (1 - rate)))
        return self

    def predict(self, logits: Any) -> np.ndarray:
        """(n,) float64 calibrated probabilities."""
        a = self._fitted("a_")
        return _sigmoid(a * _as_1d("logits", logits) + self.b_)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_iter": self.max_iter, "tol": self.tol,
                "a": self._fitted("a_"), "b": self.b_}

    @classmethod
    def from_dict(cls, d: dict) -> PlattScaling:
        out = cls(max_iter=d["max_iter"], tol=d["tol"])
        out.a_, out.b_ = float(d["a"]), float(d["b"])
        return out


@dataclass
class TemperatureScaling(_NewtonFit):
    """sigmoid(logit / T): one parameter, so it cannot move the 50% point (use Platt for that)."""

    temperature_: float | None = field(default=None, init=False)
    kind = "temperature"

    def fit(self, logits: Any, labels: Any) -> TemperatureScaling:
        z, y = _pair("logits", logits, labels)
        (inv_t,) = _fit_logistic(z[:, None], y, self.max_iter, self.tol)
        if inv_t <= 0:
            raise ValueError("logits: not positively related to labels; no temperature fits")
        self.temperature_ = float(1.0 / inv_t)
        return self

    def predict(self, logits: Any) -> np.ndarray:
        """(n,) float64 calibrated probabilities."""
        return _sigmoid(_as_1d("logits", logits) / self._fitted("temperature_"))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_iter": self.max_iter, "tol": self.tol,
                "temperature": self._fitted("temperature_")}

    @classmethod
    def from_dict(cls, d: dict) -> TemperatureScaling:
        out = cls(max_iter=d["max_iter"], tol=d["tol"])
        out.temperature_ = float(d["temperature"])
        return out


# ---------------------------------------------------------------- isotonic

def _pav(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool adjacent violators: (block mean x, block mean y), both increasing in x."""
    # equal inputs must get equal outputs, so tie-pool them before PAV
    ux, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    uy = np.bincount(inverse, weights=y) / counts
    sx, sy, sw = [], [], []  # per block: weighted sums of x and y, and weight
    for xi, yi, wi in zip((ux * counts).tolist(), (uy * counts).tolist(), counts.tolist()):
        sx.append(xi), sy.append(yi), sw.append(wi)
        while len(sw) > 1 and sy[-2] * sw[-1] >= sy[-1] * sw[-2]:  # mean(prev) >= mean(last)
            x1, y1, w1 = sx.pop(), sy.pop(), sw.pop()
            sx[-1] += x1; sy[-1] += y1; sw[-1] += w1
    w = np.asarray(sw, dtype=np.float64)
    return np.asarray(sx) / w, np.asarray(sy) / w


@dataclass
class IsotonicCalibration(_Serialisable):
    """Monotone map fitted by PAV on sigmoid(logit); predictions interpolate between block means."""

    x_: np.ndarray | None = field(default=None, init=False)  # (n_blocks,) mean input probability
    y_: np.ndarray | None = field(default=None, init=False)  # (n_blocks,) observed positive rate
    kind = "isotonic"

    def fit(self, logits: Any, labels: Any) -> IsotonicCalibration:
        z, y = _pair("logits", logits, labels)
        self.x_, self.y_ = _pav(_sigmoid(z), y)
        return self

    def predict(self, logits: Any) -> np.ndarray:
        """(n,) float64; flat beyond the outermost blocks, as PAV says nothing there."""
        knots = self._fitted("x_")
        return np.interp(_sigmoid(_as_1d("logits", logits)), knots, self.y_)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": self._fitted("x_").tolist(), "y": self.y_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> IsotonicCalibration:
        out = cls()
        out.x_, out.y_ = np.asarray(d["x"], dtype=np.float64), np.asarray(d["y"], dtype=np.float64)
        return out


class Calibrator(Protocol):
    kind: str

    def fit(self, logits: Any, labels: Any) -> Calibrator: ...

    def predict(self, logits: Any) -> np.ndarray: ...

    def to_dict(self) -> dict: ...

    def save(self, path: str | Path) -> Path: ...


_KINDS = {c.kind: c for c in (PlattScaling, TemperatureScaling, IsotonicCalibration)}


def calibrator_from_dict(d: dict) -> Calibrator:
    if d.get("kind") not in _KINDS:
        raise ValueError(f"kind: unknown calibrator {d.get('kind')!r}; expected one of {sorted(_KINDS)}")
    return _KINDS[d["kind"]].from_dict(d)


def load_calibrator(path: str | Path) -> Calibrator:
    return calibrator_from_dict(json.loads(Path(path).read_text()))


def choose_calibrator(logits: Any, labels: Any, min_isotonic: int = 5000,
                      holdout: float = 0.2, seed: int = 0) -> Calibrator:
    """Platt, or isotonic when n >= min_isotonic and it wins on held-out log loss; refit on all.

    Isotonic is only considered with plenty of data: on small sets its steps fit noise, and Platt's
    two parameters generalise better. The comparison uses a seeded `holdout` fraction of the data.
    """
    z, y = _pair("logits", logits, labels)
    min_isotonic = _positive_int("min_isotonic", min_isotonic)
    if not 0 < holdout < 1:
        raise ValueError(f"holdout: expected a fraction in (0, 1), got {holdout!r}")
    if len(z) < min_isotonic:
        return PlattScaling().fit(z, y)
    order = np.random.default_rng(seed).permutation(len(z))
    cut = int(len(z) * (1 - holdout))
    train, test = order[:cut], order[cut:]
    platt = PlattScaling().fit(z[train], y[train])
    iso = IsotonicCalibration().fit(z[train], y[train])
    if log_loss(iso.predict(z[test]), y[test]) < log_loss(platt.predict(z[test]), y[test]):
        return IsotonicCalibration().fit(z, y)
    return PlattScaling().fit(z, y)


# ---------------------------------------------------------------- metrics

def log_loss(probs: Any, labels: Any) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-15, 1 - 1e-15]."""
    p, y = _pair("probs", probs, labels, probs=True)
    p = np.clip(p, _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def reliability_curve(probs: Any, labels: Any, n_bins: int = 15,
                      strategy: str = "uniform") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted, observed frequency, count) per non-empty bin, in increasing order.

    Bins are [lo, hi) except the last, which also holds p == 1. "uniform" splits [0, 1] into equal
    widths; "quantile" puts about the same number of predictions in each (duplicate edges merge).
    """
    p, y = _pair("probs", probs, labels, probs=True)
    n_bins = _positive_int("n_bins", n_bins)
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    else:
        raise ValueError(f"strategy: expected 'uniform' or 'quantile', got {strategy!r}")
    idx = np.searchsorted(edges[1:-1], p, side="right")  # interior edges only: ends are closed
    counts = np.bincount(idx, minlength=len(edges) - 1)
    keep = counts > 0
    mean_p = np.bincount(idx, weights=p, minlength=len(counts))[keep] / counts[keep]
    freq = np.bincount(idx, weights=y, minlength=len(counts))[keep] / counts[keep]
    return mean_p, freq, counts[keep]


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15,
                               strategy: str = "uniform") -> float:
    """sum over bins of (bin count / n) * |mean predicted - observed frequency|."""
    mean_p, freq, counts = reliability_curve(probs, labels, n_bins, strategy)
    return float(np.sum(counts * np.abs(mean_p - freq)) / counts.sum())


def calibration_report(logits: Any, labels: Any, calibrator: Calibrator, n_bins: int = 15) -> dict:
    """ECE and log loss of sigmoid(logits) before and of the fitted calibrator after."""
    z, y = _pair("logits", logits, labels)
    before, after = _sigmoid(z), calibrator.predict(z)
    return {
        "ece_before": expected_calibration_error(before, y, n_bins),
        "ece_after": expected_calibration_error(after, y, n_bins),
        "log_loss_before": log_loss(before, y),
        "log_loss_after": log_loss(after, y),
    }


def reliability_diagram(curves: dict[str, tuple[Any, Any]], path: str | Path,
                        title: str = "Reliability", n_bins: int = 15) -> Path:
    """PNG: one reliability line per name over the diagonal, prediction histograms below."""
    if not curves:
        raise ValueError("curves: need at least one (probs, labels) entry")
    # the object API with an explicit Agg canvas: no pyplot global state, no display needed
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 7))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, (probs, labels) in curves.items():
        mean_p, freq, _ = reliability_curve(probs, labels, n_bins)
        top.plot(mean_p, freq, "o-", ms=4, label=name)
        bottom.hist(np.asarray(probs, dtype=np.float64), bins=np.linspace(0, 1, n_bins + 1),
                    histtype="step", label=name)
    top.set(title=title, ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="predicted probability", ylabel="count")
    bottom.set_yscale("log")  # a skewed task would otherwise show one tall bar and nothing else
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", dpi=100)
    return path
