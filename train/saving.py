"""A saved run is a folder of plain files — no pickle anywhere:

    model.safetensors   weights (a LoRA run: adapter.safetensors + init_from.json, see train/init_from.py)
    tokenizer.json      the tokenizer, restored exactly by data.tokenizer_kinds.load_tokenizer
    params.json         {"data": ..., "train": ..., "model": ..., "seed": ..., "config_name": ...}
    train_stats.json    {name: [[step, n_samples, counter, value], ...]}
    results.json        final val statistics (val loss first), parameter count, wall time
    versions.json       library versions that produced it
    manifest.json       sha256 of every other file, checked on load

It is written under a temporary name and renamed when complete, so a crash never leaves a
folder that looks finished. Reading one back into a model is `train/loading.py` (`load_run`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.moved import moved
from data.data_params import DataParams
from model.model_params import ModelParams
from train.integrity import expect, read_json_dict, sha256_file, verify_files
from train.train_params import TrainParams

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
ADAPTER = "adapter.safetensors"  # a LoRA run's adapter, merged into its source's weights on load
RECORD = "init_from.json"  # a run started from weights: its source (train/init_from.py)
REQUIRED = (WEIGHTS, "tokenizer.json", "params.json", "train_stats.json", "results.json")  # a manifest must vouch for these
INCOMPLETE, IN_PROGRESS = ".{}.incomplete", ".{}.in-progress"  # the two hidden names save_run swaps through


def resolve_save_dir(path: str | Path | None = None) -> Path:
    """The save dir: `path`, else $HARNESS_SAVE_DIR, else ../saved-models beside the repo (model_explorer's default too)."""
    return Path(path or os.environ.get("HARNESS_SAVE_DIR") or Path(__file__).resolve().parent.parent.parent / "saved-models")


def required_files(folder: Path) -> tuple[str, ...]:
    """REQUIRED, with the adapter in place of the full weights for a LoRA run (train/init_from.py)."""
    return tuple(ADAPTER if f == WEIGHTS else f for f in REQUIRED) if (Path(folder) / ADAPTER).is_file() else REQUIRED


def find_run_dirs(folder: Path) -> list[Path]:
    """Every complete saved run under `folder` (a folder holding params.json and results.json)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # skips `.X.incomplete` writes
        if "params.json" in files and "results.json" in files:
            found.append(Path(root))
            dirs[:] = []
    return found


sha256 = sha256_file


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("torch", "lightning", "transformers", "tokenizers", "datasets", "safetensors", "wandb", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _existing_ancestor(folder: Path) -> Path:
    """The nearest part of `folder` that exists; a file in the way is an error."""
    p = Path(folder).absolute()
    while not p.exists():
        p = p.parent
    if not p.is_dir():
        raise UserError(f"cannot write to {folder}: {p} is a file, not a folder; pass another --save-dir/--log-dir")
    return p


def check_writable(folder: Path) -> None:
    """Fail before training, not after, when a run's folder can't be written. Creates nothing."""
    base = _existing_ancestor(Path(folder))
    probe = base / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"x" * 4096)
    except OSError as e:
        raise UserError(f"cannot write to {folder}: {e.strerror or e} (in {base}); pass a writable --save-dir/--log-dir") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass


def check_free_space(folder: Path, need_bytes: int) -> None:
    """Refuse to start a run whose checkpoints and saved model won't fit on the disk."""
    base = _existing_ancestor(Path(folder))
    free = shutil.disk_usage(base).free
    if free < need_bytes:
        raise UserError(
            f"not enough disk space for {folder}: {free / 2**20:,.0f} MiB free, this run needs about {need_bytes / 2**20:,.0f} MiB "
            "for its checkpoints and saved model; free some space or pass another --save-dir/--log-dir"
        )


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_json_default))


