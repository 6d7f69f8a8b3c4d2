"""TART-style in-context logistic regression (task `tart`): data and the baselines beside it.

Each sequence is its own problem. Draw weights w = alpha * u / sqrt(n_dims) with u ~ N(0, I),
so the logit w.x has standard deviation alpha (`weight_multiplier`; with `variable_noise`,
alpha ~ U[1, weight_multiplier] per sequence). Then `n_positions` points x_i ~ N(0, I) and labels
y_i ~ Bernoulli(sigmoid(w.x_i)). The model reads x_1, y_1, x_2, y_2, ... and, at every x_i,
predicts y_i from the pairs before it (binary cross-entropy on those positions; the objective
is `in_context_bce` in model/objectives.py).

Input vectors have n_dims + 1 entries: x_i is `[x_i, 0]`, y_i is `[2 y_i - 1, 0, ..., 0, 1]`
(the label in the first entry, as in TART, and a flag in the last so the two kinds of
positions can't be confused).

Baselines, all on the same positions as the model, logged as `stat/val_{name}`:
- `logreg_*`: an L2-regularised logistic regression fitted (Newton) on the i-1 context pairs;
- `bayes_*`: the true weights (`bayes_expected_acc` = E[max(p, 1-p)]; `bayes_entropy` is the
  BCE an oracle that knows w would get, below any in-context learner);
- `majority_*`: the majority label among the context pairs (ties and an empty context say 1).
Each comes as `_acc` (all positions), `_acc_2nd_half` (positions N/2.., more context) and,
except for the hard majority vote, `_bce`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import UserError
from data.task_registry import task_settings, task_summary
from data.tasks import TaskData, text_source
from data.vector_input import VectorTokenizer
from core.params_base import param

if TYPE_CHECKING:
    import numpy as np

    from data.data_params import DataParams


class _LazyNumpy:
    """numpy, imported on first use: every task file is imported by `main.py --help`, which must stay fast."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("numpy"), name)


if not TYPE_CHECKING:
    np = _LazyNumpy()

SPLITS = ("train", "val", "test")
OBJECTIVE = "in_context_bce"


@task_settings
class TartSettings:
    """`tart` settings (DataParams): in-context logistic regression on vectors."""

    n_positions: int = param(32, "tart: (x, y) pairs per sequence", min=1)
    n_dims: int = param(8, "tart: dimension of each x", min=1)
    weight_multiplier: float = param(5.0, "tart: scale alpha of the logistic weights (std of w.x); larger = less label noise", gt=0)
    variable_noise: bool = param(False, "tart: draw alpha per sequence uniformly from [1, weight_multiplier]")


@dataclass
class TartSplit:
    xs: np.ndarray  # (S, N, d) float32 inputs
    ys: np.ndarray  # (S, N) float32 labels in {0, 1}
    ws: np.ndarray  # (S, d) the true weights (scaled by alpha)

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def probs(self) -> np.ndarray:
        """(S, N) true P(y=1 | x)."""
        return sigmoid(np.einsum("snd,sd->sn", self.xs.astype(np.float64), self.ws.astype(np.float64)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # stable for large |z|


def check_params(dp: DataParams) -> None:
    if dp.n_positions < 1 or dp.n_dims < 1:
        raise UserError(f"tart: n_positions and n_dims must be >= 1 (got {dp.n_positions}, {dp.n_dims})")
    if dp.weight_multiplier <= 0 or (dp.variable_noise and dp.weight_multiplier < 1):
        raise UserError(f"tart: weight_multiplier must be > 0 (>= 1 with variable_noise); got {dp.weight_multiplier}")
    if 2 * dp.n_positions > dp.max_seq_len:
        raise UserError(f"tart: sequences are 2*n_positions = {2 * dp.n_positions} long but max_seq_len={dp.max_seq_len}; raise max_seq_len (DataParams and ModelParams)")


def sample_tart(
    rng: np.random.Generator, n_seqs: int, n_positions: int, n_dims: int, weight_multiplier: float, variable_noise: bool
) -> TartSplit:
    if variable_noise:
        alpha = rng.uniform(1.0, weight_multiplier, size=(n_seqs, 1))
    else:
        alpha = np.full((n_seqs, 1), float(weight_multiplier))
    ws = alpha * rng.standard_normal((n_seqs, n_dims)) / np.sqrt(n_dims)
    xs = rng.standard_normal((n_seqs, n_positions, n_dims))
    p = sigmoid(np.einsum("snd,sd->sn", xs, ws))
    ys = (rng.random(p.shape) < p).astype(np.float32)
    return TartSplit(xs.astype(np.float32), ys, ws.astype(np.float32))


def tart_splits(dp: DataParams, seed: int) -> dict[str, TartSplit]:
    """Train/val/test sequences; every sequence has its own weights, so splits never share a problem."""
    check_params(dp)
    sizes = {"train": dp.n_train_samples, "val": dp.n_val_samples, "test": dp.n_test_samples}
    out = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i])
        out[split] = sample_tart(rng, sizes[split], dp.n_positions, dp.n_dims, dp.weight_multiplier, dp.variable_noise)
    return out


