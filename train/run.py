"""One training run from a `RunConfig`: data → LM → LMTrainer → Lightning Trainer → saved run."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.config import RunConfig
from train.errors import UserError


@dataclass
class RunOptions:
    save: bool = False
    save_dir: Path = Path("../saved-models")
    log_dir: Path = Path("../logs")
    use_wandb: bool = True
    seed: int = 0
    gpu_ids: list[int] | None = None


@dataclass
class RunResult:
    run_dir: Path | None
    val: dict[str, float]
    train_stats: dict[str, list]
    wall_time_s: float
    lm: Any = None


def quiet_lightning() -> None:
    """Silence Lightning's hints that don't apply to small in-memory datasets."""
    import logging

    for pattern in (".*does not have many workers.*", ".*The number of training batches.*", ".*LeafSpec.*", ".*isinstance.*treespec.*"):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def device_kwargs(rc: RunConfig, opts: RunOptions) -> dict[str, Any]:
    if opts.gpu_ids:
        return {"accelerator": "gpu", "devices": opts.gpu_ids}
    return {"accelerator": rc.train.accelerator, "devices": rc.train.devices}


def run_one(rc: RunConfig, opts: RunOptions, namer: Any) -> RunResult:
    import lightning as L
    import torch

    from data.dataloader import LMDataModule
    from model.lm import LM
    from train.evaluate import evaluate
    from train.loggers import make_loggers
    from train.saving import check_writable, library_versions, save_run
    from train.trainer import LMTrainer

    quiet_lightning()
    if rc.model.max_seq_len < rc.data.max_seq_len:
        raise UserError(
            f"ModelParams.max_seq_len={rc.model.max_seq_len} is shorter than DataParams.max_seq_len={rc.data.max_seq_len}; raise the model's"
        )
    run_dir = namer.save_folder_path(opts.save_dir) if opts.save else None
    if run_dir is not None:
        check_writable(run_dir.parent)

    L.seed_everything(opts.seed, workers=True, verbose=False)
    dm = LMDataModule(rc.data, seed=opts.seed, batch_size=rc.train.batch_size, num_workers=rc.train.num_workers)
    lm = LM(rc.model, dm.tokenizer)
    module = LMTrainer(lm, rc.train)
    n_params = sum(p.numel() for p in lm.parameters())
    print(f"run: {namer.describe()} | {n_params:,} parameters | {len(dm.datasets['train'])} train sequences", flush=True)

    loggers = make_loggers(namer.log_folder_path(opts.log_dir), opts.use_wandb, namer.wandb_proj_name(), namer.run_name(), rc.as_dict())
    trainer = L.Trainer(
        max_epochs=rc.train.epochs,
        max_steps=rc.train.max_steps,
        gradient_clip_val=rc.train.grad_clip,
        accumulate_grad_batches=rc.train.accumulate_grad_batches,
        val_check_interval=rc.train.val_check_interval,
        precision=rc.train.precision,
        logger=loggers,
        log_every_n_steps=max(1, min(50, rc.train.hyperparams_log_freq)),
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_model_summary=False,
        **device_kwargs(rc, opts),
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    wall = time.perf_counter() - start
    lm = module.model.cpu()
    val = evaluate(lm, dm.val_dataloader())
    module.log_stat("stat/final_val_loss:main", val["loss:main"])
    train_stats = module.flush_stats()
    print(f"final val: " + ", ".join(f"{k}={v:.4f}" for k, v in val.items()), flush=True)
    for lg in loggers:
        if hasattr(lg, "experiment") and type(lg).__name__ == "WandbLogger":
            lg.experiment.finish()
    if run_dir is not None and trainer.is_global_zero:
        results = {"val_loss": val["loss:main"], "val": val, "n_params": n_params, "wall_time_s": wall, "timestamp": namer.timestamp}
        params = {**rc.as_dict(), "seed": opts.seed, "config_name": rc.config_name, "varying": rc.varying}
        run_dir = save_run(run_dir, lm, params, train_stats, results)
        print(f"saved to {run_dir}", flush=True)
    del torch
    return RunResult(run_dir, val, train_stats, wall, lm)
