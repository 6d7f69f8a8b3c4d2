"""The training step's own cost: the non-finite guard and gradient clipping share one gradient-norm pass."""
from __future__ import annotations

import torch

from tests.conftest import TINY, Workspace


def test_guard_and_clipping_take_one_norm_pass_per_step(ws: Workspace, monkeypatch):
    calls = {"n": 0}
    real = torch._foreach_norm

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_foreach_norm", counting)
    ws.write_config("t", TINY)  # grad_clip=1.0 by default; 256 samples / batch 32 = 8 steps
    assert ws.main("--config=t", "--no-wandb") == 0
    assert calls["n"] == 8  # one per step: torch's clip_grad_norm_ would add a second


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
