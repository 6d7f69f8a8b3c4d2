"""Where runs stand between invocations: run state files, a stable identity per run, and finding runs to resume.

A run in progress lives in its *state folder*: the run dir when `--save` (it becomes the saved run
when training finishes), otherwise its log folder. The folder holds

    run_state.json          status (running / interrupted / failed / done) and everything needed to rebuild the run
    checkpoints/last.ckpt   the newest resumable Lightning checkpoint (see train/checkpointing.py)
    FAILED.json             only when a non-finite loss or gradient stopped it (see train/guards.py)

A run's identity is a hash of its config name, its non-default parameters and seed; it does not change
between invocations (the timestamp does), so `--resume` on a sweep can tell which runs finished.
`{save-dir or log-dir}/.run-index/{identity}.json` maps each identity to its state folder.

Torch-free: main.py imports it before any run starts.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from data.data_params import DataParams
from model.model_params import ModelParams
from train.config import RunConfig, check_run_values
from train.integrity import check_checksum, expect, read_json_dict, with_checksum
from train.saving import finish_interrupted_save
from train.train_params import TrainParams

STATE = "run_state.json"
FAILED = "FAILED.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
INDEX = ".run-index"
FORMAT = 1
STATE_KEYS: dict[str, Any] = {"status": str, "config_name": str, "seed": int, "save": bool, "timestamp": str, "log_folder": str}  # run_one reads these


class RunInterrupted(Exception):
    """Ctrl-C / SIGTERM during training: a resumable checkpoint was written. main.py exits 130."""


class RunFailed(Exception):
    """Training stopped on a non-finite loss or gradient; the run is marked failed in its folder."""


def now_iso() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON under a temporary name, then rename: a crash leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_identity(config_name: str, params: dict[str, Any], seed: int, repeat: int = 0) -> str:
    """Stable across invocations: same config name, parameters and seed → same id.

    `repeat` tells apart identical runs within one sweep (a list with a repeated value).
    """
    blob = json.dumps({"config": config_name, "params": params, "seed": seed, "repeat": repeat}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def non_default_params(rc: Any) -> dict[str, dict[str, Any]]:
    """The run's parameters that differ from the dataclass defaults.

    Identities use these, so adding a new parameter (with a default) to the code does not make
    finished runs look new to `--resume`.
    """
    out = {}
    for group in ("data", "train", "model"):
        params = getattr(rc, group)
        default = type(params)()
        out[group] = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if getattr(params, f.name) != getattr(default, f.name)}
    return out


def sweep_identities(runs: list[Any], seed: int) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for rc in runs:
        params = non_default_params(rc)
        base = run_identity(rc.config_name, params, seed)
        out.append(run_identity(rc.config_name, params, seed, seen.get(base, 0)))
        seen[base] = seen.get(base, 0) + 1
    return out


# --- state files ------------------------------------------------------------------------
def read_state(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATE
    if not path.exists() and not path.is_symlink():
        raise UserError(f"{folder} has no {STATE}: not a run started by this harness (or already finished and saved)")
    fix = f"the run can't be resumed from it; delete {folder} to start that run again"
    state = read_json_dict(path, fix)
    check_checksum(state, path, fix)
    expect(state.get("format") == FORMAT and isinstance(state.get("params"), dict), path, f"a run state this version understands (format {FORMAT})", fix)
    for key, types in STATE_KEYS.items():
        expect(isinstance(state.get(key), types) and not (types is int and isinstance(state.get(key), bool)), path, f"a valid {key!r}", fix)
    return state


def write_state(folder: Path, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    state.update(changes, updated=now_iso())
    state.pop("checksum", None)
    write_json_atomic(Path(folder) / STATE, with_checksum(json.loads(json.dumps(state, default=_json_default))))
    return state


def index_dir(root: Path) -> Path:
    return Path(root) / INDEX


def record_in_index(root: Path, identity: str, state_dir: Path, describe: str) -> None:
    """Index entries hold the state folder relative to `root`, so a moved or copied save dir finds its own runs."""
    folder = index_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        where = str(Path(state_dir).resolve().relative_to(Path(root).resolve()))
    except ValueError:  # outside the root (an edited Namer): stays absolute
        where = str(Path(state_dir).resolve())
    write_json_atomic(folder / f"{identity}.json", with_checksum({"state_dir": where, "run": describe}))


def _entry_folder(root: Path, entry: Path) -> Path:
    fix = f"delete it to run that run afresh, or continue the run alone with --resume=FOLDER"
    obj = read_json_dict(entry, fix)
    check_checksum(obj, entry, fix)
    expect(isinstance(obj.get("state_dir"), str) and obj["state_dir"] != "", entry, "a run folder", fix)
    where = Path(obj["state_dir"])
    return where if where.is_absolute() else Path(root) / where


def lookup_index(root: Path, identity: str) -> Path | None:
    """The state folder recorded for `identity`, None when there is none; a damaged entry is an error, not a fresh start."""
    entry = index_dir(root) / f"{identity}.json"
    if not entry.exists():
        return None
    return _entry_folder(root, entry)


# --- what to do with each run of a sweep ----------------------------------------------------
@dataclass
class ResumePoint:
    """A run to continue: its state folder, its state, and the checkpoint to load (None = from scratch)."""

    state_dir: Path
    state: dict[str, Any]
    ckpt: Path | None

    @property
    def step(self) -> int | None:
        return self.state.get("last_checkpoint_step") if self.ckpt else None


@dataclass
class Planned:
    action: str  # "run" | "resume" | "skip"
    identity: str
    why: str = ""
    resume: ResumePoint | None = None


def run_status(folder: Path) -> str:
    """done / failed / resumable / empty / missing, read from the folder itself."""
    folder = Path(folder)
    if finish_interrupted_save(folder):  # a crash between save_run's renames left the finished run hidden
        return "done"
    if not folder.is_dir():
        return "missing"
    state = read_state(folder)
    if state.get("status") == "done":
        return "done"
    if (folder / FAILED).is_file() or state.get("status") == "failed":
        return "failed"
    return "resumable" if (folder / CHECKPOINTS / LAST).exists() else "empty"


def resume_point(folder: Path) -> ResumePoint:
    """The run's state and checkpoint; a checkpoint the state promises but the folder lacks is an error, never a restart."""
    folder = Path(folder)
    state = read_state(folder)
    ckpt = folder / CHECKPOINTS / LAST
    step = state.get("last_checkpoint_step")
    if ckpt.is_dir():
        raise UserError(f"checkpoint {ckpt} is a folder, not a file; remove it and restore the checkpoint, or delete {folder} to restart the run from scratch")
    if not ckpt.is_file() and step is not None:
        raise UserError(
            f"checkpoint {ckpt} is missing, but {folder / STATE} says one was written at step {step}; restore it, "
            f"or delete {folder} to restart the run from scratch"
        )
    return ResumePoint(folder, state, ckpt if ckpt.is_file() else None)


