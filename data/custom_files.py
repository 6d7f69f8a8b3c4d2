"""Custom tasks from local text files: `--task=NAME` reads `<data folder>/NAME/`.

Where the data folder is named:
- `$HARNESS_DATA_PATH`, if set: either the data folder itself or a `data-path.txt`-style file;
- otherwise `data-path.txt` at `../../data-path.txt` relative to `main.py` (the seed's place:
  two folders above the repository folder). Its first non-empty line is the folder; a relative
  path is taken relative to the file's own folder.

What a task folder holds (one sample per line; blank lines are skipped):
- `train.txt`, plus `val.txt` and/or `test.txt` when you have fixed splits, or
- `data.txt` alone. Splits that have no file are carved out of `train.txt`/`data.txt` by a
  shuffle seeded with `data_seed` (0 when unset, so every `--seed` sees the same split), sized
  by `val_fraction` / `test_fraction`.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from data.data_params import DataParams
from data.tasks import TaskData
from core.errors import UserError

DATA_PATH_ENV = "HARNESS_DATA_PATH"
SPLIT_FILES = ("train", "val", "test")


def data_path_file() -> Path:
    """The seed's location of `data-path.txt`: `../../data-path.txt` relative to main.py."""
    repo_root = Path(__file__).resolve().parents[1]  # the folder holding main.py
    return (repo_root / ".." / ".." / "data-path.txt").resolve()


def _read_pointer(f: Path) -> Path:
    try:
        lines = [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {f} ({e}); it should hold the path of your data folder on its first line") from None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise UserError(f"{f} is empty; write the path of your data folder on its first line")
    p = Path(lines[0]).expanduser()
    return p if p.is_absolute() else (f.parent / p).resolve()


def data_folder() -> Path | None:
    """The folder custom tasks live in, or None when none is configured."""
    env = os.environ.get(DATA_PATH_ENV)
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p
        if p.is_file():
            return _read_pointer(p)
        raise UserError(f"{DATA_PATH_ENV}={env} is neither a folder nor a data-path.txt file; fix or unset it")
    f = data_path_file()
    return _read_pointer(f) if f.is_file() else None


def describe_data_folder() -> str:
    """Where the data folder comes from, for error messages."""
    env = os.environ.get(DATA_PATH_ENV)
    if env:
        return f"${DATA_PATH_ENV}={env}"
    return f"{data_path_file()} (or ${DATA_PATH_ENV})"


def custom_task_dir(task: str) -> Path | None:
    """`<data folder>/<task>/` if it holds data.txt or train.txt, else None."""
    if not task or task in (".", "..") or "/" in task or "\\" in task:
        return None
    folder = data_folder()
    if folder is None:
        return None
    d = folder / task
    return d if (d / "data.txt").is_file() or (d / "train.txt").is_file() else None


def read_lines(path: Path) -> list[str]:
    """One sample per line; '\\r' and blank lines dropped (a trailing newline is not a sample)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e}); re-save it as UTF-8") from None
    return [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]


def carve(lines: list[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Deterministically move a share of `lines` into each named split; the rest is 'train'."""
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    out: dict[str, list[str]] = {}
    pos = 0
    for split, frac in fractions.items():
        n = max(1, round(len(lines) * frac)) if frac > 0 else 0
        out[split] = [lines[i] for i in sorted(order[pos : pos + n])]
        pos += n
    out["train"] = [lines[i] for i in sorted(order[pos:])]
    return out


def check_fractions(val_fraction: float, test_fraction: float, task: str) -> None:
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(
            f"task {task!r}: val_fraction={val_fraction} and test_fraction={test_fraction} must satisfy "
            "0 < val_fraction, 0 <= test_fraction and val_fraction + test_fraction < 1 (DataParams)"
        )


def load_custom_task(dp: DataParams, seed: int, default_pack: bool = False, task: str | None = None) -> TaskData:
    """Read `<data folder>/<task>/` into a TaskData (see the module doc for the layout)."""
    task = task or dp.task
    d = custom_task_dir(task)
    if d is None:
        raise UserError(f"task {task!r}: no {task}/data.txt or {task}/train.txt in the data folder named by {describe_data_folder()}")
    splits = _read_splits(dp, task, d)
    pack = dp.pack if dp.pack is not None else default_pack
    return TaskData({s: splits[s] for s in SPLIT_FILES}, pack=pack, extras={"source": str(d)})


def _read_splits(dp: DataParams, task: str, d: Path) -> dict[str, list[str]]:
    """train/val/test lines: from their own files, else val and test carved out of train.txt / data.txt."""
    files = {s: d / f"{s}.txt" for s in SPLIT_FILES}
    source = files["train"] if files["train"].is_file() else d / "data.txt"
    lines = read_lines(source)
    splits = {s: read_lines(f) for s, f in files.items() if s != "train" and f.is_file()}
    missing = {s: getattr(dp, f"{s}_fraction") for s in ("val", "test") if s not in splits}
    if missing:
        check_fractions(dp.val_fraction, dp.test_fraction, task)
        carved = carve(lines, missing, dp.data_seed if dp.data_seed is not None else 0)
        if len(carved["train"]) == 0:
            raise UserError(f"task {task!r}: {source} has {len(lines)} non-empty lines, too few to hold out {', '.join(missing)}; add lines or add {'/'.join(s + '.txt' for s in missing)}")
        splits.update(carved)
    else:
        splits["train"] = lines
    if not splits["train"]:
        raise UserError(f"task {task!r}: {source} has no non-empty lines")
    return splits
