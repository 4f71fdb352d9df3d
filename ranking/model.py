"""The shared multi-task ranker: one network, one score per task, trained on partially labelled rows.

Three ways to share the trunk between tasks (`RankerConfig.architecture`):

    shared_bottom  one MLP feeds every task tower
    mmoe           n_experts expert MLPs; each task mixes them with its own softmax gate
                   (Ma et al., KDD 2018)
    ple            one CGC extraction layer (Tang et al., RecSys 2020): shared experts plus
                   n_task_experts private experts per task; each task gates over its own and the
                   shared ones. One layer is enough here, so the shared-expert gate that only
                   feeds a next layer is left out.

Binary tasks output logits, regression tasks raw predictions. Labels are sparse by nature (margin
is known only for purchases, churn only per user), so every loss is averaged over the rows whose
mask is true and a task with no labelled rows contributes exactly 0.

A binary task whose positives are a subset of another's (a cart needs a click) can be `given` it:
its tower learns the conditional P(cart | click) and the output is P(click) * P(cart | click), trained
on every shown row (ESMM, Ma et al., SIGIR 2018). The sparse task then ranks with the dense task's
evidence, which a model of the sparse task alone cannot do. The click factor is a constant of that
loss (stop-gradient), so the relevance head stays a model of clicks.

Clicks also depend on where an item was shown. With `bias_inputs` the last input columns (the
position) skip the trunk and feed a shallow tower per `position_bias` task whose output adds to that
task's logit (PAL, Guo et al. 2019; the shallow tower of Zhao et al. 2019). At serving every candidate
has the same position, so the tower shifts all logits alike and the order is the trunk's alone.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

__all__ = [
    "TaskSpec",
    "DEFAULT_TASKS",
    "DEFAULT_ARCHITECTURE",
    "RankerConfig",
    "MultiTaskRanker",
    "masked_loss",
    "fit",
    "listwise_loss",
    "predict",
    "gradient_x_input",
]

ARCHITECTURES = ("shared_bottom", "mmoe", "ple")
# Clicks and carts here share one latent relevance, the case where the MMoE paper itself finds a shared
# bottom as good. On real-catalogue logs (two worlds, 5 seeds each) the shared bottom lost less relevance
# AUC to the single-task model than MMoE (-0.0008 / -0.0004 vs -0.0021 / -0.0014), ranked as well
# within noise, and its network runs 2-3x faster. MMoE and PLE stay a config away for tasks that
# disagree (tests/test_ranker_model.py shows MMoE winning there).
DEFAULT_ARCHITECTURE = "shared_bottom"
KINDS = ("binary", "regression")


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _sizes(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"{name}: expected a non-empty sequence of layer widths, got {value!r}")
    return tuple(_positive_int(f"{name}[{i}]", v) for i, v in enumerate(value))


@dataclass(frozen=True)
class TaskSpec:
    name: str    # key of outputs, labels and masks; a Python identifier (it names a submodule)
    kind: str    # "binary" (logit, BCE) or "regression" (raw value, MSE)
    weight: float = 1.0  # weight of this task's loss in the total
    given: str | None = None  # binary only: a task whose positives hold this one's (a cart needs a click);
                              # the output is then P(given) * P(this | given), as in ESMM
    position_bias: bool = False  # binary only: its label depends on where the item was shown (a click needs
                                 # a look), so a shallow tower of the bias inputs adds to its logit

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"tasks.name: expected an identifier, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"tasks.kind: expected one of {KINDS}, got {self.kind!r}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"tasks.weight: expected a finite number >= 0, got {w!r}")
        if self.given is not None and (self.kind != "binary" or self.given == self.name):
            raise ValueError(f"tasks.given: a binary task may be given another binary task, got {self.given!r} "
                             f"for {self.kind} task {self.name!r}")
        if self.position_bias and (self.kind != "binary" or self.given is not None):
            raise ValueError(f"tasks.position_bias: only for a binary task that is not given another (it inherits "
                             f"the bias of the one it is given), got {self.kind} task {self.name!r}")


# Churn is one label per visit repeated on every row shown in it (hundreds), and item features see
# little of it (AUC ~0.52 on held-out users): at weight 0.2 it was the largest pointwise term and its
# validation loss ended training at epoch 3. On simulated real-catalogue logs margin 0.1 / churn 0.02
# ranked as well or slightly better on both surfaces (3 seeds, within noise) with every head
# calibrated (issue 5's notes).
DEFAULT_TASKS = (
    TaskSpec("relevance", "binary", 1.0, position_bias=True),    # click/select given shown
    TaskSpec("purchase", "binary", 1.0, given="relevance"),  # add-to-cart given shown = P(click) P(cart | click)
    TaskSpec("margin", "regression", 0.1),   # expected margin given purchase (purchased rows only)
    TaskSpec("churn", "binary", 0.02),       # user-level: did not return for a next order
)


@dataclass(frozen=True)
class RankerConfig:
    n_features: int                                # width of the input vector, bias inputs included
    bias_inputs: int = 0                           # the last bias_inputs columns (e.g. the display position) feed
                                                   # only the position towers, never the trunk
    architecture: str = DEFAULT_ARCHITECTURE       # "shared_bottom" | "mmoe" | "ple"
    expert_hidden: tuple[int, ...] = (32,)         # layer widths of each expert MLP (mmoe, ple)
    bottom_hidden: tuple[int, ...] = (128,)        # layer widths of the shared bottom MLP
    n_experts: int = 4                             # mmoe: number of experts
    n_shared_experts: int = 2                      # ple: experts every task's gate sees
    n_task_experts: int = 1                        # ple: private experts per task
    tower_hidden: int = 32                         # hidden width of each task tower
    dropout: float = 0.0                           # after every hidden layer, in training only
    tasks: tuple[TaskSpec, ...] = DEFAULT_TASKS
    seed: int = 0                                  # weight initialisation

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:  # frozen: normalise through object.__setattr__
            object.__setattr__(self, name, value)

        put("n_features", _positive_int("n_features", self.n_features))
        put("bias_inputs", _positive_int("bias_inputs", self.bias_inputs, 0))
        if self.bias_inputs >= self.n_features:
            raise ValueError(f"bias_inputs: expected fewer than n_features={self.n_features}, got {self.bias_inputs}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture: expected one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        put("expert_hidden", _sizes("expert_hidden", self.expert_hidden))
        put("bottom_hidden", _sizes("bottom_hidden", self.bottom_hidden))
        put("n_experts", _positive_int("n_experts", self.n_experts))
        put("n_shared_experts", _positive_int("n_shared_experts", self.n_shared_experts, 0))
        put("n_task_experts", _positive_int("n_task_experts", self.n_task_experts, 0))
        if self.n_shared_experts + self.n_task_experts == 0:
            raise ValueError("n_shared_experts: with n_task_experts=0 a PLE gate has no experts")
        put("tower_hidden", _positive_int("tower_hidden", self.tower_hidden))
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {d!r}")
        if not isinstance(self.tasks, (tuple, list)) or not self.tasks:
            raise ValueError(f"tasks: expected a non-empty sequence of TaskSpec, got {self.tasks!r}")
        tasks = tuple(t if isinstance(t, TaskSpec) else TaskSpec(**t) for t in self.tasks)
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"tasks: task names must be unique, got {names}")
        kinds = {t.name: t.kind for t in tasks}
        for t in tasks:
            if t.given is not None and kinds.get(t.given) != "binary":
                raise ValueError(f"tasks.given: {t.name!r} is given {t.given!r}, which is not a binary task of this model")
            if t.given is not None and next(u for u in tasks if u.name == t.given).given is not None:
                raise ValueError(f"tasks.given: {t.given!r} is itself given another task; chain one level only")
        put("tasks", tasks)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed: expected an integer, got {self.seed!r}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)


def _mlp(n_in: int, sizes: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_out in sizes:
        layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(dropout)]
        n_in = n_out
    return nn.Sequential(*layers)


class MultiTaskRanker(nn.Module):
    """Shared trunk (shared bottom, MMoE or PLE) and one small tower per task."""

    def __init__(self, config: RankerConfig):
        super().__init__()
        self.config = config
        c = config
        n_in = c.n_features - c.bias_inputs  # what the trunk reads
        # Initialise from the config's seed without disturbing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            if c.architecture == "shared_bottom":
                self.bottom = _mlp(n_in, c.bottom_hidden, c.dropout)
                width = c.bottom_hidden[-1]
            elif c.architecture == "mmoe":
                self.experts = nn.ModuleList(
                    _mlp(n_in, c.expert_hidden, c.dropout) for _ in range(c.n_experts)
                )
                self.gates = nn.ModuleDict(
                    {t: nn.Linear(n_in, c.n_experts) for t in c.task_names}
                )
                width = c.expert_hidden[-1]
            else:
                self.shared_experts = nn.ModuleList(
                    _mlp(n_in, c.expert_hidden, c.dropout)
                    for _ in range(c.n_shared_experts)
                )
                self.task_experts = nn.ModuleDict({
                    t: nn.ModuleList(
                        _mlp(n_in, c.expert_hidden, c.dropout)
                        for _ in range(c.n_task_experts)
                    )
                    for t in c.task_names
                })
                n_gate = c.n_task_experts + c.n_shared_experts
                self.gates = nn.ModuleDict({t: nn.Linear(n_in, n_gate) for t in c.task_names})
                width = c.expert_hidden[-1]
            self.towers = nn.ModuleDict({
                t: nn.Sequential(_mlp(width, (c.tower_hidden,), c.dropout), nn.Linear(c.tower_hidden, 1))
                for t in c.task_names
            })
            # Outside the trunk, the position can shift a logit but never interact with the features.
            if c.bias_inputs:
                self.position_towers = nn.ModuleDict({
                    t.name: nn.Sequential(nn.Linear(c.bias_inputs, 8), nn.ReLU(), nn.Linear(8, 1))
                    for t in c.tasks if t.position_bias
                })

    def _trunk(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each task's input to its tower: (batch, width)."""
        c = self.config
        if c.architecture == "shared_bottom":
            h = self.bottom(x)
            return {t: h for t in c.task_names}
        if c.architecture == "mmoe":
            experts = torch.stack([e(x) for e in self.experts], dim=1)  # (batch, n_experts, width)
            return {t: _mix(self.gates[t](x), experts) for t in c.task_names}
        shared = [e(x) for e in self.shared_experts]
        out = {}
        for t in c.task_names:
            experts = torch.stack([e(x) for e in self.task_experts[t]] + shared, dim=1)
            out[t] = _mix(self.gates[t](x), experts)  # gate sees only own + shared experts
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x: (batch, n_features) float32 -> {task: (batch,) logit or prediction}."""
        b = self.config.bias_inputs
        out = {t: self.towers[t](h).squeeze(-1) for t, h in self._trunk(x[:, :-b] if b else x).items()}
        for t, tower in (self.position_towers.items() if b else ()):
            out[t] = out[t] + tower(x[:, -b:]).squeeze(-1)
        for task in self.config.tasks:
            if task.given is not None:  # the tower learns P(task | given) from every shown row
                # In training the given factor is held fixed: P(click) is learnt from clicks alone, so
                # the cart loss cannot bend what the relevance head serves (attributions see both).
                given = out[task.given].detach() if self.training else out[task.given]
                out[task.name] = _product_logit(given, out[task.name])
        return out

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()},
                  str(d / "model.safetensors"))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> MultiTaskRanker:
        d = Path(directory)
        config = RankerConfig(**json.loads((d / "config.json").read_text()))
        model = cls(config)
        model.load_state_dict(load_file(str(d / "model.safetensors")))
        return model.eval()


def _product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """logit(sigmoid(a) * sigmoid(b)), stable for large |a|, |b|."""
    log_p = (F.logsigmoid(a) + F.logsigmoid(b)).clamp(max=-1e-7)
    return log_p - torch.log(-torch.expm1(log_p))


def _mix(gate_logits: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """(batch, n) gate logits, (batch, n, width) experts -> (batch, width) softmax-weighted sum."""
    return torch.einsum("be,bew->bw", torch.softmax(gate_logits, dim=-1), experts)


def masked_loss(
    outputs: dict[str, torch.Tensor],
    labels: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    config: RankerConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of per-task losses, each the mean over its labelled rows (0 when none).

    A task missing from `labels` is unlabelled in this batch. Labels outside the mask may be NaN.
    """
    unknown = (set(labels) | set(masks)) - set(config.task_names)
    if unknown:
        raise ValueError(f"labels: unknown tasks {sorted(unknown)}")
    total = next(iter(outputs.values())).new_zeros(())
    per_task = {}
    for task in config.tasks:
        out = outputs[task.name]  # (batch,)
        if task.name not in labels:
            per_task[task.name] = out.new_zeros(())
            continue
        m = masks[task.name].to(torch.bool)
        # Zero the unlabelled labels first: a NaN there would poison the gradient through where().
        y = torch.where(m, labels[task.name].to(out.dtype), torch.zeros_like(out))
        if task.kind == "binary":
            rows = F.binary_cross_entropy_with_logits(out, y, reduction="none")
        else:
            rows = (out - y) ** 2
        rows = torch.where(m, rows, torch.zeros_like(rows))
        loss = rows.sum() / m.sum().clamp(min=1)
        per_task[task.name] = loss
        total = total + task.weight * loss
    return total, per_task