def plan_sweep(runs: list[Any], seed: int, root: Path, resume: bool) -> list[Planned]:
    """For each run: run it fresh, resume it from its checkpoint, or skip it (finished / failed)."""
    plans = []
    for rc, ident in zip(runs, sweep_identities(runs, seed)):
        folder = lookup_index(root, ident) if resume else None
        status = run_status(folder) if folder else "missing"
        if status == "done":
            plans.append(Planned("skip", ident, f"already finished: {folder}"))
        elif status == "failed":
            plans.append(Planned("skip", ident, f"failed earlier, see {Path(folder) / FAILED} (resume it alone with --resume={folder})"))
        elif status in ("resumable", "empty"):
            plans.append(Planned("resume", ident, str(folder), resume_point(folder)))
        else:
            plans.append(Planned("run", ident))
    return plans


def find_run(target: str, roots: list[Path]) -> Path:
    """`--resume=TARGET`: a run's state folder, given as a path or as its timestamp (folder name)."""
    path = Path(target).expanduser()
    if path.is_dir() or finish_interrupted_save(path):  # a crash between save_run's renames left it hidden
        return path
    if "/" in target or os.sep in target:
        raise UserError(f"--resume={target}: no such folder")
    found: list[Path] = []
    for root in roots:
        idx = index_dir(root)
        for entry in sorted(idx.glob("*.json")) if idx.is_dir() else []:
            try:
                folder = _entry_folder(root, entry)
            except UserError:
                continue  # a damaged entry can't name this run; bare --resume reports it
            if folder.name == target and folder not in found:
                found.append(folder)
    if not found:
        where = " or ".join(str(r) for r in roots)
        raise UserError(f"--resume={target}: no run with that timestamp in {where}; pass the run's folder instead")
    if len(found) > 1:
        raise UserError(f"--resume={target}: {len(found)} runs have that timestamp ({', '.join(map(str, found))}); pass the folder")
    return found[0]


def single_resume(target: str, roots: list[Path]) -> ResumePoint:
    """The run `--resume=TARGET` names, checked to be resumable."""
    folder = find_run(target, roots)
    status = run_status(folder)
    if status == "done":
        raise UserError(f"--resume: {folder} already finished; nothing to resume")
    if status == "missing":
        read_state(folder)  # raises the precise reason
    point = resume_point(folder)
    if status == "failed":
        print(f"note: {folder} failed earlier ({point.state.get('message', 'see FAILED.json')}); continuing from its last good checkpoint", flush=True)
    return point


def rebuild_config(state: dict[str, Any], folder: Path | None = None) -> Any:
    """The RunConfig a state file describes (unknown keys from older/newer code are dropped)."""
    def make(cls: type, d: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    path = Path(folder if folder is not None else state.get("state_dir") or ".") / STATE
    try:
        p = state["params"]
        rc = RunConfig(
            config_name=str(state["config_name"]),
            data=make(DataParams, p["data"]),
            train=make(TrainParams, p["train"]),
            model=make(ModelParams, p["model"]),
            varying=dict(state.get("varying") or {}),
            source=str(state.get("source", "")),
        )
        seed = state["seed"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{path} does not describe a run ({type(e).__name__}: {e}); delete the run folder to start it again") from None
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise UserError(f"{path}: seed={seed!r} is not a valid seed; the file was altered or written by other code")
    check_run_values(rc.data, rc.train, rc.model, where=str(path))
    return rc
