"""The synthetic-task registry. Add a task: a file in `data/tasks/` whose generator is decorated with
`@registered` (see `data/tasks/basic.py` for `copy` and `histogram`, `data/task_registry.py` for
its own settings and metrics).

A generator takes a `random.Random` and the run's `DataParams` and returns one sample as a
string. A generator with no arguments (the seed README's style, drawing from the module-level
`random`) registers too: the global `random` is then seeded from the run's data seed while the
splits are drawn, and restored afterwards, so its samples are as reproducible as the others. Tasks whose samples read `question>answer` register with `answer_sep=">"`, which makes
the harness report answer accuracy (`stat/val_acc:answer`) and print completions of the
question at the end of each epoch. This module is torch-free so `main.py` can list tasks fast.
"""
from __future__ import annotations

import inspect
import random
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from core.errors import UserError

if TYPE_CHECKING:  # not at run time: data_params imports every task file, which imports this
    from data.data_params import DataParams

Generator = Callable[[random.Random, "DataParams"], str]
Extras = Callable[[dict[str, list[str]], "DataParams"], dict[str, Any]]


@dataclass(frozen=True)
class SyntheticTask:
    name: str
    generate: Generator
    answer_sep: str | None = None
    extras: Extras | None = None  # splits → task facts for the trainer (e.g. a loss floor)
    dedup_key: Callable[[str], str] | None = None  # what must differ between splits (default: the sample)
    global_random: bool = False  # a zero-argument generator: it draws from the module-level `random`


SYNTHETIC_TASKS: dict[str, SyntheticTask] = {}


def registered(
    fn: Generator | None = None,
    *,
    answer_sep: str | None = ">",
    name: str | None = None,
    extras: Extras | None = None,
    dedup_key: Callable[[str], str] | None = None,
):
    """Register a generator as a task named after the function (`@registered` or `@registered(...)`).

    `extras(splits, dp)` returns task facts put in `TaskData.extras` (e.g. `val_loss_floor`);
    `dedup_key(sample)` names what val/test/train must not share (e.g. only the question).
    """

    def wrap(f: Callable[..., str]) -> Callable[..., str]:
        task_name = name or f.__name__
        if task_name in SYNTHETIC_TASKS:
            raise ValueError(f"synthetic task {task_name!r} is registered twice")
        n_args = _n_positional(f)
        gen: Generator = f if n_args == 2 else (lambda rng, dp: f())  # type: ignore[misc]
        SYNTHETIC_TASKS[task_name] = SyntheticTask(task_name, gen, answer_sep, extras, dedup_key, global_random=n_args == 0)
        return f

    return wrap(fn) if fn is not None else wrap


def _n_positional(f: Callable[..., str]) -> int:
    """0 (seed style: uses the global `random`) or 2 (`rng, dp`); anything else is refused here."""
    params = [p for p in inspect.signature(f).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    if len(params) not in (0, 2):
        raise TypeError(f"@registered {f.__name__}{inspect.signature(f)}: a task generator takes no arguments or (rng: random.Random, dp: DataParams)")
    return len(params)


@contextmanager
def _seeded_global_random(seed: int):
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def generate_splits(task: SyntheticTask, dp: DataParams, seed: int) -> dict[str, list[str]]:
    """Seeded train/val/test samples; val and test never contain a train sample or each other's."""
    with _seeded_global_random(seed) if task.global_random else nullcontext():
        return _draw_splits(task, dp, seed)


def _draw_splits(task: SyntheticTask, dp: DataParams, seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    key = task.dedup_key or (lambda s: s)
    sizes = {"val": dp.n_val_samples, "test": dp.n_test_samples, "train": dp.n_train_samples}
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for split in ("val", "test"):  # held-out sets are unique and disjoint
        samples: list[str] = []
        tries = 0
        while len(samples) < sizes[split]:
            s = task.generate(rng, dp)
            tries += 1
            if key(s) not in seen:
                seen.add(key(s))
                samples.append(s)
            elif tries > 50 * sizes[split] + 1000:
                raise _too_small(task.name, split, len(samples), sizes[split])
        out[split] = samples
    held_out = seen
    train: list[str] = []
    tries = 0
    while len(train) < sizes["train"]:  # train may repeat itself, never the held-out sets
        s = task.generate(rng, dp)
        tries += 1
        if key(s) not in held_out:
            train.append(s)
        elif tries > 50 * sizes["train"] + 1000:
            raise _too_small(task.name, "train", len(train), sizes["train"])
    out["train"] = train
    return out


def _too_small(task: str, split: str, got: int, want: int) -> Exception:
    return UserError(
        f"task {task!r}: could only draw {got} of {want} distinct {split} samples; "
        "raise max_len/alphabet or lower n_val_samples/n_test_samples"
    )

