"""One training run from a `RunConfig`: data → LM → LMTrainer → Lightning Trainer → saved run.

While it trains, the run has a state folder (the run dir with `--save`, else its log folder) with
`run_state.json` and `checkpoints/last.ckpt`; see train/resume.py and train/checkpointing.py.
A finished `--save` run is swapped in as a complete saved run (train/saving.py) and the
checkpoints go away; a run that stops early keeps them so `--resume` can continue it.

Heavy imports (Lightning, torch) sit at the top: main.py imports this module only once a run starts.
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L

from train.checkpointing import InterruptFlag, ResumableLMDataModule, ResumeState, RunCheckpoint, SafeCheckpointIO
from train.config import RunConfig
from train.cpu_threads import apply_threads
from train.distributed import env_rank_zero, final_model, plan_scaling, rank_seed_callback
from train.evaluate import evaluate
from train.freeze import param_summary
from train.guards import NonFiniteError, NonFiniteGuard
from train.health import TrainingHealth
from train.init_from import build_lm, prepare
from train.locks import RunLocks, claim_folder
from train.loggers import make_loggers
from train.progress import progress_bar
from train.resume import CHECKPOINTS, FAILED, FORMAT, LAST, ResumePoint, RunFailed, RunInterrupted, now_iso, record_in_index, write_state
from train.saving import RECORD, check_free_space, check_writable, save_run
from train.schedules import early_stopping
from train.snapshots import FOLDER as SNAPSHOTS, Snapshots, enabled as snapshots_enabled, summary as snapshot_summary
from train.summary import print_summary
from train.trainer import LMTrainer


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
    with RunLocks() as locks:
        return _train(rc, opts, namer, resume, identity, locks)


@dataclass
class _Folders:
    """Where a run writes: its saved-run folder (only with --save), its log folder and its state folder."""
    run_dir: Path | None
    log_folder: Path
    state_dir: Path
    timestamp: str
    seed: int
    rank0: bool

    @property
    def ckpt_dir(self) -> Path:
        return self.state_dir / CHECKPOINTS


@dataclass
class _Built:
    """What a run trains: the config (init_from may replace it), data, model and its LightningModule."""
    rc: RunConfig
    origin: Any  # train/init_from.py's source of weights, or None
    dm: Any
    lm: Any
    module: Any
    n_params: int
    n_trainable: int


@dataclass
class _Fitting:
    """The Lightning Trainer and the pieces around it that `_fit` and `_finish` close or read."""
    trainer: Any
    loggers: list
    interrupt: Any
    snapshots: list


def _train(rc: RunConfig, opts: RunOptions, namer: Any, resume: ResumePoint | None, identity: str | None, locks: Any) -> RunResult:
    """prepare (folders, data, model, state) → build the trainer → fit → finish (evaluate, save, summary)."""
    quiet_lightning()
    apply_threads(rc.train.threads)  # before any torch work; warns once when the machine is overloaded
    plan = plan_scaling(rc.train, opts.gpu_ids)  # impossible hardware settings fail here, before anything is built
    f = _folders(opts, namer, resume, locks)
    b = _build(rc, opts, namer, f, plan)
    if f.rank0 and resume is None:  # claim fresh folders atomically: concurrent identical runs get their own (train/locks.py)
        _claim(f, locks)
    if f.rank0:
        f.state_dir.mkdir(parents=True, exist_ok=True)
    state = _open_state(b.rc, opts, namer, f, resume, identity)
    fitting = _build_trainer(b, opts, f, state, plan)
    wall = _fit(b, fitting, f, state, resume, opts)
    return _finish(b, fitting, f, state, opts, wall)


def _folders(opts: RunOptions, namer: Any, resume: ResumePoint | None, locks: Any) -> _Folders:
    """A fresh run's folders from the namer, a resumed run's from its state; checked writable before anything slow."""
    rank0 = env_rank_zero()  # several processes (docs/scaling.md): only rank 0 writes files, logs or wandb
    if resume is not None:
        state, state_dir = resume.state, resume.state_dir
        if rank0:
            locks.acquire(state_dir)  # a second process on this run stops here, naming the first
        run_dir = state_dir if state["save"] else None
        f = _Folders(run_dir, _log_folder(state, state_dir, opts), state_dir, state["timestamp"], int(state["seed"]), rank0)
    else:
        run_dir = namer.save_folder_path(opts.save_dir) if opts.save else None
        log_folder = namer.log_folder_path(opts.log_dir)
        f = _Folders(run_dir, log_folder, run_dir or log_folder, namer.timestamp, opts.seed, rank0)
    if rank0:
        check_writable(f.state_dir)  # fail fast, create nothing
        check_writable(f.log_folder)
    return f


def _claim(f: _Folders, locks: Any) -> None:
    f.log_folder = claim_folder(f.log_folder)
    f.run_dir = claim_folder(f.run_dir) if f.run_dir is not None else None
    f.state_dir = f.run_dir or f.log_folder
    locks.acquire(f.state_dir)


def _build(rc: RunConfig, opts: RunOptions, namer: Any, f: _Folders, plan: Any) -> _Built:
    """Data and model (from scratch, or from init_from's source), checked to fit on disk."""
    origin = prepare(rc, opts.save_dir)  # init_from: the source's weights, tokenizer and architecture (train/init_from.py)
    rc = origin.rc if origin else rc
    L.seed_everything(f.seed, workers=True, verbose=False)
    dm_kwargs = dict(seed=f.seed, batch_size=rc.train.batch_size, num_workers=rc.train.num_workers)
    dm = origin.datamodule(ResumableLMDataModule, **dm_kwargs) if origin else ResumableLMDataModule(rc.data, **dm_kwargs)
    lm = origin.lm() if origin else build_lm(rc, dm.tokenizer)  # then freeze / LoRA (TrainParams)
    module = LMTrainer(lm, rc.train)
    n_params = sum(p.numel() for p in lm.parameters())
    n_trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)  # fewer with freeze / LoRA
    check_free_space(f.state_dir, checkpoint_bytes(n_params))
    print(f"run: {namer.describe()} | {param_summary(lm)} | {len(dm.datasets['train'])} train sequences", flush=True)
    print(lm.attention_path(), flush=True)
    if origin:
        origin.measure_before(module, dm.val_dataloader())
    if plan.world_size > 1 or plan.precision != "32-true" or plan.compile:
        print(f"hardware: {plan.describe(rc.train.batch_size, rc.train.accumulate_grad_batches)}", flush=True)
    return _Built(rc, origin, dm, lm, module, n_params, n_trainable)


