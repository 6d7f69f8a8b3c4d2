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

from train.errors import UserError

STATE = "run_state.json"
FAILED = "FAILED.json"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
INDEX = ".run-index"
FORMAT = 1


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
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} has no {STATE}: not a run started by this harness (or already finished and saved)") from None
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); the run can't be resumed from it") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "params" not in state:
        raise UserError(f"{path} is not a run state this version understands")
    return state


def write_state(folder: Path, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    state.update(changes, updated=now_iso())
    write_json_atomic(Path(folder) / STATE, state)
    return state


def index_dir(root: Path) -> Path:
    return Path(root) / INDEX


def record_in_index(root: Path, identity: str, state_dir: Path, describe: str) -> None:
    folder = index_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / f"{identity}.json", {"state_dir": str(Path(state_dir).resolve()), "run": describe})


def lookup_index(root: Path, identity: str) -> Path | None:
    try:
        entry = json.loads((index_dir(root) / f"{identity}.json").read_text())
        return Path(entry["state_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
    if not folder.is_dir():
        return "missing"
    if (folder / "manifest.json").is_file():
        return "done"
    try:
        state = read_state(folder)
    except UserError:
        return "missing"
    if state.get("status") == "done":
        return "done"
    if (folder / FAILED).is_file() or state.get("status") == "failed":
        return "failed"
    return "resumable" if (folder / CHECKPOINTS / LAST).is_file() else "empty"


def resume_point(folder: Path) -> ResumePoint:
    folder = Path(folder)
    state = read_state(folder)
    ckpt = folder / CHECKPOINTS / LAST
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
    if path.is_dir():
        return path
    if "/" in target or os.sep in target:
        raise UserError(f"--resume={target}: no such folder")
    found: list[Path] = []
    for root in roots:
        idx = index_dir(root)
        for entry in sorted(idx.glob("*.json")) if idx.is_dir() else []:
            try:
                folder = Path(json.loads(entry.read_text())["state_dir"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
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


def rebuild_config(state: dict[str, Any]) -> Any:
    """The RunConfig a state file describes (unknown keys from older/newer code are dropped)."""
    from data.data_params import DataParams
    from model.model_params import ModelParams
    from train.config import RunConfig
    from train.train_params import TrainParams

    def make(cls: type, d: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    p = state["params"]
    return RunConfig(
        config_name=state["config_name"],
        data=make(DataParams, p["data"]),
        train=make(TrainParams, p["train"]),
        model=make(ModelParams, p["model"]),
        varying=state.get("varying", {}),
        source=state.get("source", ""),
    )
