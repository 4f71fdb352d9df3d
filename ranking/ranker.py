"""A trained ranker as served: the network, its input scaler and per-task calibrators, from one folder.

    <dir>/model/                  config.json + model.safetensors (MultiTaskRanker)
    <dir>/scaler.json             input names, mean, std
    <dir>/calibration-<task>.json one post-hoc calibrator per binary task that had enough labels

The network sees each feature twice, as is and relative to the mean of its list, plus the log of the
position, which only a shallow position tower reads (`RankerConfig.bias_inputs`); it is set to the top
when serving, as in PAL (Guo et al. 2019), so it adds the same constant to every candidate's logit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ranking.calibration import Calibrator, load_calibrator
from ranking.features import FEATURES
from ranking.model import MultiTaskRanker, gradient_x_input, predict
from suggest.errors import ArtifactError

__all__ = ["Ranker", "model_inputs", "input_names", "logit"]


def input_names(features: tuple[str, ...] = FEATURES) -> tuple[str, ...]:
    return features + tuple(f"{f}-list_mean" for f in features) + ("position",)


def model_inputs(X: np.ndarray, group: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Features, the same features relative to their list's mean, and the log position.

    A click is a choice within one list: how an item compares with its neighbours matters more
    than its absolute values, which mostly say how likely the list as a whole is to be clicked.
    """
    _, inverse, counts = np.unique(group, return_inverse=True, return_counts=True)
    sums = np.zeros((len(counts), X.shape[1]))
    np.add.at(sums, inverse, X)
    relative = X - (sums / counts[:, None])[inverse]
    pos = np.log1p(position.astype(np.float32))[:, None]
    return np.concatenate([X, relative, pos], axis=1).astype(np.float32)  # (n, 2 * n_features + 1)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class Ranker:
    model: MultiTaskRanker
    mean: np.ndarray                      # (n_inputs,) float32
    std: np.ndarray                       # (n_inputs,) float32
    calibrators: dict[str, Calibrator]
    names: tuple[str, ...]                # input names, in column order
    encoder: dict | None = None           # what computed the cosine feature in training ({"name", "path"}); None: 0

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.model.config.task_names

    def standardised(self, X: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """(n, n_inputs): one served list at the top position; `reference` rows set the list mean.

        The logged lists the model learnt from were the top-k by prior; a request has more candidates
        than that, so the caller passes the rows such a list would have held as the reference.
        """
        ref = X if reference is None or len(reference) == 0 else reference
        relative = X - ref.mean(axis=0, keepdims=True)
        raw = np.concatenate([X, relative, np.zeros((len(X), 1), np.float32)], axis=1)
        # A column that never varied in training taught the model nothing; a value it never saw
        # would be blown up by the tiny std, so it is read as the training constant.
        return np.where(self.std > 1e-5, (raw - self.mean) / self.std, 0.0).astype(np.float32)

    def scores(self, Z: np.ndarray) -> dict[str, np.ndarray]:
        """{task: (n,) float}: calibrated probabilities (binary tasks) or raw values (regression)."""
        raw = predict(self.model, Z)
        return {t: (self.calibrators[t].predict(logit(v)) if t in self.calibrators else v).astype(np.float64)
                for t, v in raw.items()}

    def attributions(self, Z: np.ndarray, task: str, top: int = 5) -> list[list[tuple[str, float]]]:
        """Per row, the `top` features by |gradient x input| on the task's logit, a feature's raw and
        list-relative columns summed (inputs are standardised, so x = 0 is the average item)."""
        gx = gradient_x_input(self.model, Z, task)  # (n, n_inputs)
        n = len(FEATURES)
        folded = gx[:, :n] + gx[:, n:2 * n]       # the position column is constant when serving
        out = []
        for row in folded:
            order = np.argsort(-np.abs(row), kind="stable")[:top]
            out.append([(FEATURES[i], round(float(row[i]), 4)) for i in order])
        return out

    def save(self, directory: Path | str) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.model.save(d / "model")
        tmp = d / "scaler.json.tmp"
        tmp.write_text(json.dumps({"features": list(self.names), "mean": self.mean.tolist(), "std": self.std.tolist(),
                                   "encoder": self.encoder}))
        os.replace(tmp, d / "scaler.json")
        for task, c in self.calibrators.items():
            c.save(d / f"calibration-{task}.json")
        return d

    @classmethod
    def load(cls, directory: Path | str) -> "Ranker":
        d = Path(directory)
        try:
            model = MultiTaskRanker.load(d / "model")
            scaler = json.loads((d / "scaler.json").read_text())
            calibrators = {t: load_calibrator(d / f"calibration-{t}.json") for t in model.config.task_names
                           if (d / f"calibration-{t}.json").exists()}
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{d}: not a trained ranker ({e})") from e
        names = tuple(scaler["features"])
        if names != input_names():
            raise ArtifactError(f"{d}: trained on other features than this version declares; retrain it")
        return cls(model, np.asarray(scaler["mean"], np.float32), np.asarray(scaler["std"], np.float32),
                   calibrators, names, scaler.get("encoder"))