def listwise_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of each list's chosen rows against the rest of their list (ListNet top-1).

    A click is a choice among what was shown, so the loss compares an item with its neighbours only;
    the pointwise loss alone also has to explain which lists get clicked at all. Rows outside the
    mask take no part; lists without a chosen row add nothing. logits, labels, mask, group: (batch,).
    """
    m = mask.to(torch.bool)
    _, gi = torch.unique(group, return_inverse=True)
    n_groups = int(gi.max()) + 1 if len(gi) else 0
    z = torch.where(m, logits, torch.full_like(logits, -1e4))
    top = torch.full((n_groups,), -1e4, dtype=z.dtype).scatter_reduce(0, gi, z.detach(), "amax")
    total = torch.zeros(n_groups, dtype=z.dtype).index_add(0, gi, torch.exp(z - top[gi]) * m)
    lse = torch.log(total.clamp_min(1e-30)) + top
    chosen = m & (labels > 0.5)
    return -(z - lse[gi])[chosen].sum() / chosen.sum().clamp(min=1)


def _tensors(X: np.ndarray, labels: dict, masks: dict) -> tuple[torch.Tensor, dict, dict]:
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))  # (n, n_features)
    y = {t: torch.as_tensor(np.asarray(v, dtype=np.float32)) for t, v in labels.items()}
    m = {t: torch.as_tensor(np.asarray(masks[t], dtype=bool)) for t in labels}
    return x, y, m


def _batched_loss(model: MultiTaskRanker, x, y, m, idx: torch.Tensor, batch_size: int) -> float:
    """Mean total loss over idx, evaluated batch-wise (rows weighted by batch size)."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            loss, _ = masked_loss(model(x[b]), {t: v[b] for t, v in y.items()},
                                  {t: v[b] for t, v in m.items()}, model.config)
            total += float(loss) * len(b)
    return total / max(len(idx), 1)


