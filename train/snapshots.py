"""Checkpoints over training: the weights at chosen moments, kept with the run to study how it learned.

Unlike `checkpoints/last.ckpt` (everything needed to resume, replaced as training goes, dropped
when the run ends), these are weights only, one safetensors file per moment, named by the
training samples seen, and they stay in the saved run (listed in its manifest.json):

    {run}/checkpoints-over-training/{n_samples}.safetensors
    {run}/checkpoints-over-training/index.json     [{n_samples, step, bytes, file}, ...]

The schedule is a set of optimizer steps fixed when training starts (so a resumed run writes
exactly the files an uninterrupted one would): every `snapshot_every_n_steps` steps (or every
`snapshot_every_n_samples` samples, rounded up to whole global batches), and with
`snapshot_log_spaced` the initial weights and steps 1, 2, 4, 8, ... where heads form. The final
weights are always one of them. `snapshot_max_count` / `snapshot_max_mb` thin the schedule
evenly in log(1 + step), keeping the first and the last, and the run says what it kept.
"""
from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from core.errors import UserError

FOLDER = "checkpoints-over-training"
INDEX = "index.json"
HEADER_BYTES = 8192  # safetensors JSON header, generous


def enabled(tp: Any) -> bool:
    return bool(tp.snapshot_every_n_steps or tp.snapshot_every_n_samples or tp.snapshot_log_spaced)


# --- the schedule -------------------------------------------------------------------------
def planned_steps(total_steps: int, every_n_steps: int = 0, log_spaced: bool = False) -> list[int]:
    """Every step the schedule asks for, up to `total_steps` (always included: the final weights)."""
    steps = {total_steps}
    if log_spaced:
        steps.add(0)
        steps.update(2**k for k in range(int(math.log2(max(total_steps, 1))) + 1))
    if every_n_steps > 0:
        steps.update(range(every_n_steps, total_steps + 1, every_n_steps))
    return sorted(s for s in steps if 0 <= s <= total_steps)


def thin_log_evenly(steps: list[int], keep: int) -> list[int]:
    """At most `keep` of the sorted `steps`, spread evenly in log(1 + step); first and last kept."""
    if keep <= 0 or len(steps) <= keep:
        return list(steps)
    if keep == 1:
        return [steps[-1]]
    u = [math.log1p(s) for s in steps]
    chosen: set[int] = set()
    for j in range(keep):
        target = u[0] + (u[-1] - u[0]) * j / (keep - 1)
        i = min(bisect.bisect_left(u, target), len(u) - 1)
        near = sorted((k for k in (i - 1, i) if k >= 0), key=lambda k: abs(u[k] - target))[0]
        lo, hi = near, near  # the nearest candidate not yet taken (there are more candidates than picks)
        while near in chosen:
            lo, hi = lo - 1, hi + 1
            options = [k for k in (lo, hi) if 0 <= k < len(u) and k not in chosen]
            if options:
                near = min(options, key=lambda k: abs(u[k] - target))
        chosen.add(near)
    return [steps[k] for k in sorted(chosen)]


@dataclass(frozen=True)
class Plan:
    steps: list[int]  # kept
    planned: int  # before any limit
    bytes_each: int
    limit: str | None  # what thinned it, for the message

    def describe(self) -> str:
        shown = ", ".join(map(str, self.steps[:12])) + (f", ... {self.steps[-1]}" if len(self.steps) > 12 else "")
        est = _mib(len(self.steps) * self.bytes_each)
        if self.limit:
            return f"checkpoints over training: {len(self.steps)} of {self.planned} planned, thinned evenly in log(step) ({self.limit}); about {est}; steps {shown}"
        return f"checkpoints over training: {len(self.steps)} planned, about {est}; steps {shown}"


