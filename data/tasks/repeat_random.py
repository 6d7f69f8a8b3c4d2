"""`repeat_random`: a random string written twice (`xqfkxqfk`), for studying in-context learning.

The second copy is predictable only from the first, so the loss on it falls when the model learns
to look back (induction heads; configs/induction-heads.txt, docs/dynamics.md). Inputs are
`min_len`..`max_len` symbols from `alphabet`; vary the length, or a head can copy from a fixed
offset by position alone.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from data.syntheticdata import registered
from data.tasks.basic import _random_input

if TYPE_CHECKING:
    from data.data_params import DataParams


@registered(answer_sep=None)
def repeat_random(rng: random.Random, dp: DataParams) -> str:
    """xqfkxqfk"""
    s = _random_input(rng, dp)
    return s + s
