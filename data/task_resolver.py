"""How a task name becomes data: `get_task_data`, the one place a task name is resolved.

A name is a synthetic generator (`@registered`, `data/syntheticdata.py`), a named corpus,
dataset or non-text task (`@text_source`: `data/text_sources.py`, task files), or a folder named
in `data-path.txt` (`data/custom_files.py`). Each returns a `TaskData` (`data/tasks/`);
tokenization and batching happen later in `data/dataloader.py`. This module sits above the
registries and every source, so it imports them all and none of them imports it. Torch-free,
so the CLI checks are fast.
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import data.text_sources  # noqa: F401  (registers the named corpora)
from core.errors import UserError
from data.custom_files import custom_task_dir, data_folder, describe_data_folder, load_custom_task
from data.syntheticdata import SYNTHETIC_TASKS, generate_splits
from data.task_registry import load_task_modules
from data.tasks import TEXT_SOURCES, TaskData

if TYPE_CHECKING:
    from data.data_params import DataParams


def known_tasks() -> list[str]:
    load_task_modules()
    return sorted(set(SYNTHETIC_TASKS) | set(TEXT_SOURCES))


def check_task(task: str) -> None:
    """Raise a UserError naming the known tasks if `task` can't be resolved."""
    load_task_modules()
    if task in SYNTHETIC_TASKS or task in TEXT_SOURCES or custom_task_dir(task) is not None:
        return
    close = difflib.get_close_matches(task, known_tasks(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UserError(
        f"unknown task {task!r}{hint}; registered tasks: {', '.join(known_tasks())}; "
        f"or put {task}/data.txt under your data folder, named in {_data_path_source()}"
    )


def _data_path_source() -> str:
    """The file (or variable) a custom task's data folder is read from, and whether it exists."""
    try:
        folder = data_folder()
    except UserError as e:
        return f"{describe_data_folder()}, which is unusable: {e}"
    return describe_data_folder() + (f", now {folder}" if folder else ", which does not exist yet")


def get_task_data(dp: "DataParams", seed: int) -> TaskData:
    check_task(dp.task)
    if dp.task in SYNTHETIC_TASKS:
        task = SYNTHETIC_TASKS[dp.task]
        splits = generate_splits(task, dp, seed)
        extras = task.extras(splits, dp) if task.extras else {}
        return TaskData(splits, answer_sep=task.answer_sep, extras=extras)
    if dp.task in TEXT_SOURCES:
        return TEXT_SOURCES[dp.task](dp, seed)
    return load_custom_task(dp, seed)