def _plain_file_mode() -> int:
    """The mode `open()` gives new files under this process's umask (0644 under the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def save_run(
    run_dir: Path,
    lm: Any,
    params: dict[str, Any],
    train_stats: dict[str, list],
    results: dict[str, Any],
    extra: dict[str, Any] | None = None,
    replace_incomplete: bool = False,
    carry: tuple[str, ...] = (),
    adapter: dict[str, Any] | None = None,
) -> Path:
    """Write a complete run folder atomically; returns its final path.

    `replace_incomplete`: `run_dir` may already hold the run's in-progress files (run state,
    checkpoints; no manifest) — they are swapped out for the finished run and deleted.
    `carry`: folders of that in-progress run kept in the saved one (hard links, so nothing is
    lost if saving fails), e.g. the checkpoints over training (train/snapshots.py).
    `adapter`: a LoRA run's adapter tensors, saved instead of the full weights.
    """
    from safetensors.torch import save_file, save_model

    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = run_dir.parent / INCOMPLETE.format(run_dir.name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    weights = tmp / (WEIGHTS if adapter is None else ADAPTER)
    if adapter is None:
        save_model(lm, str(weights), metadata={"format": "pt"})
    else:
        save_file(adapter, str(weights), metadata={"format": "pt"})
    os.chmod(weights, _plain_file_mode())  # safetensors writes 0600; the rest of the run is readable like any file
    lm.tokenizer.save(tmp / "tokenizer.json")
    write_json(tmp / "params.json", params)
    write_json(tmp / "train_stats.json", {k: [list(r) for r in v] for k, v in train_stats.items()})
    write_json(tmp / "results.json", results)
    write_json(tmp / "versions.json", library_versions())
    for name, obj in (extra or {}).items():
        write_json(tmp / name, obj)
    for name in carry:
        if (run_dir / name).is_dir():
            shutil.copytree(run_dir / name, tmp / name, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".*"))
    write_manifest(tmp)
    if run_dir.exists():
        if not replace_incomplete or (run_dir / MANIFEST).exists():
            raise UserError(f"refusing to overwrite existing run {run_dir}")
        old = run_dir.parent / IN_PROGRESS.format(run_dir.name)
        if old.exists():
            shutil.rmtree(old)
        os.rename(run_dir, old)
        os.rename(tmp, run_dir)
        shutil.rmtree(old, ignore_errors=True)
        return run_dir
    os.rename(tmp, run_dir)
    return run_dir


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def finish_interrupted_save(run_dir: Path) -> bool:
    """Complete a `save_run` that crashed between its renames; True when `run_dir` is now a finished run.

    The finished run waits complete (manifest verified) in `.NAME.incomplete`; the in-progress
    files it replaces are in `run_dir` or `.NAME.in-progress`. Nothing unverified is moved.
    """
    run_dir = Path(run_dir)
    tmp, old = run_dir.parent / INCOMPLETE.format(run_dir.name), run_dir.parent / IN_PROGRESS.format(run_dir.name)
    if (run_dir / MANIFEST).is_file():
        if old.is_dir() and not tmp.exists():
            shutil.rmtree(old, ignore_errors=True)
        return True
    if not (tmp / MANIFEST).is_file():
        return False
    try:
        verify_manifest(tmp)
    except UserError:
        return False
    if run_dir.exists():
        if old.exists():
            return False  # both hidden names taken: leave everything for a person to look at
        os.rename(run_dir, old)
    os.rename(tmp, run_dir)
    shutil.rmtree(old, ignore_errors=True)
    print(f"note: finished the interrupted save of {run_dir}", flush=True)
    return True


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(folder)): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}
    write_json(folder / MANIFEST, manifest)


def verify_manifest(folder: Path) -> None:
    """Refuse a run whose files are missing, truncated or altered, naming the file (train/integrity.py)."""
    verify_files(Path(folder), MANIFEST, required_files(Path(folder)))


def params_from(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    removed = getattr(sys.modules.get(cls.__module__), "REMOVED", {})
    for key in sorted(set(d) & set(removed)):
        warnings.warn(f"saved {cls.__name__}: {removed[key]}; the saved value is ignored")
    unknown = sorted(set(d) - names - set(removed))
    if unknown:
        warnings.warn(f"saved {cls.__name__} has keys this code no longer defines, ignored: {unknown}")
    return cls(**{k: v for k, v in d.items() if k in names})


class RunParams(dict):
    """params.json as a dict (keys `data`, `train`, `model`, `seed`, ...), which also answers the
    seed README's names: `params["model_params"]` / `params.model_params` (and `data_params`,
    `train_params`) are the `ModelParams`/`DataParams`/`TrainParams` dataclasses."""

    SEED_NAMES = {"data_params": "data", "train_params": "train", "model_params": "model"}

    def __missing__(self, key: Any) -> Any:
        if key in self.SEED_NAMES:
            return self._dataclass(key)
        raise KeyError(f"{key!r}: params has keys {', '.join(map(repr, self))} (and the seed's {', '.join(map(repr, self.SEED_NAMES))})")

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self.SEED_NAMES

    def __getattr__(self, name: str) -> Any:
        if name in self.SEED_NAMES:
            return self._dataclass(name)
        raise AttributeError(f"params has no attribute {name!r}; use params[{self.SEED_NAMES.get(name, name)!r}] or one of {', '.join(self.SEED_NAMES)}")

    def _dataclass(self, seed_name: str) -> Any:
        cls = {"data_params": DataParams, "train_params": TrainParams, "model_params": ModelParams}[seed_name]
        return params_from(cls, dict.__getitem__(self, self.SEED_NAMES[seed_name]))


def load_params(run_dir: Path) -> RunParams:
    path = Path(run_dir) / "params.json"
    fix = "copy the run again or retrain it"
    params = read_json_dict(path, fix)
    for group in ("data", "train", "model"):
        expect(isinstance(params.get(group), dict), path, f"a {group!r} parameter group", fix)
    return RunParams(params)


def load_train_stats(path: Path) -> dict[str, list[tuple]]:
    """train_stats.json, checked to be {name: [[step, n_samples, counter, value], ...]}."""
    fix = "copy the run again or retrain it"
    stats = read_json_dict(path, fix)
    ok = all(
        isinstance(rows, list) and all(isinstance(r, list) and len(r) == 4 and all(isinstance(x, (int, float)) or x is None for x in r) for r in rows)
        for rows in stats.values()
    )
    expect(ok, path, "rows of [step, n_samples, counter, value]", fix)
    return {k: [tuple(r) for r in v] for k, v in stats.items()}


__getattr__ = moved(__name__, {"load_lm": "train.loading", "load_run": "train.loading"})  # old homes of names that moved (no import cycle), answered in one line
