"""The training step's own cost: one gradient-norm pass for the guard and clipping, a progress bar updated every few batches."""
from __future__ import annotations

import torch

from tests.conftest import TINY, Workspace


def test_per_step_costs_one_norm_pass_and_sparse_progress_bar_updates(ws: Workspace, monkeypatch):
    """8 steps: 8 gradient-norm passes (guard and clipping share one), and the Rich bar updated only on
    the epoch's last batch (PROGRESS_BAR_REFRESH = 10 batches), not on all 8."""
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    import sys

    from train.progress import PROGRESS_BAR_REFRESH

    calls = {"norm": 0, "bar": 0}
    real_norm, real_bar = torch._foreach_norm, RichProgressBar.on_train_batch_end

    def counting_norm(*args, **kwargs):
        calls["norm"] += 1
        return real_norm(*args, **kwargs)

    def counting_bar(self, *args, **kwargs):
        calls["bar"] += 1
        return real_bar(self, *args, **kwargs)

    monkeypatch.setattr(torch, "_foreach_norm", counting_norm)
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", counting_bar)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the terminal bar, not the plain lines
    ws.write_config("t", TINY.replace("TrainParams\n", "TrainParams\nlog_health=False\n"))  # grad_clip=1.0 by default; 256 samples / batch 32 = 8 steps
    assert ws.main("--config=t", "--no-wandb") == 0
    assert calls["norm"] == 8  # one per step: torch's clip_grad_norm_ would add a second
    if _RICH_AVAILABLE:
        assert PROGRESS_BAR_REFRESH > 8 and calls["bar"] == 1


def test_clipping_by_the_guards_norms_equals_torchs_clip_grad_norm():
    from train.guards import CheckedGradNorms, grad_norms

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    for p in params:
        p.grad = torch.randn_like(p) * 10
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for rp, p in zip(ref_params, params):
        rp.grad = p.grad.clone()
    torch.nn.utils.clip_grad_norm_(ref_params, 1.0)

    holder = torch.nn.Module()
    CheckedGradNorms.keep(holder, params, grad_norms([p.grad for p in params]))
    total = CheckedGradNorms.take(holder, params)
    torch.nn.utils.clip_grads_with_norm_(params, 1.0, total)
    assert all(torch.allclose(p.grad, rp.grad, rtol=1e-6) for p, rp in zip(params, ref_params))
    assert CheckedGradNorms.take(holder, params) is None  # handed out once
    CheckedGradNorms.keep(holder, params, grad_norms([p.grad for p in params]))
    params[0].grad = params[0].grad.clone()  # other gradients than the ones measured: not reused
    assert CheckedGradNorms.take(holder, params) is None


def test_the_guard_lists_the_parameters_once_per_fit_not_every_step(monkeypatch):
    """The module tree is walked at on_train_start; each step reuses that list (and still finds a NaN)."""
    import types

    import pytest

    from train.guards import NonFiniteError, NonFiniteGuard

    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    module(torch.ones(1, 3)).sum().backward()
    trainer = types.SimpleNamespace(precision="32-true", strategy=None, global_step=0, current_epoch=0,
                                    fit_loop=types.SimpleNamespace(epoch_loop=types.SimpleNamespace(batch_idx=0)))
    guard = NonFiniteGuard()
    guard.on_train_start(trainer, module)
    monkeypatch.setattr(module, "named_parameters", lambda *a, **k: pytest.fail("walked the module tree in a step"))
    guard.on_before_optimizer_step(trainer, module, None)
    module[1].weight.grad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"gradient of 1\.weight"):
        guard.on_before_optimizer_step(trainer, module, None)


def test_clipping_skips_the_multiply_exactly_when_torch_would_multiply_by_one(monkeypatch):
    """Below the threshold the gradients are untouched and no pass over them runs; above it they equal torch's."""
    from train.guards import clip_by_total_norm, grad_norms

    torch.manual_seed(0)
    muls = []
    real_mul = torch._foreach_mul_
    monkeypatch.setattr(torch, "_foreach_mul_", lambda *a, **k: (muls.append(1), real_mul(*a, **k))[1])
    for scale, clips in ((1e-3, False), (10.0, True)):
        muls.clear()
        params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
        for p in params:
            p.grad = torch.randn_like(p) * scale
        ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for rp, p in zip(ref, params):
            rp.grad = p.grad.clone()
        torch.nn.utils.clip_grad_norm_(ref, 1.0)
        muls.clear()
        total = torch.linalg.vector_norm(grad_norms([p.grad for p in params]))
        assert clip_by_total_norm(params, 1.0, total) is clips
        assert bool(muls) is clips
        assert all(torch.equal(p.grad, rp.grad) if not clips else torch.allclose(p.grad, rp.grad, rtol=1e-6) for p, rp in zip(params, ref))


def test_off_a_terminal_no_step_calls_self_log_unless_a_logger_writes(ws: Workspace, monkeypatch):
    """The plain progress lines read the loss from the step's outputs, so between logger writes a training
    step never pays for Lightning's `self.log` (1-2 ms); on a terminal the bar still gets the loss."""
    import sys

    import lightning as L

    from train import lightning_compat

    hooks: list[str | None] = []
    real_log = L.LightningModule.log

    def counting_log(self, *args, **kwargs):
        hooks.append(lightning_compat.current_hook(self))
        return real_log(self, *args, **kwargs)

    monkeypatch.setattr(L.LightningModule, "log", counting_log)
    ws.write_config("t", log_health=False, hyperparams_log_freq=50)  # 8 steps: no logger writes a training step
    for tty, expect in ((False, 0), (True, 1)):  # on a terminal: step 0 of every PROG_BAR_EVERY
        hooks.clear()
        monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
        assert ws.main("--config=t", "--no-wandb") == 0
        assert hooks.count("training_step") == expect, (tty, hooks)
