"""LMTrainer: the LightningModule that trains an `LM`. THE place to edit the train step.

Lightning runs the loop; this class says what one step is, what gets logged, and how the
optimizer and schedule are built. `log_stat` records every statistic twice: to Lightning's
loggers (CSV, wandb) and to `train_stats`, the dict saved with the run:

    train_stats[name] = [(step, n_samples, counter, value), ...]

`step` = optimizer steps so far, `n_samples` = training samples seen so far, `counter` = how
many values `train_stats` held (all metrics) when this one was added, so lists sort by it.
"""
from __future__ import annotations

import functools
import time
from typing import Any

import lightning as L
import torch

from model.lm import LM
from train import lightning_compat
from train.distributed import global_mean, is_fsdp, plain_param_name, training_losses
from train.evaluate import accumulate
from train.guards import CheckedGradNorms, clip_by_total_norm
from train.schedules import lr_factor, scheduler_config, step_plateau  # noqa: F401  (lr_factor: the schedules' shape, imported by tests)
from train.task_metrics import task_val_stats
from train.train_params import TrainParams


PROG_BAR_EVERY = 10  # steps between progress-bar updates of per-step values (see log_stat)


class LMTrainer(L.LightningModule):
    def __init__(self, model: LM, train_params: TrainParams):
        super().__init__()
        self.model = model
        self.train_losses = training_losses(model, train_params)  # model.get_losses, torch.compile'd when train_params.compile
        # Weight decay goes by parameter name: sharded (FSDP) parameters lose their shapes.
        self.decay_names = {n for n, p in model.named_parameters() if decays(n, p)}
        self.train_params = train_params
        self.train_stats: dict[str, list[tuple[int, int, int, Any]]] = {}
        self.stat_counter = 0
        self._pending_stats: list[tuple[str, int]] = []  # (name, row) of values still held as tensors
        self.n_samples = 0  # training samples seen (all ranks)
        self.n_tokens = 0  # training tokens seen (all ranks) up to the last log_hyperparams_and_time
        self._tokens_since_log = torch.zeros((), dtype=torch.long)
        self._val_sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._start_time: float | None = None
        self._last_log: tuple[float, int] | None = None
        self._elapsed_before = 0.0  # training seconds before a resume, so time/elapsed_s continues

    # --- statistics ---------------------------------------------------------------------
    def log_stat(self, name: str, value: float | torch.Tensor, prog_bar: bool = False) -> None:
        """Record `value` under `name` in train_stats and in the Lightning loggers.

        Tensors are kept as tensors until `flush_stats` (no device sync per step). Values logged in
        `training_step` reach Lightning only on the steps its loggers write (`log_every_n_steps`),
        and progress-bar values also every `PROG_BAR_EVERY` steps: a `self.log` call costs 1-2 ms of
        CPU per step (docs/benchmarks.md) and Lightning drops the other steps' values anyway.
        train_stats always gets every value.
        """
        if isinstance(value, torch.Tensor):
            value = value.detach()
        rows = self.train_stats.setdefault(name, [])
        if isinstance(value, torch.Tensor):
            self._pending_stats.append((name, len(rows)))
        rows.append((self.global_step, self.n_samples, self.stat_counter, value))
        self.stat_counter += 1
        fx = lightning_compat.current_hook(self)
        if lightning_compat.attached_trainer(self) is not None and fx is not None:  # inside a Lightning hook: also to the loggers
            per_step = not fx.endswith("epoch_end")
            if fx == "training_step" and not self._lightning_wants_step_value(prog_bar):
                return
            self.log(name, value, prog_bar=prog_bar, on_step=per_step, on_epoch=not per_step, batch_size=1, rank_zero_only=True)

    def _lightning_wants_step_value(self, prog_bar: bool) -> bool:
        """True on steps whose per-step values Lightning's loggers write (or the progress bar shows)."""
        if lightning_compat.loggers_write_this_step(self.trainer):
            return True
        bar = getattr(self.trainer, "progress_bar_callback", None)
        return prog_bar and self.global_step % PROG_BAR_EVERY == 0 and getattr(bar, "shows_metrics", True)

    def flush_stats(self) -> dict[str, list[tuple[int, int, int, Any]]]:
        """Turn pending tensor values into floats (one sync for all of them) and return train_stats."""
        pending = [(n, i) for n, i in self._pending_stats if isinstance(self.train_stats[n][i][3], torch.Tensor)]
        self._pending_stats = []
        if pending:
            values = torch.stack([self.train_stats[n][i][3].float().cpu() for n, i in pending]).tolist()
            for (name, i), v in zip(pending, values):
                s, n, c, _ = self.train_stats[name][i]
                self.train_stats[name][i] = (s, n, c, v)
        return self.train_stats

    # --- training -----------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses, n_samples = self.train_losses(batch, self.train_params)
        self.n_samples += n_samples * self.trainer.world_size
        mask = batch.get("mask")  # absent when nothing is padded: every token is real
        self._tokens_since_log = self._tokens_since_log + (mask.sum().cpu() if mask is not None else batch["x_indices"].numel())
        for name, value in global_mean(lightning_compat.attached_trainer(self), losses).items():  # several ranks: the global batch's loss
            self.log_stat(f"stat/train_loss:{name}", value, prog_bar=name == "main")
        # Here rather than in on_train_batch_end: checkpoints are written by callbacks at batch end,
        # before that hook would run, and a resumed run must not miss what it logs.
        if self._hyperparams_step(batch_idx):
            self.log_hyperparams_and_time()
        return losses["main"]

    def _hyperparams_step(self, batch_idx: int) -> bool:
        """Every `hyperparams_log_freq` optimizer steps counted over the whole run, not within an epoch:
        `log_every_n_steps` divides it (train/run.py), so the CSV and wandb get these values in every epoch."""
        tp = self.train_params
        last_micro_batch = (batch_idx + 1) % tp.accumulate_grad_batches == 0
        return last_micro_batch and (self.global_step + 1) % tp.hyperparams_log_freq == 0

    def on_train_start(self) -> None:
        self._start_time = time.perf_counter() - self._elapsed_before
        self._last_log = (time.perf_counter(), self.n_samples)

    def log_hyperparams_and_time(self) -> None:
        """Periodic bookkeeping: learning rate, elapsed time, throughput. Add your own here."""
        now = time.perf_counter()
        last_t, _ = self._last_log or (now, 0)
        tokens = int(self._tokens_since_log) * self.trainer.world_size
        self.n_tokens += tokens
        self.log_stat("lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self.log_stat("n_tokens", self.n_tokens)
        self.log_stat("time/elapsed_s", now - (self._start_time or now))
        if now > last_t:
            self.log_stat("time/tokens_per_s", tokens / (now - last_t))
        self._last_log = (now, self.n_samples)
        self._tokens_since_log = torch.zeros((), dtype=torch.long)
        self.flush_stats()

    # --- checkpoints (train/checkpointing.py) -----------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the state that lives outside the nn.Module; plain JSON types, so weights_only loading works."""
        stats = self.flush_stats()
        checkpoint["lm_trainer"] = {
            "train_stats": {k: [list(r) for r in rows] for k, rows in stats.items()},
            "stat_counter": self.stat_counter,
            "n_samples": self.n_samples,
            "n_tokens": self.n_tokens,
            "tokens_since_log": int(self._tokens_since_log),
            "elapsed_s": time.perf_counter() - self._start_time if self._start_time is not None else self._elapsed_before,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("lm_trainer")
        if saved is None:
            return
        self.train_stats = {k: [tuple(r) for r in rows] for k, rows in saved["train_stats"].items()}
        self._pending_stats = []
        self.stat_counter = int(saved["stat_counter"])
        self.n_samples = int(saved["n_samples"])
        self.n_tokens = int(saved.get("n_tokens", 0))
        self._tokens_since_log = torch.tensor(int(saved["tokens_since_log"]), dtype=torch.long)
        self._elapsed_before = float(saved["elapsed_s"])

    # --- validation ---------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sums = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        accumulate(self._val_sums, self.model.eval_sums(batch))

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for name, (s, c) in self._val_sums.items():
            s = self.trainer.strategy.reduce(s.to(self.device), reduce_op="sum")
            c = self.trainer.strategy.reduce(c.to(self.device), reduce_op="sum")
            value = s / c.clamp(min=1)
            self.log_stat(f"stat/val_{name}", value.float(), prog_bar=name == "loss:main")
            if name == "loss:main" and self.train_params.lr_schedule == "plateau":
                step_plateau(self.trainer, value)
        for name, value in task_val_stats(self.model, getattr(self.trainer, "datamodule", None)).items():
            self.log_stat(name, value)  # the task's floor/baselines and model-based metrics (train/task_metrics.py)
        self.flush_stats()

    # --- samples ------------------------------------------------------------------------
    def on_train_epoch_end(self) -> None:
        if self.trainer.is_global_zero and self.train_params.n_print_samples > 0 and not is_fsdp(self.trainer):  # FSDP: weights sharded
            self.print_samples()

    def print_samples(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        lines = [f"samples after epoch {self.current_epoch} ({self.n_samples} samples trained):"]
        for prompt, expected in dm.prompts("val", self.train_params.n_print_samples):
            limit = len(prompt) + self.train_params.print_sample_len
            if expected is None:
                text = self.model.sample(prompt, max_seq_len=limit, temperature=1.0)
                lines.append(f"  {text!r}")
            else:
                text = self.model.sample(prompt, max_seq_len=limit, temperature=0)
                mark = "ok " if text == dm.tokenizer.decode(prompt) + expected else "   "
                lines.append(f"  {mark}{text!r}  (expected {expected!r})")
        print("\n".join(lines), flush=True)

    # --- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        tp = self.train_params
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        decay = [p for n, p in named if plain_param_name(n) in self.decay_names]
        no_decay = [p for n, p in named if plain_param_name(n) not in self.decay_names]
        groups = [{"params": decay, "weight_decay": tp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = fused_adamw_supported(self.device)  # one kernel for all parameters; CPU too (bench: 4 -> 0.8 ms/step)
        if tp.grad_clip and "mixed" in str(self.trainer.precision):
            fused = False  # Lightning refuses to clip the gradients of a fused optimizer under mixed precision
        opt = torch.optim.AdamW(groups, lr=tp.lr, betas=(tp.beta1, tp.beta2), fused=fused or None)
        return {"optimizer": opt, "lr_scheduler": scheduler_config(opt, tp, int(self.trainer.estimated_stepping_batches))}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):  # plateau: stepped per validation (step_plateau)
            super().lr_scheduler_step(scheduler, metric)


    def configure_gradient_clipping(self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None) -> None:
        if gradient_clip_val and is_fsdp(self.trainer):  # sharded gradients: FSDP computes the norm over all shards
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        total = CheckedGradNorms.take(self, params)  # the non-finite guard's norms of these gradients, if any
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            if total is not None:  # clip by them: no second norm pass
                clip_by_total_norm(params, gradient_clip_val, total)
                return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def decays(name: str, p: torch.Tensor) -> bool:
    """AdamW weight decay on matrices only: not on biases, norms or the position embeddings."""
    return p.dim() >= 2 and not name.startswith("pos_enc.")


def fused_adamw_supported(device: torch.device) -> bool:
    """Whether `torch.optim.AdamW(fused=True)` runs on `device`: CUDA always, CPU where this torch has the kernel."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and _cpu_fused_adamw()


@functools.lru_cache(maxsize=None)
def _cpu_fused_adamw() -> bool:
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    try:
        torch.optim.AdamW([p], fused=True).step()
        return True
    except (RuntimeError, TypeError):
        return False
