"""One training run from a `RunConfig`: data → LM → LMTrainer → Lightning Trainer → saved run.

While it trains, the run has a state folder (the run dir with `--save`, else its log folder) with
`run_state.json` and `checkpoints/last.ckpt`; see train/resume.py and train/checkpointing.py.
A finished `--save` run is swapped in as a complete saved run (train/saving.py) and the
checkpoints go away; a run that stops early keeps them so `--resume` can continue it.
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from train.config import RunConfig
from train.resume import CHECKPOINTS, FAILED, FORMAT, LAST, STATE, ResumePoint, RunFailed, RunInterrupted, now_iso, record_in_index, write_state


@dataclass
class RunOptions:
    save: bool = False
    save_dir: Path = Path("../saved-models")
    log_dir: Path = Path("../logs")
    use_wandb: bool = True
    seed: int = 0
    gpu_ids: list[int] | None = None
    resume_command: Callable[[Path], str] | None = None  # main.py: the command line that continues a run, with every original flag
    allow_unverified: bool = False  # --allow-unverified: load a checkpoint whose .sha256 is missing or unreadable

    @property
    def index_root(self) -> Path:
        """Where the run index (identity → state folder) lives: the save dir when saving, else the log dir."""
        return Path(self.save_dir if self.save else self.log_dir)


@dataclass
class RunResult:
    run_dir: Path | None
    val: dict[str, float]
    train_stats: dict[str, list]
    wall_time_s: float
    lm: Any = None


def quiet_lightning() -> None:
    """Silence Lightning's hints that don't apply to small in-memory datasets or to our own resuming."""
    import logging

    for pattern in (
        ".*does not have many workers.*",
        ".*The number of training batches.*",
        ".*LeafSpec.*",
        ".*isinstance.*treespec.*",
        ".*Experiment logs directory.*exists and is not empty.*",  # a resumed run appends to its CSV log
        ".*Checkpoint directory.*exists and is not empty.*",
        ".*sync_dist=True.*",  # several processes: LMTrainer logs values it already reduced (train/distributed.py)
        ".*The dirpath has changed from.*",  # a moved run folder: RunCheckpoint keeps no state worth restoring
        ".*ReduceLROnPlateau conditioned on metric.*",  # lr_schedule="plateau" before the first validation
    ):
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def _relative(path: Path, root: Path) -> str | None:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return None


def _log_folder(state: dict[str, Any], state_dir: Path, opts: RunOptions) -> Path:
    """A resumed run's log folder: its state folder without --save, else found again under --log-dir (moved dirs resume in place)."""
    if not state["save"]:
        return state_dir
    rel = state.get("log_folder_rel")
    return Path(opts.log_dir) / rel if isinstance(rel, str) else Path(state["log_folder"])


def log_every_n_steps(hyperparams_log_freq: int, most: int = 50) -> int:
    """Lightning's logging period: the largest divisor of `hyperparams_log_freq` up to `most`, so every
    step that records lr/time/throughput is also a step the CSV and wandb loggers write."""
    return max(d for d in range(1, min(most, hyperparams_log_freq) + 1) if hyperparams_log_freq % d == 0)


def checkpoint_bytes(n_params: int) -> int:
    """Rough disk need: a checkpoint (weights + AdamW moments) twice while it is replaced, plus the saved weights."""
    return n_params * 4 * (3 * 2 + 1) + (1 << 20)


def run_one(rc: RunConfig, opts: RunOptions, namer: Any, resume: ResumePoint | None = None, identity: str | None = None) -> RunResult:
    """Train one run (or continue `resume`) and save it when `opts.save`.

    Raises RunInterrupted (Ctrl-C/SIGTERM: checkpoint written), RunFailed (non-finite loss or
    gradient: FAILED.json written) or UserError (bad input / environment, before training; a run
    another process holds, train/locks.py).
    """
    from train.locks import RunLocks

    with RunLocks() as locks:
        return _train(rc, opts, namer, resume, identity, locks)


