"""`repeat_random`: a random string written twice (`xqfkxqfk`), for studying in-context learning.

The second copy is predictable only from the first, so the loss on it falls when the model learns
to look back (induction heads; configs/induction-heads.txt, docs/dynamics.md). Inputs are
`min_len`..`max_len` symbols from `alphabet`; vary the length, or a head can copy from a fixed
offset by position alone. `repeat_prefix_max_len > 0` puts 0..that many random symbols before
the string (`ab|xqfk|xqfk`), so where the repeat starts varies too: then neither the offset nor
the absolute position of the token to copy is fixed, and only the induction circuit (a
previous-token head feeding an induction head) predicts the second copy.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from data.syntheticdata import registered
from data.task_registry import task_settings
from data.tasks.basic import _random_input
from core.params_base import param

if TYPE_CHECKING:
    from data.data_params import DataParams


@task_settings
class RepeatRandomSettings:
    """`repeat_random` settings (DataParams); the repeated string's length comes from min_len/max_len."""

    repeat_prefix_max_len: int = param(0, "repeat_random: up to this many random symbols (uniform 0..N) before the string written twice, so the repeat's position varies (0: none)", min=0, max=10**6)


@registered(answer_sep=None)
def repeat_random(rng: random.Random, dp: DataParams) -> str:
    """xqfkxqfk"""
    s = _random_input(rng, dp)
    n = dp.repeat_prefix_max_len
    prefix = "".join(rng.choice(dp.alphabet) for _ in range(rng.randint(0, n))) if n else ""
    return prefix + s + s