def fit(
    model: MultiTaskRanker,
    X: np.ndarray,
    labels: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    *,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    val_fraction: float = 0.1,
    patience: int = 5,
    seed: int = 0,
    progress: bool = False,
    group: np.ndarray | None = None,
    listwise: dict[str, float] | None = None,
) -> dict[str, list[float] | int]:
    """Adam with early stopping on a held-out split; the model ends with its best weights.

    X: (n, n_features); labels and masks: {task: (n,)}. Returns {"train": [...], "val": [...],
    "best_epoch": i} with one mean loss per epoch (val is empty when val_fraction is 0).
    With `group` ((n,) list id per row) and `listwise` ({binary task: weight}), batches hold whole
    lists and each named task adds weight * listwise_loss; early stopping watches the pointwise loss,
    which calibration needs.
    """
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    _positive_int("patience", patience)
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    listwise = dict(listwise or {})
    if listwise and group is None:
        raise ValueError("listwise: needs group, the list each row was shown in")
    unknown = set(listwise) - {t.name for t in model.config.tasks if t.kind == "binary"}
    if unknown:
        raise ValueError(f"listwise: not binary tasks of this model: {sorted(unknown)}")
    x, y, m = _tensors(X, labels, masks)
    n = len(x)
    gen = torch.Generator().manual_seed(seed)
    g = torch.as_tensor(np.asarray(group, dtype=np.int64)) if group is not None else None
    if g is not None and len(g) != n:
        raise ValueError(f"group: expected {n} rows, got {len(g)}")
    if g is None:
        order = torch.randperm(n, generator=gen)
    else:  # hold out whole lists, so a list's rows are never split between training and validation
        _, gi = torch.unique(g, return_inverse=True)
        order = torch.argsort(torch.randperm(int(gi.max()) + 1 if n else 0, generator=gen)[gi], stable=True)
    n_val = int(round(n * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history: dict = {"train": [], "val": [], "best_epoch": 0}
    best, best_state, stale = math.inf, None, 0
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG; keep ours apart
        torch.manual_seed(seed)
        for epoch in range(epochs):
            model.train()
            perm = train_idx[torch.randperm(len(train_idx), generator=gen)]
            if g is not None and len(perm):  # whole lists per batch: rows of a list next to each other, lists shuffled
                _, gi = torch.unique(g[perm], return_inverse=True)
                perm = perm[torch.argsort(torch.randperm(int(gi.max()) + 1, generator=gen)[gi], stable=True)]
            seen, running = 0, 0.0
            for s in range(0, len(perm), batch_size):
                b = perm[s:s + batch_size]
                out = model(x[b])
                loss, _ = masked_loss(out, {t: v[b] for t, v in y.items()},
                                      {t: v[b] for t, v in m.items()}, model.config)
                for task, weight in listwise.items():
                    if task in y:
                        loss = loss + weight * listwise_loss(out[task], y[task][b], m[task][b], g[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                running += loss.item() * len(b)
                seen += len(b)
            history["train"].append(running / max(seen, 1))
            if n_val:
                val = _batched_loss(model, x, y, m, val_idx, batch_size)
                history["val"].append(val)
                if val < best:
                    best, stale, history["best_epoch"] = val, 0, epoch
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
            else:
                history["best_epoch"] = epoch
            if progress:
                shown = f" val {history['val'][-1]:.4f}" if n_val else ""
                print(f"epoch {epoch}: train {history['train'][-1]:.4f}{shown}")
            if n_val and stale >= patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def predict(model: MultiTaskRanker, X: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """{task: (n,) float32}: probabilities for binary tasks, raw values for regression ones."""
    model.eval()
    x = torch.as_tensor(np.asarray(X, dtype=np.float32))  # (n, n_features)
    parts: dict[str, list[torch.Tensor]] = {t: [] for t in model.config.task_names}
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            for t, v in model(x[s:s + batch_size]).items():
                parts[t].append(v)
    kinds = {t.name: t.kind for t in model.config.tasks}
    out = {}
    for t, chunks in parts.items():
        v = torch.cat(chunks) if chunks else torch.zeros(0)
        out[t] = (torch.sigmoid(v) if kinds[t] == "binary" else v).numpy()
    return out


def gradient_x_input(
    model: MultiTaskRanker, X: np.ndarray, task: str, batch_size: int = 4096
) -> np.ndarray:
    """(n, n_features) float32: d(task logit)/dx * x per row, a cheap per-task attribution."""
    if task not in model.config.task_names:
        raise ValueError(f"task: expected one of {model.config.task_names}, got {task!r}")
    model.eval()
    x_all = torch.as_tensor(np.asarray(X, dtype=np.float32))  # (n, n_features)
    parts = []
    for s in range(0, len(x_all), batch_size):
        x = x_all[s:s + batch_size].clone().requires_grad_(True)
        # Rows are independent in eval mode, so the gradient of the sum is each row's own gradient.
        (grad,) = torch.autograd.grad(model(x)[task].sum(), x)
        parts.append((grad * x).detach())
    return torch.cat(parts).numpy() if parts else np.zeros((0, model.config.n_features), np.float32)