def _train(rc: RunConfig, opts: RunOptions, namer: Any, resume: ResumePoint | None, identity: str | None, locks: Any) -> RunResult:
    import lightning as L

    from train.checkpointing import InterruptFlag, ResumableLMDataModule, ResumeState, RunCheckpoint, SafeCheckpointIO
    from train.evaluate import evaluate
    from train.freeze import param_summary
    from train.guards import NonFiniteError, NonFiniteGuard
    from train.health import TrainingHealth
    from train.init_from import RECORD, build_lm, prepare
    from train.schedules import early_stopping
    from train.locks import claim_folder
    from train.loggers import make_loggers
    from train.saving import check_free_space, check_writable, save_run
    from train.snapshots import FOLDER as SNAPSHOTS, Snapshots, enabled as snapshots_enabled, summary as snapshot_summary
    from train.trainer import LMTrainer

    from train.distributed import env_rank_zero, final_model, plan_scaling, rank_seed_callback

    from train.cpu_threads import apply_threads
    from train.progress import progress_bar
    from train.summary import print_summary

    quiet_lightning()
    apply_threads(rc.train.threads)  # before any torch work; warns once when the machine is overloaded
    plan = plan_scaling(rc.train, opts.gpu_ids)  # impossible hardware settings fail here, before anything is built
    rank0 = env_rank_zero()  # several processes (docs/scaling.md): only rank 0 writes files, logs or wandb
    if resume is not None:
        state = resume.state
        state_dir = resume.state_dir
        if rank0:
            locks.acquire(state_dir)  # a second process on this run stops here, naming the first
        run_dir = state_dir if state["save"] else None
        log_folder = _log_folder(state, state_dir, opts)
        timestamp, seed = state["timestamp"], int(state["seed"])
    else:
        state = None
        run_dir = namer.save_folder_path(opts.save_dir) if opts.save else None
        log_folder = namer.log_folder_path(opts.log_dir)
        state_dir = run_dir or log_folder
        timestamp, seed = namer.timestamp, opts.seed
    if rank0:
        check_writable(state_dir)  # before anything slow: fail fast, create nothing
        check_writable(log_folder)

    origin = prepare(rc, opts.save_dir)  # init_from: the source's weights, tokenizer and architecture (train/init_from.py)
    rc = origin.rc if origin else rc
    L.seed_everything(seed, workers=True, verbose=False)
    dm_kwargs = dict(seed=seed, batch_size=rc.train.batch_size, num_workers=rc.train.num_workers)
    dm = origin.datamodule(ResumableLMDataModule, **dm_kwargs) if origin else ResumableLMDataModule(rc.data, **dm_kwargs)
    lm = origin.lm() if origin else build_lm(rc, dm.tokenizer)  # then freeze / LoRA (TrainParams)
    module = LMTrainer(lm, rc.train)
    n_params = sum(p.numel() for p in lm.parameters())
    n_trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)  # fewer with freeze / LoRA
    check_free_space(state_dir, checkpoint_bytes(n_params))
    print(f"run: {namer.describe()} | {param_summary(lm)} | {len(dm.datasets['train'])} train sequences", flush=True)
    print(lm.attention_path(), flush=True)
    if origin:
        origin.measure_before(module, dm.val_dataloader())
    if plan.world_size > 1 or plan.precision != "32-true" or plan.compile:
        print(f"hardware: {plan.describe(rc.train.batch_size, rc.train.accumulate_grad_batches)}", flush=True)

    if rank0 and resume is None:  # claim fresh folders atomically: concurrent identical runs get their own (train/locks.py)
        log_folder = claim_folder(log_folder)
        run_dir = claim_folder(run_dir) if run_dir is not None else None
        state_dir = run_dir or log_folder
        locks.acquire(state_dir)
    ckpt_dir = state_dir / CHECKPOINTS
    if rank0:
        state_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        wandb_id = _new_wandb_id()
        state = {
            "format": FORMAT,
            "status": "running",
            "identity": identity,
            "config_arg": getattr(getattr(namer, "args", None), "config", None) or rc.config_name,
            "config_name": rc.config_name,
            "source": rc.source,
            "varying": rc.varying,
            "params": rc.as_dict(),
            "seed": seed,
            "save": run_dir is not None,
            "state_dir": str(state_dir),
            "log_folder": str(log_folder),
            "log_folder_rel": _relative(log_folder, opts.log_dir),
            "timestamp": timestamp,
            "wandb_project": namer.wandb_proj_name(),
            "wandb_run_name": namer.run_name(),
            "wandb_id": wandb_id,
            "started": now_iso(),
            "last_checkpoint_step": None,
        }
        if rank0:
            write_state(state_dir, state)
            if identity is not None:
                record_in_index(opts.index_root, identity, state_dir, namer.describe())
    elif rank0:
        (state_dir / FAILED).unlink(missing_ok=True)
        write_state(state_dir, state, status="running", message=None)

    def saved(step: int) -> None:
        if rank0:
            write_state(state_dir, state, last_checkpoint_step=step)

    interrupt = InterruptFlag()
    snapshots = [Snapshots(state_dir / SNAPSHOTS, rc.train)] if snapshots_enabled(rc.train) else []  # train/snapshots.py
    loggers = make_loggers(log_folder, opts.use_wandb, state["wandb_project"], state["wandb_run_name"], rc.as_dict(), wandb_id=state.get("wandb_id")) if rank0 else []
    trainer = L.Trainer(
        max_epochs=rc.train.epochs,
        max_steps=rc.train.max_steps,
        gradient_clip_val=rc.train.grad_clip,
        accumulate_grad_batches=rc.train.accumulate_grad_batches,
        val_check_interval=rc.train.val_check_interval,
        logger=loggers,
        log_every_n_steps=log_every_n_steps(rc.train.hyperparams_log_freq),
        num_sanity_val_steps=0,
        enable_checkpointing=True,
        enable_model_summary=False,
        callbacks=[
            NonFiniteGuard(), ResumeState(dm.train_sampler), interrupt,
            RunCheckpoint(ckpt_dir, rc.train.checkpoint_every_n_steps, interrupt, saved), rank_seed_callback(seed), progress_bar(), *snapshots,
            *([TrainingHealth()] if rc.train.log_health else []), *early_stopping(rc.train),
        ],
        plugins=[SafeCheckpointIO(module, allow_unverified=opts.allow_unverified)],
        **plan.trainer_kwargs(),
    )
    ckpt = resume.ckpt if resume is not None else None
    if ckpt is not None:
        print(f"resuming {state_dir} from step {state.get('last_checkpoint_step')} ({ckpt})", flush=True)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except NonFiniteError as e:
        _finish_loggers(loggers)
        last = ckpt_dir / LAST
        good = {"path": str(last), "step": state.get("last_checkpoint_step")} if last.is_file() else None
        msg = f"{e}; stopped. " + (
            f"Last good checkpoint: step {good['step']} in {last}. " if good else "No checkpoint was written before it. "
        ) + f"Run marked failed in {state_dir / FAILED}"
        failure = {**e.as_dict(), "message": msg, "last_good_checkpoint": good, "time": now_iso()}
        if rank0:
            (state_dir / FAILED).write_text(json.dumps(failure, indent=1))
            write_state(state_dir, state, status="failed", message=str(e))
        raise RunFailed(msg) from None
    except RunInterrupted as e:
        _finish_loggers(loggers)
        step = state.get("last_checkpoint_step")
        if rank0:
            write_state(state_dir, state, status="interrupted", message=str(e))
        again = opts.resume_command(state_dir) if opts.resume_command else f"python3 main.py --resume={state_dir}"
        raise RunInterrupted(f"{e}: checkpoint at step {step} in {ckpt_dir / LAST}; continue with: {again}") from None
    except BaseException:
        if rank0:
            write_state(state_dir, state, status="interrupted", message="stopped by an error")
        raise
    finally:
        interrupt.restore()
    wall = time.perf_counter() - start
    lm = final_model(trainer, module)  # every rank takes part (FSDP gathers the weights); None off rank 0
    if lm is None:  # ranks other than 0: rank 0 evaluates, saves and logs
        return RunResult(None, {}, {}, wall)
    if origin:
        lm = origin.finish(lm)  # LoRA: keep the adapter to save, merge it into the weights
    val = evaluate(lm, dm.val_dataloader())
    test = evaluate(lm, dm.test_dataloader()) if len(dm.datasets["test"]) else {}
    module.log_stat("stat/final_val_loss:main", val["loss:main"])
    if test:
        module.log_stat("stat/test_loss:main", test["loss:main"])
    train_stats = module.flush_stats()
    print("final val: " + ", ".join(f"{k}={v:.4f}" for k, v in val.items()), flush=True)
    if test:
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()), flush=True)
    stopped = _early_stop(trainer)
    if stopped:
        print(f"stopped early at step {trainer.global_step}: {stopped}", flush=True)
    _finish_loggers(loggers)
    results = {"val_loss": val["loss:main"], "val": val, "test_loss": test.get("loss:main"), "test": test, "n_params": n_params,
               "n_trainable": n_trainable, "wall_time_s": wall, "timestamp": timestamp, "steps": trainer.global_step, "stopped_early": stopped}
    if snapshots and (kept := snapshot_summary(state_dir / SNAPSHOTS)):
        results["checkpoints_over_training"] = kept
    if run_dir is not None and trainer.is_global_zero:
        params = {**rc.as_dict(), "seed": seed, "config_name": rc.config_name, "varying": rc.varying}
        extra = {RECORD: origin.record()} if origin else None
        run_dir = save_run(run_dir, lm, params, train_stats, results, extra, replace_incomplete=True, carry=(SNAPSHOTS,), adapter=origin and origin.adapter)
        print(f"saved to {run_dir}", flush=True)
    else:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        write_state(state_dir, state, status="done", finished=now_iso())
    print_summary(rc, results, train_stats, dm, run_dir=run_dir, log_folder=log_folder, ckpt_dir=ckpt_dir, save_dir=opts.save_dir, loggers=loggers)
    return RunResult(run_dir, val, train_stats, wall, lm)


def _early_stop(trainer: Any) -> str | None:
    """Why the early-stopping callback ended the run, or None if it did not."""
    from lightning.pytorch.callbacks import EarlyStopping

    for cb in trainer.callbacks:
        if isinstance(cb, EarlyStopping) and cb.wait_count >= cb.patience:
            return f"{cb.monitor} did not improve for {cb.wait_count} validations (best {float(cb.best_score):.4g})"
    return None


def _new_wandb_id() -> str:
    import secrets

    return secrets.token_hex(4)


def _finish_loggers(loggers: list) -> None:
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger" and getattr(lg, "_experiment", None) is not None:
            lg.experiment.finish()
