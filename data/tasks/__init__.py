"""The task package: one file per task (`data/tasks/*.py`), and how a task name becomes data.

Every module in this folder, and in the folders `$HARNESS_TASK_PATH` names, is a task file,
imported automatically (`data/task_registry.py`): drop a file here and `--task=NAME` works.
`get_task_data` is the one place a task name is resolved: a synthetic generator
(`@registered`, `data/syntheticdata.py`), a named corpus/dataset or a non-text task registered
with `@text_source`, or a folder named in `data-path.txt`. Each returns a `TaskData`;
tokenization and batching happen later in `data/dataloader.py`. Torch-free, so the CLI checks
are fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from data.syntheticdata import SYNTHETIC_TASKS, generate_splits
from core.errors import UserError

if TYPE_CHECKING:  # not at run time: data_params imports the task files, which import this
    from data.data_params import DataParams


@dataclass
class TaskData:
    splits: dict[str, list[str]]
    answer_sep: str | None = None
    pack: bool = False  # True: documents are joined into one token stream and cut into windows
    extras: dict[str, Any] = field(default_factory=dict)  # task-specific (e.g. a loss floor)
    # Tasks whose samples aren't text (e.g. `tart`, vectors) bring these instead of `splits`:
    tokenizer: Any = None  # the input interface (data/vector_input.py), saved with the run
    datasets: dict[str, Any] | None = None  # split → map-style dataset of samples
    collate: Callable[[list], dict] | None = None  # samples → batch dict (with a `mask`)


TextSource = Callable[["DataParams", int], TaskData]
TEXT_SOURCES: dict[str, TextSource] = {}


def text_source(name: str) -> Callable[[TextSource], TextSource]:
    """Register a loader for a named corpus or dataset (`--task=name`)."""

    def wrap(fn: TextSource) -> TextSource:
        TEXT_SOURCES[name] = fn
        return fn

    return wrap


def _load_sources() -> None:
    """Every task file, and the named corpora (data/text_sources.py), registered."""
    # function-level imports here and below break real cycles: task files, text_sources and custom_files import this module
    from data.task_registry import load_task_modules

    load_task_modules()
    import data.text_sources  # noqa: F401


def known_tasks() -> list[str]:
    _load_sources()
    return sorted(set(SYNTHETIC_TASKS) | set(TEXT_SOURCES))


def check_task(task: str) -> None:
    """Raise a UserError naming the known tasks if `task` can't be resolved."""
    _load_sources()
    if task in SYNTHETIC_TASKS or task in TEXT_SOURCES or _custom_task_exists(task):
        return
    import difflib

    close = difflib.get_close_matches(task, known_tasks(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UserError(
        f"unknown task {task!r}{hint}; registered tasks: {', '.join(known_tasks())}; "
        f"or put {task}/data.txt under your data folder, named in {_data_path_source()}"
    )


def _data_path_source() -> str:
    """The file (or variable) a custom task's data folder is read from, and whether it exists."""
    try:
        from data.custom_files import data_folder, describe_data_folder
    except ModuleNotFoundError:
        return "data-path.txt"
    try:
        folder = data_folder()
    except UserError as e:
        return f"{describe_data_folder()}, which is unusable: {e}"
    return describe_data_folder() + (f", now {folder}" if folder else ", which does not exist yet")


def _custom_task_exists(task: str) -> bool:
    try:
        from data.custom_files import custom_task_dir
    except ModuleNotFoundError:
        return False
    return custom_task_dir(task) is not None


def get_task_data(dp: "DataParams", seed: int) -> TaskData:
    check_task(dp.task)
    if dp.task in SYNTHETIC_TASKS:
        task = SYNTHETIC_TASKS[dp.task]
        splits = generate_splits(task, dp, seed)
        extras = task.extras(splits, dp) if task.extras else {}
        return TaskData(splits, answer_sep=task.answer_sep, extras=extras)
    if dp.task in TEXT_SOURCES:
        return TEXT_SOURCES[dp.task](dp, seed)
    from data.custom_files import load_custom_task

    return load_custom_task(dp, seed)