def interleave(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(S, N, d) inputs and (S, N) labels → (S, 2N, d+1) vectors x_1, y_1, x_2, y_2, ..."""
    S, N, d = xs.shape
    out = np.zeros((S, 2 * N, d + 1), dtype=np.float32)
    out[:, 0::2, :d] = xs
    out[:, 1::2, 0] = 2 * ys - 1
    out[:, 1::2, d] = 1.0
    return out


# --- baselines --------------------------------------------------------------------------
def fit_logreg(xs: np.ndarray, ys: np.ndarray, l2: float = 1.0, n_iter: int = 25) -> np.ndarray:
    """Batched L2-regularised logistic regression by Newton's method: xs (S, n, d), ys (S, n) → w (S, d).

    Minimises sum_i BCE(sigmoid(w.x_i), y_i) + l2/2 |w|^2 (no intercept: the data has none).
    """
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    S, _, d = xs.shape
    w = np.zeros((S, d))
    eye = np.eye(d)
    for _ in range(n_iter):
        p = sigmoid(np.einsum("snd,sd->sn", xs, w))
        grad = np.einsum("snd,sn->sd", xs, p - ys) + l2 * w
        h = np.einsum("snd,sn,sne->sde", xs, p * (1 - p), xs) + l2 * eye
        step = np.linalg.solve(h, grad[..., None])[..., 0]
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def context_logreg_probs(xs: np.ndarray, ys: np.ndarray, l2: float = 1.0) -> np.ndarray:
    """(S, N): P(y_i = 1) from a logistic regression fitted on pairs 1..i-1 (0.5 with no context)."""
    S, N, _ = xs.shape
    out = np.full((S, N), 0.5)
    for i in range(1, N):
        w = fit_logreg(xs[:, :i], ys[:, :i], l2)
        out[:, i] = sigmoid(np.einsum("sd,sd->s", xs[:, i].astype(np.float64), w))
    return out


def majority_probs(ys: np.ndarray) -> np.ndarray:
    """(S, N): 1 where the context so far has at least as many 1s as 0s, else 0."""
    ones = np.cumsum(ys, axis=1) - ys
    n = np.arange(ys.shape[1])[None]
    return (2 * ones >= n).astype(np.float64)


def _bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def prediction_stats(p: np.ndarray, ys: np.ndarray, prefix: str, bce: bool = True) -> dict[str, float]:
    """Accuracy over all positions, over the second half, and (for probabilities) the BCE."""
    correct = (p > 0.5) == (ys > 0.5)
    half = ys.shape[1] // 2
    out = {f"{prefix}_acc": float(correct.mean()), f"{prefix}_acc_2nd_half": float(correct[:, half:].mean())}
    if bce:
        out[f"{prefix}_bce"] = float(_bce(p, ys).mean())
    return out


def baselines(split: TartSplit, l2: float = 1.0) -> dict[str, Any]:
    """Every baseline's accuracy (all positions, second half) and BCE on one split."""
    p_true = split.probs
    out: dict[str, Any] = {}
    out.update(prediction_stats(context_logreg_probs(split.xs, split.ys, l2), split.ys, "logreg"))
    out.update(prediction_stats(majority_probs(split.ys), split.ys, "majority", bce=False))  # hard 0/1 votes
    out.update(prediction_stats(p_true, split.ys, "bayes"))
    out["bayes_expected_acc"] = float(np.maximum(p_true, 1 - p_true).mean())
    pt = np.clip(p_true, 1e-12, 1 - 1e-12)
    out["bayes_entropy"] = float((-(pt * np.log(pt) + (1 - pt) * np.log(1 - pt))).mean())
    return out


# --- the task ---------------------------------------------------------------------------
class _TartDataset:
    """Sequence i of a split as {'x_vectors': (2N, d+1), 'y': (N,)} numpy arrays."""

    def __init__(self, split: TartSplit):
        self.vectors = interleave(split.xs, split.ys)
        self.ys = split.ys

    def __len__(self) -> int:
        return len(self.ys)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"x_vectors": self.vectors[i], "y": self.ys[i]}


def collate_tart(samples: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    import torch

    x = torch.from_numpy(np.stack([s["x_vectors"] for s in samples]))
    y = torch.from_numpy(np.stack([s["y"] for s in samples]))
    return {"x_vectors": x, "y": y, "mask": torch.ones(x.shape[:2], dtype=torch.bool)}


@text_source("tart")
def tart_task(dp: DataParams, seed: int) -> TaskData:
    """`--task=tart`: vectors in, BCE on the labels; the baselines ride along in `val_stats`."""
    splits = tart_splits(dp, seed)
    return TaskData(
        splits={},
        tokenizer=VectorTokenizer(dp.n_dims + 1, OBJECTIVE),
        datasets={name: _TartDataset(sp) for name, sp in splits.items()},
        collate=collate_tart,
        extras={"val_stats": baselines(splits["val"]), "test_stats": baselines(splits["test"])},
    )


@task_summary("tart")
def tart_summary(val: dict, last: dict) -> tuple[str, str, str]:
    """docs/tasks.md: second-half accuracy against the baselines fitted on the context."""
    lr, bayes, maj = last["stat/val_logreg_acc_2nd_half"], last["stat/val_bayes_expected_acc"], last["stat/val_majority_acc_2nd_half"]
    ref = f"2nd-half acc: context logreg {lr:.3f}, majority {maj:.3f}, true-weight Bayes {bayes:.3f}"
    reached = f"2nd-half acc {val['acc:y_2nd_half']:.3f} (all {val['acc:y']:.3f}), BCE {val['loss:main']:.4f}"
    return ref, reached, f"{val['acc:y_2nd_half'] - lr:+.3f} vs logreg"