def _open_state(rc: RunConfig, opts: RunOptions, namer: Any, f: _Folders, resume: ResumePoint | None, identity: str | None) -> dict[str, Any]:
    """The run's `run_state.json`: a resumed run's, marked running again, or a new one, recorded in the run index."""
    if resume is not None:
        if f.rank0:
            (f.state_dir / FAILED).unlink(missing_ok=True)
            write_state(f.state_dir, resume.state, status="running", message=None)
        return resume.state
    state = _new_state(rc, opts, namer, f, identity)
    if f.rank0:
        write_state(f.state_dir, state)
        if identity is not None:
            record_in_index(opts.index_root, identity, f.state_dir, namer.describe())
    return state


def _new_state(rc: RunConfig, opts: RunOptions, namer: Any, f: _Folders, identity: str | None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "status": "running",
        "identity": identity,
        "config_arg": getattr(getattr(namer, "args", None), "config", None) or rc.config_name,
        "config_name": rc.config_name,
        "source": rc.source,
        "varying": rc.varying,
        "params": rc.as_dict(),
        "seed": f.seed,
        "save": f.run_dir is not None,
        "state_dir": str(f.state_dir),
        "log_folder": str(f.log_folder),
        "log_folder_rel": _relative(f.log_folder, opts.log_dir),
        "timestamp": f.timestamp,
        "wandb_project": namer.wandb_proj_name(),
        "wandb_run_name": namer.run_name(),
        "wandb_id": _new_wandb_id(),
        "started": now_iso(),
        "last_checkpoint_step": None,
    }


def _build_trainer(b: _Built, opts: RunOptions, f: _Folders, state: dict[str, Any], plan: Any) -> _Fitting:
    """The Lightning Trainer with the harness's callbacks (guards, checkpoints, snapshots, health, early stopping)."""
    rc = b.rc

    def saved(step: int) -> None:
        if f.rank0:
            write_state(f.state_dir, state, last_checkpoint_step=step)

    interrupt = InterruptFlag()
    snapshots = [Snapshots(f.state_dir / SNAPSHOTS, rc.train)] if snapshots_enabled(rc.train) else []  # train/snapshots.py
    loggers = make_loggers(f.log_folder, opts.use_wandb, state["wandb_project"], state["wandb_run_name"], rc.as_dict(), wandb_id=state.get("wandb_id")) if f.rank0 else []
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
            NonFiniteGuard(), ResumeState(b.dm.train_sampler), interrupt,
            RunCheckpoint(f.ckpt_dir, rc.train.checkpoint_every_n_steps, interrupt, saved), rank_seed_callback(f.seed), progress_bar(), *snapshots,
            *([TrainingHealth()] if rc.train.log_health else []), *early_stopping(rc.train),
        ],
        plugins=[SafeCheckpointIO(b.module, allow_unverified=opts.allow_unverified)],
        **plan.trainer_kwargs(),
    )
    return _Fitting(trainer, loggers, interrupt, snapshots)


