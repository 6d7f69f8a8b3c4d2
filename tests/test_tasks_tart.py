"""TART data and baselines (numpy only)."""
from __future__ import annotations

import numpy as np
import pytest

from data.data_params import DataParams
from data.tasks.tart import (
    baselines,
    context_logreg_probs,
    fit_logreg,
    majority_probs,
    sample_tart,
    sigmoid,
    tart_splits,
)
from core.errors import UserError


def test_shapes_scale_and_labels():
    rng = np.random.default_rng(0)
    sp = sample_tart(rng, 400, 20, 6, weight_multiplier=4.0, variable_noise=False)
    assert sp.xs.shape == (400, 20, 6) and sp.ys.shape == (400, 20) and sp.ws.shape == (400, 6)
    assert set(np.unique(sp.ys)) <= {0.0, 1.0}
    logits = np.einsum("snd,sd->sn", sp.xs, sp.ws)
    assert logits.std() == pytest.approx(4.0, rel=0.1)  # weight_multiplier is the std of w.x
    assert abs(sp.ys.mean() - 0.5) < 0.03
    assert np.mean((sp.ys > 0.5) == (logits > 0)) > 0.8  # labels follow the weights
    noisy = sample_tart(rng, 400, 20, 6, weight_multiplier=4.0, variable_noise=True)
    noisy_scale = np.median(np.linalg.norm(noisy.ws, axis=1))  # alpha ~ U[1, 4] per sequence instead of 4
    assert noisy_scale < 0.8 * np.median(np.linalg.norm(sp.ws, axis=1))


def test_splits_are_seeded_and_distinct():
    dp = DataParams(task="tart", n_train_samples=10, n_val_samples=5, n_test_samples=5, n_positions=7, n_dims=3)
    a, b = tart_splits(dp, 1), tart_splits(dp, 1)
    assert np.array_equal(a["val"].xs, b["val"].xs)
    assert not np.array_equal(a["val"].ws, a["test"].ws[:5])
    assert not np.array_equal(tart_splits(dp, 2)["val"].xs, a["val"].xs)
    with pytest.raises(UserError, match="n_positions"):
        tart_splits(DataParams(n_positions=0), 0)


def test_fit_logreg_recovers_the_weights():
    rng = np.random.default_rng(1)
    w_true = np.array([[2.0, -1.0, 0.5]])
    xs = rng.standard_normal((1, 4000, 3))
    ys = (rng.random((1, 4000)) < sigmoid(np.einsum("snd,sd->sn", xs, w_true))).astype(float)
    w = fit_logreg(xs, ys, l2=1e-3)
    assert np.allclose(w, w_true, atol=0.15)
    # gradient of the regularised objective vanishes at the optimum
    p = sigmoid(np.einsum("snd,sd->sn", xs, w))
    grad = np.einsum("snd,sn->sd", xs, p - ys) + 1e-3 * w
    assert np.abs(grad).max() < 1e-6


def test_context_baselines_use_only_the_past():
    rng = np.random.default_rng(2)
    sp = sample_tart(rng, 50, 12, 4, 5.0, False)
    p = context_logreg_probs(sp.xs, sp.ys)
    assert np.all(p[:, 0] == 0.5)
    changed = sp.ys.copy()
    changed[:, 6:] = 1 - changed[:, 6:]  # labels at and after position 6 must not matter before it
    assert np.allclose(context_logreg_probs(sp.xs, changed)[:, :7], p[:, :7])
    m = majority_probs(np.array([[1.0, 0.0, 0.0, 1.0, 1.0]]))
    assert m.tolist() == [[1.0, 1.0, 1.0, 0.0, 1.0]]


def test_baseline_ordering():
    rng = np.random.default_rng(3)
    sp = sample_tart(rng, 300, 40, 4, 5.0, False)
    b = baselines(sp)
    assert b["bayes_expected_acc"] > b["logreg_acc_2nd_half"] > b["majority_acc_2nd_half"] + 0.15
    assert abs(b["majority_acc"] - 0.5) < 0.06
    assert b["logreg_acc_2nd_half"] > b["logreg_acc"]  # more context helps
    assert b["bayes_entropy"] == pytest.approx(b["bayes_bce"], abs=0.03)
    assert b["bayes_acc"] == pytest.approx(b["bayes_expected_acc"], abs=0.02)
