"""Resumable checkpoints: a run killed at any moment continues exactly where its last checkpoint left it.

`checkpoints/last.ckpt` (in the run's state folder, see train/resume.py) is a Lightning checkpoint
holding weights, optimizer, scheduler and loop progress, plus what Lightning does not keep:

* LMTrainer's own state (train_stats, counters) — `LMTrainer.on_save_checkpoint`;
* the global RNG states (torch, CUDA, numpy, python) and the position in the shuffled training
  data — `ResumeState` below. The train order comes from `ResumableSampler`, which yields the
  same order as a `DataLoader(shuffle=True)` seeded like `LMDataModule`'s, but can restart mid-epoch.

Writes are atomic (temporary file, fsync, rename) with the sha256 in `last.ckpt.sha256`, so a
kill mid-write leaves the previous checkpoint intact and a damaged file is refused by name.
Loading always uses `torch.load(weights_only=True)`: no arbitrary pickle is ever executed.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import signal
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Sampler

from data.dataloader import LMDataModule
from train import lightning_compat
from train.distributed import any_rank
from core.errors import UserError
from train.integrity import accepted_hashes, verify_checkpoint_file
from train.sharding import shard_for
from train.resume import RunInterrupted, write_json_atomic

SIDECAR_SUFFIX = ".sha256"


# --- data order ---------------------------------------------------------------------------
class ResumableSampler(Sampler[int]):
    """Shuffled indices, epoch by epoch, restartable in the middle of an epoch.

    The order of epoch e is the one `DataLoader(ds, shuffle=True, generator=Generator().manual_seed(seed))`
    yields on its e-th pass when Lightning drives it (a test holds them equal), so runs train exactly as
    they did with that loader.
    Lightning calls `set_epoch`; `resume` makes the next pass start `skip` samples into epoch `epoch`.
    """

    def __init__(self, n: int, seed: int, batch_size: int, num_workers: int = 0):
        self.n, self.seed, self.batch_size = n, seed, batch_size
        # RandomSampler draws a second (empty) permutation when iterated past its end: the loader does
        # that for a partial last batch, and worker processes prefetch past the end; a full last batch
        # read by Lightning (which stops after len(loader) batches) does not.
        self.draws_remainder = n % batch_size != 0 or num_workers > 0
        self.replicas = 1  # processes sharing this order; train/sharding.py sets it
        self.epoch = 0
        self._anchor: tuple[int, torch.Tensor] = (0, torch.Generator().manual_seed(seed).get_state())
        self._skip: tuple[int, int] | None = None
        self.current: tuple[int, torch.Tensor] | None = None  # (epoch, generator state at its start) of the pass in progress

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def _draw(self, g: torch.Generator) -> list[int]:
        # What DataLoader + RandomSampler take from their shared generator on each pass under Lightning:
        # the loader's base seed, the permutation, and maybe the remainder permutation (see __init__).
        torch.empty((), dtype=torch.int64).random_(generator=g)
        perm = torch.randperm(self.n, generator=g).tolist()
        if self.draws_remainder:
            torch.randperm(self.n, generator=g)
        return perm

    def _generator_at(self, epoch: int) -> torch.Generator:
        start, state = self._anchor
        g = torch.Generator()
        if epoch < start:
            g.manual_seed(self.seed)
            start = 0
        else:
            g.set_state(state)
        for _ in range(epoch - start):
            self._draw(g)
        return g

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        g = self._generator_at(epoch)
        self.current = (epoch, g.get_state())
        perm = self._draw(g)
        self._anchor = (epoch + 1, g.get_state())
        skip = self._skip[1] if self._skip and self._skip[0] == epoch else 0
        self._skip = None
        yield from perm[skip:]

    def position(self, epoch: int, batches_done: int) -> dict[str, Any]:
        pos: dict[str, Any] = {"epoch": epoch, "batches_done": batches_done, "batch_size": self.batch_size, "n": self.n, "replicas": self.replicas}
        if self.current is not None and self.current[0] == epoch:
            pos["generator_state"] = self.current[1]
        return pos

    def resume(self, pos: dict[str, Any]) -> None:
        if pos.get("n") != self.n or pos.get("batch_size") != self.batch_size:
            raise UserError(
                f"the checkpoint was written for {pos.get('n')} training samples in batches of {pos.get('batch_size')}, "
                f"but the data now has {self.n} in batches of {self.batch_size}; the run can't continue on different data"
            )
        epoch = int(pos["epoch"])
        self.epoch = epoch
        if "generator_state" in pos:
            self._anchor = (epoch, pos["generator_state"])
        self._skip = (epoch, int(pos["batches_done"]) * self.batch_size * int(pos.get("replicas", 1)))  # every rank's batches


class ResumableDataLoader(DataLoader):
    """A DataLoader Lightning treats as resumable. Its position is restored by `ResumeState` (from
    Lightning's own batch count, exact even though Lightning reads ahead), so its state is empty."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class ResumableLMDataModule(LMDataModule):
    """LMDataModule whose shuffled train loader uses a `ResumableSampler` (same order, restartable)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.train_sampler = ResumableSampler(len(self.datasets["train"]), self.seed, self.batch_size, self.num_workers)

    def train_dataloader(self, batch_size: int | None = None, shuffle: bool = True) -> DataLoader:
        dl = super().train_dataloader(batch_size, shuffle)
        if not shuffle or dl.batch_size != self.batch_size:
            return dl
        return ResumableDataLoader(
            dl.dataset,
            batch_size=dl.batch_size,
            sampler=shard_for(self.trainer, self.train_sampler),  # several processes: this rank's share (train/sharding.py)
            collate_fn=dl.collate_fn,
            num_workers=dl.num_workers,
            persistent_workers=dl.persistent_workers,
            pin_memory=dl.pin_memory,
            drop_last=dl.drop_last,
            generator=torch.Generator().manual_seed(self.seed),  # worker seeds only; keeps the global RNG untouched
        )


# --- RNG states ---------------------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    """Global RNG states in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": list(pystate), "gauss": pygauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


class ResumeState(Callback):
    """Saves the RNG states and the data position in each checkpoint; restores them on resume.

    RNG states are put back at `on_train_start`, the last moment before the first resumed batch.
    """

    def __init__(self, sampler: ResumableSampler | None):
        self.sampler = sampler
        self._pending_rng: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        fit = trainer.fit_loop
        data = None
        if self.sampler is not None:
            data = self.sampler.position(fit.epoch_progress.current.processed, fit.epoch_loop.batch_progress.current.ready)
        checkpoint["harness"] = {"rng": rng_states(), "data": data}

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("harness") or {}
        if saved.get("data") and self.sampler is not None:
            self.sampler.resume(saved["data"])
        self._pending_rng = saved.get("rng")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self._pending_rng is not None:
            set_rng_states(self._pending_rng)
            self._pending_rng = None


# --- Ctrl-C / SIGTERM -------------------------------------------------------------------------
class InterruptFlag(Callback):
    """Turns the first SIGINT/SIGTERM during training into a request: checkpoint after this batch, then stop.

    A second signal interrupts at once (without a new checkpoint; the last one written is resumed from). Handlers are installed when
    training starts (after Lightning's own) and put back by `restore()`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            self.restore()
            # not KeyboardInterrupt: Lightning turns that into sys.exit(1); this reaches main.py (exit 130, resume line)
            raise RunInterrupted(f"{name} received twice, stopped at once")
        self.requested = name
        print(f"\n{name} received: writing a checkpoint after this batch, then stopping (send it again to stop at once)", flush=True)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        try:
            for s in self.SIGNALS:
                self._previous.setdefault(s, signal.getsignal(s))
                signal.signal(s, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            pass

    def restore(self) -> None:
        for s, h in self._previous.items():
            try:
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            except ValueError:
                pass
        self._previous = {}


# --- the checkpoint callback ------------------------------------------------------------------
class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint keeping one file, `last.ckpt`: every N optimizer steps, after every
    validation, at the end of training, and when an interrupt was requested (then it stops the run).

    A step checkpoint is skipped on a batch that a validation follows: the one written after the
    validation replaces it (Lightning does not re-run a validation when resuming from a checkpoint
    written just before it, so that one would lose the validation's statistics).
    """

    def __init__(self, dirpath: Path, every_n_steps: int, interrupt: InterruptFlag | None = None, on_saved: Callable[[int], None] | None = None):
        super().__init__(
            dirpath=str(dirpath),
            save_top_k=0,
            save_last=True,
            every_n_train_steps=every_n_steps if every_n_steps > 0 else None,
            enable_version_counter=False,
            save_on_train_epoch_end=False,
        )
        self.interrupt = interrupt
        self.on_saved = on_saved

    @property
    def state_key(self) -> str:
        return "RunCheckpoint"

    def _validation_follows(self, trainer: Any) -> bool:
        try:
            return lightning_compat.validation_follows(trainer)
        except Exception:  # internal API moved: checkpoint anyway (resume stays correct, may skip a validation)
            return False

    def _save_last_now(self, trainer: Any) -> None:
        step, path = lightning_compat.checkpoint_saved_at(self)
        if step != trainer.global_step or not path:
            lightning_compat.save_last_checkpoint(self, trainer)

    def _stop_if_requested(self, trainer: Any) -> None:
        requested = self.interrupt.requested if self.interrupt is not None else None
        if any_rank(trainer, bool(requested)):  # several processes: all stop after the same batch (train/distributed.py)
            self._save_last_now(trainer)
            raise RunInterrupted(f"{requested or 'a signal on another rank'} at step {trainer.global_step}")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._validation_follows(trainer):
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._stop_if_requested(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self._save_last_now(trainer)
        self._stop_if_requested(trainer)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._save_last_now(trainer)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:  # a private hook (train/lightning_compat.py)
        super()._save_checkpoint(trainer, filepath)
        if self.on_saved is not None:
            self.on_saved(trainer.global_step)


# --- file I/O -----------------------------------------------------------------------------------
def sidecar(path: Path) -> Path:
    return Path(f"{path}{SIDECAR_SUFFIX}")


def _accepted_hashes(path: Path) -> list[str] | None:
    return accepted_hashes(sidecar(path))


def verify_checkpoint(path: Path, allow_unverified: bool = False) -> None:
    """Refuse a checkpoint whose bytes don't match the sha256 recorded when it was written, or that has no record."""
    verify_checkpoint_file(Path(path), sidecar(Path(path)), allow_unverified)


def load_checkpoint_safely(path: Path, map_location: Any = "cpu", allow_unverified: bool = False) -> dict[str, Any]:
    """Verified, pickle-free (`weights_only=True`) load of a Lightning checkpoint, with a one-line error."""
    verify_checkpoint(path, allow_unverified)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot load checkpoint {path} safely (weights_only=True): {first}") from None


CHECKPOINT_KEYS = ("state_dict", "optimizer_states", "lr_schedulers", "loops", "lm_trainer", "harness", "global_step")


def check_checkpoint_fits(checkpoint: Any, path: Path, module: Any) -> None:
    """Refuse a checkpoint (verified or not) that isn't a full training state of this run's model."""
    restart = f"delete {Path(path).parent.parent} to restart the run from scratch"
    if not isinstance(checkpoint, dict) or any(k not in checkpoint for k in CHECKPOINT_KEYS):
        have = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise UserError(f"checkpoint {path} is not a training checkpoint of this harness (it holds {have}); {restart}")
    saved, own = checkpoint["state_dict"], module.state_dict()
    if not isinstance(saved, dict) or set(saved) != set(own):
        raise UserError(f"checkpoint {path} holds other parameters than the model in its run_state.json; {restart}")
    for k, v in own.items():
        if not isinstance(saved[k], torch.Tensor) or saved[k].shape != v.shape:
            got = tuple(saved[k].shape) if isinstance(saved[k], torch.Tensor) else type(saved[k]).__name__
            raise UserError(f"checkpoint {path}: {k} has shape {got} but the run's model needs {tuple(v.shape)} (run_state.json and the checkpoint disagree); {restart}")


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic, hashed checkpoint writes; verified `weights_only=True` reads, checked to fit `module` when given."""

    def __init__(self, module: Any = None, allow_unverified: bool = False):
        super().__init__()
        self.module, self.allow_unverified = module, allow_unverified

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        data = buf.getbuffer()
        digest = hashlib.sha256(data).hexdigest()
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            old = _accepted_hashes(path) or []
            write_json_atomic(sidecar(path), {"sha256": [digest, *old][:3]})  # old and new both valid while switching
            os.replace(tmp, path)
            write_json_atomic(sidecar(path), {"sha256": [digest]})
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise UserError(
                f"could not write checkpoint {path}: {e.strerror or e}; the previous checkpoint is kept — free space, then resume with --resume={path.parent.parent}"
            ) from None

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        checkpoint = load_checkpoint_safely(Path(path), map_location=map_location or "cpu", allow_unverified=self.allow_unverified)
        if self.module is not None:
            check_checkpoint_fits(checkpoint, Path(path), self.module)
        return checkpoint

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        sidecar(Path(path)).unlink(missing_ok=True)