def _fit(b: _Built, fitting: _Fitting, f: _Folders, state: dict[str, Any], resume: ResumePoint | None, opts: RunOptions) -> float:
    """trainer.fit, turning a non-finite loss into RunFailed and Ctrl-C/SIGTERM into RunInterrupted, with the state recorded; the wall time."""
    ckpt = resume.ckpt if resume is not None else None
    if ckpt is not None:
        print(f"resuming {f.state_dir} from step {state.get('last_checkpoint_step')} ({ckpt})", flush=True)
    start = time.perf_counter()
    try:
        fitting.trainer.fit(b.module, datamodule=b.dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except NonFiniteError as e:
        _finish_loggers(fitting.loggers)
        raise _failed(e, f, state) from None
    except RunInterrupted as e:
        _finish_loggers(fitting.loggers)
        raise _interrupted(e, f, state, opts) from None
    except BaseException:
        if f.rank0:
            write_state(f.state_dir, state, status="interrupted", message="stopped by an error")
        raise
    finally:
        fitting.interrupt.restore()
    return time.perf_counter() - start


def _failed(e: Any, f: _Folders, state: dict[str, Any]) -> RunFailed:
    """Mark the run failed (FAILED.json names the last good checkpoint); the error to raise."""
    last = f.ckpt_dir / LAST
    good = {"path": str(last), "step": state.get("last_checkpoint_step")} if last.is_file() else None
    msg = f"{e}; stopped. " + (
        f"Last good checkpoint: step {good['step']} in {last}. " if good else "No checkpoint was written before it. "
    ) + f"Run marked failed in {f.state_dir / FAILED}"
    failure = {**e.as_dict(), "message": msg, "last_good_checkpoint": good, "time": now_iso()}
    if f.rank0:
        (f.state_dir / FAILED).write_text(json.dumps(failure, indent=1))
        write_state(f.state_dir, state, status="failed", message=str(e))
    return RunFailed(msg)


def _interrupted(e: RunInterrupted, f: _Folders, state: dict[str, Any], opts: RunOptions) -> RunInterrupted:
    """Mark the run interrupted; the error to raise names its checkpoint and the command that continues it."""
    step = state.get("last_checkpoint_step")
    if f.rank0:
        write_state(f.state_dir, state, status="interrupted", message=str(e))
    again = opts.resume_command(f.state_dir) if opts.resume_command else f"python3 main.py --resume={f.state_dir}"
    return RunInterrupted(f"{e}: checkpoint at step {step} in {f.ckpt_dir / LAST}; continue with: {again}")


def _finish(b: _Built, fitting: _Fitting, f: _Folders, state: dict[str, Any], opts: RunOptions, wall: float) -> RunResult:
    """Evaluate on rank 0, save (with --save) or mark the run done, and print the summary."""
    trainer = fitting.trainer
    lm = final_model(trainer, b.module)  # every rank takes part (FSDP gathers the weights); None off rank 0
    if lm is None:  # ranks other than 0: rank 0 evaluates, saves and logs
        return RunResult(None, {}, {}, wall)
    if b.origin:
        lm = b.origin.finish(lm)  # LoRA: keep the adapter to save, merge it into the weights
    val, test = _evaluate(lm, b)
    train_stats = b.module.flush_stats()
    stopped = _early_stop(trainer)
    if stopped:
        print(f"stopped early at step {trainer.global_step}: {stopped}", flush=True)
    _finish_loggers(fitting.loggers)
    results = {"val_loss": val["loss:main"], "val": val, "test_loss": test.get("loss:main"), "test": test, "n_params": b.n_params,
               "n_trainable": b.n_trainable, "wall_time_s": wall, "timestamp": f.timestamp, "steps": trainer.global_step, "stopped_early": stopped}
    if fitting.snapshots and (kept := snapshot_summary(f.state_dir / SNAPSHOTS)):
        results["checkpoints_over_training"] = kept
    run_dir = f.run_dir
    if run_dir is not None and trainer.is_global_zero:
        rc = b.rc
        params = {**rc.as_dict(), "seed": f.seed, "config_name": rc.config_name, "varying": rc.varying}
        extra = {RECORD: b.origin.record()} if b.origin else None
        run_dir = save_run(run_dir, lm, params, train_stats, results, extra, replace_incomplete=True, carry=(SNAPSHOTS,), adapter=b.origin and b.origin.adapter)
        print(f"saved to {run_dir}", flush=True)
    else:
        shutil.rmtree(f.ckpt_dir, ignore_errors=True)
        write_state(f.state_dir, state, status="done", finished=now_iso())
    print_summary(b.rc, results, train_stats, b.dm, run_dir=run_dir, log_folder=f.log_folder, ckpt_dir=f.ckpt_dir, save_dir=opts.save_dir, loggers=fitting.loggers)
    return RunResult(run_dir, val, train_stats, wall, lm)


def _evaluate(lm: Any, b: _Built) -> tuple[dict[str, float], dict[str, float]]:
    """Final validation and test (when the task has a test split) losses, logged and printed."""
    val = evaluate(lm, b.dm.val_dataloader())
    test = evaluate(lm, b.dm.test_dataloader()) if len(b.dm.datasets["test"]) else {}
    b.module.log_stat("stat/final_val_loss:main", val["loss:main"])
    if test:
        b.module.log_stat("stat/test_loss:main", test["loss:main"])
    print("final val: " + ", ".join(f"{k}={v:.4f}" for k, v in val.items()), flush=True)
    if test:
        print("test: " + ", ".join(f"{k}={v:.4f}" for k, v in test.items()), flush=True)
    return val, test


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
