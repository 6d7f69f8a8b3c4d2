"""repeat_random: a string written twice, optionally after a random prefix (the induction-head demo's data)."""
from __future__ import annotations

import random

from data.data_params import DataParams
from data.tasks.repeat_random import repeat_random


def _split(s: str, prefix_len: int) -> tuple[str, str, str]:
    body = s[prefix_len:]
    half = len(body) // 2
    return s[:prefix_len], body[:half], body[half:]


def test_default_has_no_prefix_and_is_unchanged():
    """The setting's default (0) keeps the task's old output: exactly a string written twice,
    drawn with the same random calls as before the setting existed."""
    dp = DataParams(task="repeat_random", min_len=3, max_len=7, alphabet="abcdefghij")
    rng, ref = random.Random(5), random.Random(5)
    for _ in range(50):
        s = repeat_random(rng, dp)
        n = ref.randint(3, 7)
        expected = "".join(ref.choice("abcdefghij") for _ in range(n))
        assert s == expected * 2


def test_prefix_varies_where_the_repeat_starts():
    dp = DataParams(task="repeat_random", min_len=4, max_len=4, alphabet="abcdefghijklmnopqrstuvwxyz", repeat_prefix_max_len=3)
    rng = random.Random(0)
    lengths = set()
    for _ in range(200):
        s = repeat_random(rng, dp)
        prefix_len = len(s) - 8
        assert 0 <= prefix_len <= 3
        _, a, b = _split(s, prefix_len)
        assert a == b
        lengths.add(prefix_len)
    assert lengths == {0, 1, 2, 3}


def test_negative_prefix_is_refused_with_its_range():
    from train.validate import field_problem

    assert field_problem("DataParams", "repeat_prefix_max_len", 3) is None
    assert "repeat_prefix_max_len=-1 is out of range" in field_problem("DataParams", "repeat_prefix_max_len", -1)
