"""The seed's string tasks: `copy`, `reverse`, `sort`, `histogram` (samples read `question>answer`).

Each is a generator decorated with `@registered`: the task is named after the function. Inputs
are `min_len`..`max_len` symbols drawn from `alphabet` (DataParams). A new task is a new file
beside this one; `data/task_registry.py` says how it adds its own settings and metrics.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from data.syntheticdata import registered

if TYPE_CHECKING:
    from data.data_params import DataParams


def _random_input(rng: random.Random, dp: DataParams) -> str:
    n = rng.randint(dp.min_len, dp.max_len)
    return "".join(rng.choice(dp.alphabet) for _ in range(n))


@registered
def copy(rng: random.Random, dp: DataParams) -> str:
    """abcd>abcd"""
    s = _random_input(rng, dp)
    return f"{s}>{s}"


@registered
def reverse(rng: random.Random, dp: DataParams) -> str:
    """abcd>dcba"""
    s = _random_input(rng, dp)
    return f"{s}>{s[::-1]}"


@registered
def sort(rng: random.Random, dp: DataParams) -> str:
    """dbca>abcd"""
    s = _random_input(rng, dp)
    return f"{s}>{''.join(sorted(s))}"


@registered
def histogram(rng: random.Random, dp: DataParams) -> str:
    """abac>2121: for each position, how often its symbol occurs in the input (digits cap at 9)."""
    s = _random_input(rng, dp)
    return f"{s}>{''.join(str(min(s.count(c), 9)) for c in s)}"