def make_plan(tp: Any, total_steps: int, global_batch: int, bytes_each: int) -> Plan:
    by_samples = max(1, math.ceil(tp.snapshot_every_n_samples / global_batch)) if tp.snapshot_every_n_samples else 0
    steps = sorted(set(planned_steps(total_steps, tp.snapshot_every_n_steps, tp.snapshot_log_spaced)) | set(planned_steps(total_steps, by_samples)))
    keep, limit = len(steps), None
    if tp.snapshot_max_count and tp.snapshot_max_count < keep:
        keep, limit = tp.snapshot_max_count, f"snapshot_max_count={tp.snapshot_max_count}"
    if tp.snapshot_max_mb:
        fit = max(1, int(tp.snapshot_max_mb * 2**20 // max(1, bytes_each)))
        if fit < keep:
            keep, limit = fit, f"snapshot_max_mb={tp.snapshot_max_mb:g} holds {fit} of {_mib(bytes_each)} each"
    return Plan(thin_log_evenly(steps, keep), len(steps), bytes_each, limit)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.2f} MiB"


def weights_bytes(module: Any) -> int:
    """Bytes of one weights-only file: each distinct tensor once (tied embeddings are shared)."""
    seen: dict[int, int] = {}
    for t in module.state_dict().values():
        seen[t.data_ptr()] = max(seen.get(t.data_ptr(), 0), t.numel() * t.element_size())
    return sum(seen.values()) + HEADER_BYTES


# --- writing ------------------------------------------------------------------------------
class Snapshots(Callback):
    """Writes the planned checkpoints over training into `folder` (rank 0 only)."""

    def __init__(self, folder: Path, train_params: Any):
        self.folder = Path(folder)
        self.tp = train_params
        self.plan: Plan | None = None
        self._wanted: set[int] = set()
        self._written_steps: set[int] = set()

    @property
    def state_key(self) -> str:
        return "Snapshots"

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        tp = self.tp
        global_batch = tp.batch_size * trainer.world_size * tp.accumulate_grad_batches
        self.plan = make_plan(tp, int(trainer.estimated_stepping_batches), global_batch, weights_bytes(pl_module.model))
        self._wanted = set(self.plan.steps)
        if trainer.is_global_zero:
            print(self.plan.describe(), flush=True)
        if trainer.global_step == 0 and 0 in self._wanted:
            self._write(trainer, pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step in self._wanted and step not in self._written_steps:
            self._write(trainer, pl_module)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.global_step not in self._written_steps:  # stopped early (max_steps, early stopping): the final weights
            self._write(trainer, pl_module)
        if trainer.is_global_zero:
            entries = read_index(self.folder)
            total = sum(e["bytes"] for e in entries)
            print(f"checkpoints over training: {len(entries)} kept in {self.folder}, {_mib(total)} in all", flush=True)

    def _write(self, trainer: Any, pl_module: Any) -> None:
        from safetensors.torch import save_model

        step, n = trainer.global_step, int(pl_module.n_samples)
        self._written_steps.add(step)
        if not trainer.is_global_zero:  # several processes: rank 0 holds the same weights and writes them
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{n}.safetensors"
        tmp = self.folder / f".{name}.tmp-{os.getpid()}"
        save_model(pl_module.model, str(tmp), metadata={"format": "pt", "step": str(step), "n_samples": str(n)})
        os.replace(tmp, self.folder / name)
        entries = {e["n_samples"]: e for e in read_index(self.folder)}
        entries[n] = {"n_samples": n, "step": step, "bytes": (self.folder / name).stat().st_size, "file": name}
        _write_json_atomic(self.folder / INDEX, [entries[k] for k in sorted(entries)])


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def summary(folder: Path) -> dict[str, Any] | None:
    """What results.json records: how many, their samples seen and their total size."""
    entries = read_index(folder)
    if not entries:
        return None
    return {"count": len(entries), "bytes": sum(e["bytes"] for e in entries), "n_samples": [e["n_samples"] for e in entries]}


# --- reading ------------------------------------------------------------------------------
def read_index(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / INDEX
    if not path.is_file():
        return []
    return sorted(json.loads(path.read_text()), key=lambda e: e["n_samples"])


def checkpoint_ids(run_dir: Path) -> list[int]:
    """Samples seen at each checkpoint over training of a saved run, in order ([] if it has none)."""
    return [e["n_samples"] for e in read_index(Path(run_dir) / FOLDER)]


def checkpoint_file(run_dir: Path, checkpoint: int | str) -> Path:
    """The weights file of `checkpoint` (samples seen, or "final"); one clear line if there is none."""
    run_dir = Path(run_dir)
    if checkpoint == "final":
        return run_dir / "model.safetensors"
    ids = checkpoint_ids(run_dir)
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint not in ids:
        if not ids:
            raise UserError(
                f"run {run_dir.name} has no checkpoints over training, only checkpoint='final'; "
                "train with snapshot_log_spaced=True or snapshot_every_n_steps=N (TrainParams) to keep them"
            )
        raise UserError(f"run {run_dir.name} has no checkpoint {checkpoint!r}; it has (samples seen): {', '.join(map(str, ids))} and 'final'")
    return run_dir / FOLDER / f"{checkpoint}.safetensors"
