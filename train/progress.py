"""What a run shows while it trains: Lightning's progress bar on a terminal, plain lines elsewhere.

On a terminal: Lightning's bar (Rich when installed, else tqdm) with totals that hold for
`max_steps` runs, epochs counted 1..N, and metric names short enough not to be cut
(`stat/val_loss:main` shows as `val_loss`). Not a terminal (nohup, SLURM, CI, a pipe): no bar,
but a plain line every `PLAIN_EVERY_S` seconds with the step, loss, tokens/s and ETA, and one per
validation. The final figures and paths come from train/summary.py when the run ends.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

PROGRESS_BAR_REFRESH = 10  # batches between redraws: redrawing every batch cost ~1 ms/step (docs/benchmarks.md)
PLAIN_EVERY_S = 30.0  # seconds between plain progress lines when stdout is not a terminal


def short_name(name: str) -> str:
    """`stat/val_loss:main` → `val_loss`, `stat/val_acc:answer` → `val_acc:answer`: the whole name, minus what every stat shares."""
    name = name.removeprefix("stat/")
    return name.removesuffix(":main")


def planned_epochs(trainer: Any) -> int:
    """Epochs this fit will run: `max_epochs`, or fewer when `max_steps` ends it first."""
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
    per_epoch = trainer.num_training_batches
    if trainer.max_steps and trainer.max_steps > 0 and per_epoch and math.isfinite(per_epoch):
        epochs = min(epochs, math.ceil(trainer.max_steps * trainer.accumulate_grad_batches / per_epoch))
    return max(1, epochs)


def fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class HonestTotals:
    """Mixin for Lightning's bars: the right batch total under `max_steps`, epochs 1..N, short full names."""

    @property
    def total_train_batches(self) -> int | float:
        t = self.trainer
        total = t.num_training_batches
        if t.max_steps and t.max_steps > 0:
            total = min(total, max(0, t.max_steps - t.global_step) * t.accumulate_grad_batches)
        return total

    def epoch_description(self) -> str:
        return f"Epoch {self.trainer.current_epoch + 1}/{planned_epochs(self.trainer)}"

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return {short_name(k): v for k, v in items.items()}


class HonestRichBar(HonestTotals, RichProgressBar):
    """Also updated (count and metrics) only every PROGRESS_BAR_REFRESH batches and on an epoch's last:
    Lightning's Rich bar reads and formats every metric on every batch whatever its refresh_rate."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % PROGRESS_BAR_REFRESH == 0 or batch_idx + 1 >= self.total_train_batches:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _get_train_description(self, current_epoch: int) -> str:
        text = self.epoch_description()
        return f"{text:{len(self.validation_description)}}"  # same width as "Validation": no flicker


class HonestTQDMBar(HonestTotals, TQDMProgressBar):
    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self.epoch_description())


class PlainProgress(ProgressBar):
    """For logs, not terminals: one line every `every_s` seconds and one per validation."""

    shows_metrics = False  # its lines read the step's loss from `outputs`: no `self.log(prog_bar=True)` values needed

    def __init__(self, every_s: float | None = None, out: Any = None):
        super().__init__()
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.out = out
        self._enabled = True
        self._tokens: Any = 0
        self._start: tuple[float, int] | None = None
        self._last_print = 0.0

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, line: str) -> None:
        print(line, file=self.out or sys.stdout, flush=True)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._start = (time.perf_counter(), trainer.global_step)
        self._last_print = time.perf_counter()
        self._tokens = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not (self._enabled and trainer.is_global_zero):
            return
        mask = batch.get("mask") if isinstance(batch, dict) else None
        ids = batch.get("x_indices") if isinstance(batch, dict) else None
        self._tokens = self._tokens + (mask.sum() if mask is not None else (ids.numel() if ids is not None else 0))  # a tensor: no sync here
        now = time.perf_counter()
        if now - self._last_print >= self.every_s:
            self._last_print = now
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            self._print(self.progress_line(trainer, now, None if loss is None else float(loss)))

    def progress_line(self, trainer: Any, now: float, loss: float | None) -> str:
        t0, step0 = self._start or (now, 0)
        step, total = trainer.global_step, int(trainer.estimated_stepping_batches)
        elapsed = now - t0
        done = step - step0
        eta = elapsed / done * (total - step) if done > 0 else float("nan")
        tokens_per_s = float(self._tokens) * trainer.world_size / elapsed if elapsed > 0 else float("nan")
        parts = [
            f"step {step}/{total} (epoch {trainer.current_epoch + 1}/{planned_epochs(trainer)})",
            f"train_loss {loss:.4f}" if loss is not None else "train_loss n/a",
            f"{tokens_per_s:,.0f} tokens/s",
            f"elapsed {fmt_duration(elapsed)}",
            f"ETA {fmt_duration(eta)}" if math.isfinite(eta) else "ETA n/a",
        ]
        return " | ".join(parts)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not (self._enabled and trainer.is_global_zero) or trainer.sanity_checking:
            return
        vals = {short_name(k): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("stat/val_")}
        self._print(f"validation at step {trainer.global_step}: " + ", ".join(f"{k} {v:.4f}" for k, v in vals.items()))


def progress_bar(tty: bool | None = None) -> ProgressBar:
    """The bar on a terminal, plain periodic lines otherwise (`tty`: None = look at stdout)."""
    if tty is None:
        tty = sys.stdout.isatty()
    if not tty:
        return PlainProgress()
    return HonestRichBar(refresh_rate=PROGRESS_BAR_REFRESH) if _RICH_AVAILABLE else HonestTQDMBar(refresh_rate=PROGRESS_BAR_REFRESH)
