"""Learning-rate schedules (`TrainParams.lr_schedule`) and early stopping (`early_stop_stat`).

    cosine    linear warm-up, then cosine decay to min_lr_frac·lr at the last step (the default)
    linear    linear warm-up, then linear decay to min_lr_frac·lr
    constant  linear warm-up, then lr
    wsd       warmup-stable-decay: warm-up, lr, then linear decay to min_lr_frac·lr over the
              last decay_frac of the steps
    plateau   torch's ReduceLROnPlateau on stat/val_loss:main: lr × plateau_factor after
              plateau_patience validations without improvement, never below min_lr_frac·lr

All but `plateau` step every optimizer step with a known total (Lightning's
`estimated_stepping_batches`), so a resumed run follows the same curve.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.callbacks import EarlyStopping

from core.errors import UserError
from train.train_params import TrainParams

PLATEAU_STAT = "stat/val_loss:main"


def lr_factor(step: int, warmup: int, total: int, min_frac: float, kind: str = "cosine", decay_frac: float = 0.2) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based) for the step-wise schedules."""
    if step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    if kind == "wsd":
        decay_start = max(warmup, total - max(1, round(decay_frac * total)))
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total - decay_start))
        return 1 - (1 - min_frac) * progress
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "linear":
        return 1 - (1 - min_frac) * progress
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def scheduler_config(opt: torch.optim.Optimizer, tp: TrainParams, total_steps: int) -> dict[str, Any]:
    """The `lr_scheduler` entry Lightning's `configure_optimizers` expects."""
    if tp.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=tp.plateau_factor, patience=tp.plateau_patience, min_lr=tp.min_lr_frac * tp.lr
        )
        # Stepped by `step_plateau` at the end of each validation, before the checkpoint written there
        # (so a resumed run steps it exactly as an uninterrupted one); Lightning's own per-step offer
        # is declined in LMTrainer.lr_scheduler_step. strict=False: no val loss before the first validation.
        return {"scheduler": sched, "monitor": PLATEAU_STAT, "interval": "step", "frequency": 1, "strict": False,
                "reduce_on_plateau": True}
    total = max(1, total_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, tp.warmup_steps, total, tp.min_lr_frac, tp.lr_schedule, tp.decay_frac)
    )
    return {"scheduler": sched, "interval": "step"}


def step_plateau(trainer: Any, val_loss: Any) -> None:
    """Step every ReduceLROnPlateau of `trainer` with this validation's loss."""
    for cfg in trainer.lr_scheduler_configs:
        if isinstance(cfg.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            cfg.scheduler.step(float(val_loss))


class StatEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, with a one-line `UserError` when the stat is never logged."""

    def _validate_condition_metric(self, logs: dict[str, Any]) -> bool:
        if self.monitor not in logs:
            stats = ", ".join(sorted(k for k in logs if k.startswith("stat/val_"))) or "none"
            raise UserError(f"early_stop_stat={self.monitor!r} is not logged at validation; validation stats: {stats}")
        return super()._validate_condition_metric(logs)


def early_stopping(tp: TrainParams) -> list[EarlyStopping]:
    """[] or the callback that stops the run when `early_stop_stat` stops improving."""
    if tp.early_stop_stat is None:
        return []
    return [StatEarlyStopping(monitor=tp.early_stop_stat, patience=tp.early_stop_patience, mode=tp.early_stop_mode,
                              min_delta=tp.early_stop_min_delta, check_on_train_epoch_end=False, verbose=False)]
