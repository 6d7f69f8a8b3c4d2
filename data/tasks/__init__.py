"""The task package: one file per task (`data/tasks/*.py`), what a task returns (`TaskData`), and
the registry of named corpora, datasets and non-text tasks (`@text_source`).

Every module in this folder, and in the folders `$HARNESS_TASK_PATH` names, is a task file,
imported automatically (`data/task_registry.py`): drop a file here and `--task=NAME` works.
A task name is resolved into data by `data/task_resolver.py` (`get_task_data`), which sits
above this package. Torch-free, so the CLI checks are fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from core.moved import moved

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


__getattr__ = moved(__name__, {n: "data.task_resolver" for n in ("get_task_data", "check_task", "known_tasks")})  # old homes of names that moved (no import cycle), answered in one line
