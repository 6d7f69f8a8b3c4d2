"""What a task file registers besides its data, and how task files are found.

A task is one file in `data/tasks/` (or in a folder named in `$HARNESS_TASK_PATH`, several
joined with `os.pathsep`): dropping it there is all it takes, no import line anywhere else.
Besides its generator (`@registered` in `data/syntheticdata.py`, or `@text_source` in
`data/tasks/__init__.py` for non-text samples) a task file may declare

* `@task_settings` on a class of `param(...)` fields: its own settings, written as
  `key=value` under `DataParams` in configs and read as `dp.key`. They become fields of
  `DataParams` (`data/data_params.py`), so the config parser checks their types, choices and
  ranges and suggests the closest name for a typo like every other setting;
* `@task_metric("task")` on `(lm, datamodule) -> {stat name: value}`: statistics that need the
  model, logged at every validation (`train/task_metrics.py`);
* a floor or baselines: `extras=` of `@registered`, or `extras["val_stats"]` of a `TaskData`;
* `@task_summary("task")` on `(val results, last logged stats) -> (reference, reached, gap)`:
  its row in docs/tasks.md, written by `scripts/task_results.py` from `configs/tasks-NAME.txt`.

Task files are imported for every command, `main.py --help` included: keep their top level
light (stdlib only; import numpy/torch inside the functions that need them). This module is
torch-free and imports no task file until `load_task_modules()` is called.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import typing
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

TASK_PACKAGE = "data.tasks"
TASK_PATH_ENV = "HARNESS_TASK_PATH"

MetricFn = Callable[[Any, Any], dict[str, float]]  # (lm, datamodule) → {stat name: value}
TASK_METRICS: dict[str, MetricFn] = {}
SummaryFn = Callable[[dict, dict], tuple[str, str, str]]  # (results["val"], last stats) → (reference, reached, gap)
TASK_SUMMARIES: dict[str, SummaryFn] = {}
TASK_SETTINGS: list[type] = []  # settings dataclasses, in the order their files were imported


def task_metric(task: str) -> Callable[[MetricFn], MetricFn]:
    """Register `fn(lm, datamodule)` as a validation statistic of `task` (full stat names)."""

    def wrap(fn: MetricFn) -> MetricFn:
        TASK_METRICS[task] = fn
        return fn

    return wrap


def task_summary(task: str) -> Callable[[SummaryFn], SummaryFn]:
    """Register how `task`'s demo run reads in docs/tasks.md: its floor/baseline, what it reached, the gap."""

    def wrap(fn: SummaryFn) -> SummaryFn:
        TASK_SUMMARIES[task] = fn
        return fn

    return wrap


def task_settings(cls: type) -> type:
    """Make `cls` (fields declared with `param(...)`) a dataclass whose fields join DataParams."""
    cls = cls if dataclasses.is_dataclass(cls) else dataclasses.dataclass(cls)
    if cls not in TASK_SETTINGS:
        TASK_SETTINGS.append(cls)
    return cls


def extra_task_dirs() -> list[Path]:
    """The folders `$HARNESS_TASK_PATH` names (missing ones are skipped with a warning)."""
    out = []
    for part in os.environ.get(TASK_PATH_ENV, "").split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part).expanduser()
        if path.is_dir():
            out.append(path)
        else:
            warnings.warn(f"${TASK_PATH_ENV} names {path}, which is not a folder; its tasks are not loaded", stacklevel=2)
    return out


@lru_cache(maxsize=None)
def load_task_modules() -> tuple[str, ...]:
    """Import every task file once: `data/tasks/*.py`, then those in `$HARNESS_TASK_PATH`.

    The extra folders join the package's `__path__`, so their files import as
    `data.tasks.NAME` and may import each other like the built-in ones.
    """
    package = importlib.import_module(TASK_PACKAGE)
    builtin = {m.name for m in pkgutil.iter_modules(package.__path__)}
    for folder in extra_task_dirs():
        for m in pkgutil.iter_modules([str(folder)]):
            if m.name in builtin:
                raise ImportError(f"task file {folder / m.name}.py has the name of a built-in task file (data/tasks/{m.name}.py); rename it")
        if str(folder) not in package.__path__:
            package.__path__.append(str(folder))
    names = tuple(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{TASK_PACKAGE}.{name}")
    return names


def with_task_settings(core: type) -> type:
    """`core` (the DataParams dataclass) extended by every task file's `@task_settings` fields.

    The result keeps the name DataParams, so configs, `params.json` and `DataParams(**saved)` see
    one flat namespace. A setting named like an existing one is an error naming both owners.
    """
    load_task_modules()
    owner = {f.name: core.__name__ for f in dataclasses.fields(core)}
    new_fields: list[tuple[str, Any, dataclasses.Field]] = []
    for cls in TASK_SETTINGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            where = f"{cls.__module__}.{cls.__qualname__}"
            if f.name in owner:
                raise TypeError(f"task setting {f.name!r} of {where} is already defined by {owner[f.name]}; rename it")
            owner[f.name] = where
            new = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
            new_fields.append((f.name, hints[f.name], new))
    if not new_fields:
        return core
    cls = dataclasses.make_dataclass(core.__name__, new_fields, bases=(core,))
    cls.__module__, cls.__qualname__, cls.__doc__ = core.__module__, core.__qualname__, core.__doc__
    return cls


def settings_owner() -> dict[str, str]:
    """DataParams field name → the task module that declared it (for `main.py --help`)."""
    return {f.name: s.__module__ for s in TASK_SETTINGS for f in dataclasses.fields(s)}
