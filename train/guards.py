"""Stop a run the moment its loss or a gradient stops being a finite number.

Checked before the backward pass (the loss) and before the optimizer step (every gradient), so
the weights are never updated with a NaN/inf and no checkpoint is written after one: the last
checkpoint stays the last good state. run.py turns `NonFiniteError` into FAILED.json.
With `precision="16-mixed"` gradients are not checked: the gradient scaler skips inf steps itself.
"""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from train.distributed import any_rank, is_fsdp


class NonFiniteError(Exception):
    def __init__(self, stat: str, value: float, step: int, epoch: int, batch: int):
        self.stat, self.value, self.step, self.epoch, self.batch = stat, value, step, epoch, batch
        super().__init__(f"non-finite {stat} = {value} at step {step} (epoch {epoch}, batch {batch})")

    def as_dict(self) -> dict[str, Any]:
        return {"stat": self.stat, "value": str(self.value), "step": self.step, "epoch": self.epoch, "batch": self.batch}


class NonFiniteGuard(Callback):
    def __init__(self, loss_name: str = "stat/train_loss:main"):
        self.loss_name = loss_name
        self._named: list[tuple[str, torch.Tensor]] = []  # the module's parameters, listed once per fit

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # Listed here, after the strategy has wrapped the model: walking the module tree every step
        # cost ~0.4 % of a baby-GPT step on one core (py-spy, docs/benchmarks.md).
        self._named = list(pl_module.named_parameters())

    @staticmethod
    def _where(trainer: Any) -> tuple[int, int, int]:
        return trainer.global_step, trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_idx

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if any_rank(trainer, bad):  # several processes: all stop at the same step, or the others wait forever
            value = float(loss.detach().float().reshape(-1)[0]) if bad else float("nan")
            raise NonFiniteError(self.loss_name if bad else f"{self.loss_name} on another rank", value, *self._where(trainer))

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if str(trainer.precision).startswith("16"):
            return
        named = [(n, p) for n, p in (self._named or pl_module.named_parameters()) if p.grad is not None]
        if not named:
            return
        norms, finite = self._finite(named)
        bad = not bool(finite.all())
        if is_fsdp(trainer):  # sharded gradients differ per rank (DDP's are all-reduced, so equal)
            bad = any_rank(trainer, bad)
        if not bad:
            if norms is not None and not is_fsdp(trainer):  # gradient clipping reuses them (`CheckedGradNorms`)
                CheckedGradNorms.keep(pl_module, [p for _, p in named], norms)
            return
        self._raise_for(trainer, named, finite)

    @staticmethod
    def _finite(named: list) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Each gradient's norm (None without the fused kernel) and whether it is finite: one fused pass,
        the exact per-element check only when that pass flags something."""
        norms = grad_norms([p.grad for _, p in named])
        finite = None if norms is None else torch.isfinite(norms)
        if finite is None or not bool(finite.all()):
            finite = torch.stack([torch.isfinite(p.grad).all() for _, p in named])
        return norms, finite

    def _raise_for(self, trainer: Any, named: list, finite: torch.Tensor) -> None:
        """Name the first non-finite gradient (or another rank's)."""
        if bool(finite.all()):
            raise NonFiniteError("gradient on another rank", float("nan"), *self._where(trainer))
        i = int((~finite).nonzero()[0])
        name, p = named[i]
        bad = p.grad[~torch.isfinite(p.grad)].reshape(-1)[0]
        raise NonFiniteError(f"gradient of {name}", float(bad), *self._where(trainer))


class CheckedGradNorms:
    """The per-gradient norms the guard just computed, handed to gradient clipping (one norm pass, not two).

    Clipping by the global norm needs every gradient's L2 norm, which the guard's check computes
    anyway (bench: 0.2 of the 0.5 ms clipping costs per step at the baby-GPT size on one core).
    `take` returns them only for the very gradients they were computed from, once.
    """

    ATTR = "_checked_grad_norms"

    @classmethod
    def keep(cls, module: Any, params: list[torch.Tensor], norms: torch.Tensor) -> None:
        object.__setattr__(module, cls.ATTR, (params, [p.grad for p in params], norms))

    @classmethod
    def take(cls, module: Any, params: list[torch.Tensor]) -> torch.Tensor | None:
        """The global L2 norm of `params`' gradients, if the guard measured exactly these gradients."""
        kept = module.__dict__.pop(cls.ATTR, None)
        if kept is None:
            return None
        kept_params, kept_grads, norms = kept
        with_grad = [p for p in params if p.grad is not None]
        if {id(p) for p in with_grad} != {id(p) for p in kept_params} or any(p.grad is not g for p, g in zip(kept_params, kept_grads)):
            return None
        return torch.linalg.vector_norm(norms)


def clip_by_total_norm(params: list[torch.Tensor], max_norm: float, total: torch.Tensor) -> bool:
    """`torch.nn.utils.clip_grads_with_norm_` given the total norm, skipping its multiply when the clip
    coefficient (torch's, clamped to 1) is exactly 1: the common case once training settles, and a
    pass over every gradient saved (~0.5 % of a baby-GPT step on one core). True when it clipped."""
    if bool(max_norm / (total + 1e-6) >= 1.0):  # the guard has already waited for these norms: no extra device sync
        return False
    torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None], max_norm, total)
    return True


def grad_norms(grads: list[torch.Tensor]) -> torch.Tensor | None:
    """Each gradient's L2 norm from one fused pass; None if torch lacks the fused kernel.

    A NaN/inf element makes its norm NaN/inf, so `isfinite` of these is ~10x cheaper than
    `isfinite(g).all()` per tensor (bench: 2.4 -> 0.27 ms per step, 0.8M parameters, one core). A norm
    can also overflow on huge finite values, so a non-finite norm is only a reason for the exact check.
    """
    foreach_norm = getattr(torch, "_foreach_norm", None)
    if foreach_norm is None:
        return None
    try:
        norms = foreach_norm(grads)
    except (RuntimeError, TypeError):
        return None
    if len({n.dtype for n in norms}) > 1:
        norms = [n.float() for n in norms]
    return torch.stack(list(norms))
