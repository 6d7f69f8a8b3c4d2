"""Every use of a private Lightning member, in one place (requirements.txt pins `lightning==2.6.*`).

Lightning offers no public way to ask these questions, so the harness reaches inside. When a
Lightning upgrade renames one of them, `tests/test_lightning_compat.py` fails and names it;
fix the accessor here and nowhere else. `PRIVATE_MEMBERS` lists what we rely on.
"""
from __future__ import annotations

from typing import Any

# (where, attribute): what tests/test_lightning_compat.py checks exists on the installed Lightning
PRIVATE_MEMBERS = (
    ("lightning.pytorch.loops.training_epoch_loop._TrainingEpochLoop", "_should_check_val_fx"),
    ("lightning.pytorch.loops.fit_loop._FitLoop", "_data_fetcher"),  # set in __init__
    ("lightning.pytorch.trainer.trainer.Trainer", "_logger_connector"),  # set in __init__
    ("lightning.pytorch.trainer.connectors.logger_connector.logger_connector._LoggerConnector", "should_update_logs"),
    ("lightning.pytorch.core.module.LightningModule", "_current_fx_name"),  # set in __init__
    ("lightning.pytorch.core.module.LightningModule", "_trainer"),  # set in __init__
    ("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", "_save_last_checkpoint"),
    ("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", "_monitor_candidates"),
    ("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", "_save_checkpoint"),  # RunCheckpoint overrides it
    ("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", "_last_global_step_saved"),  # set in __init__
    ("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint", "_last_checkpoint_saved"),  # set in __init__
    ("lightning.pytorch.callbacks.progress.rich_progress.RichProgressBar", "_get_train_description"),  # HonestRichBar (train/progress.py) overrides it
)


def validation_follows(trainer: Any) -> bool:
    """Whether Lightning validates right after the current training batch."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))


def loggers_write_this_step(trainer: Any) -> bool:
    """Whether Lightning's loggers write this step's per-step values (`log_every_n_steps`); True if unknown."""
    return bool(getattr(getattr(trainer, "_logger_connector", None), "should_update_logs", True))


def current_hook(module: Any) -> str | None:
    """The Lightning hook running now (`training_step`, `on_validation_epoch_end`, ...), or None."""
    return module._current_fx_name


def attached_trainer(module: Any) -> Any:
    """The module's Trainer, or None outside one (the public `module.trainer` raises instead)."""
    return module._trainer


def checkpoint_saved_at(callback: Any) -> tuple[int, str]:
    """(global step, path) of a ModelCheckpoint's last `last.ckpt`; path '' before the first."""
    return callback._last_global_step_saved, callback._last_checkpoint_saved


def save_last_checkpoint(callback: Any, trainer: Any) -> None:
    """Write a ModelCheckpoint's `last.ckpt` now, with the monitored values Lightning would use."""
    callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
