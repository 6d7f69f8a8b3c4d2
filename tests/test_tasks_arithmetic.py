"""Arithmetic task: every step keeps the value, one operation per step, blotching drops whole steps."""
from __future__ import annotations

import random
import re

import pytest

from data.data_params import DataParams
from data.syntheticdata import SYNTHETIC_TASKS
from data.task_resolver import get_task_data
from data.tasks.arith import (
    blotch,
    evaluate,
    final_answer,
    sample_problem,
    solution_steps,
    split_problem,
)
from core.errors import UserError

RICH = DataParams(max_num=30, max_ents=4, p_mult=0.4, max_mult_num=7, p_paren=0.4, p_ent=0.7, zipf_order=0.5)


def eval_str(s: str) -> int:
    assert re.fullmatch(r"[0-9+*()]+", s), s
    return eval(s)  # noqa: S307 - digits, +, * and brackets only


def n_ops(s: str) -> int:
    return s.count("+") + s.count("*")


def problems(dp: DataParams, n: int, seed: int = 0):
    rng = random.Random(seed)
    return [sample_problem(rng, dp) for _ in range(n)]


def test_every_step_evaluates_to_the_same_value_and_does_one_operation():
    for expr in problems(RICH, 500):
        steps = solution_steps(expr)
        value = evaluate(expr)
        assert steps[-1] == str(value)
        assert all(eval_str(s) == value for s in steps)
        assert [n_ops(s) for s in steps] == list(range(n_ops(steps[0]), -1, -1))


def test_generator_knobs():
    dp = DataParams(max_num=12, max_ents=3, p_mult=0.5, max_mult_num=4, p_paren=0.0, p_ent=0.0)
    for expr in problems(dp, 300):
        s = solution_steps(expr)[0]
        assert n_ops(s) == 1 and "(" not in s  # p_ent=0: exactly two entities; p_paren=0: no brackets
        a, b = map(int, re.split(r"[+*]", s))
        assert 0 <= a <= 12 and 0 <= b <= 12
        if "*" in s:
            assert a <= 4 and b <= 4
    dp = DataParams(max_ents=5, p_mult=1.0, p_ent=1.0, p_paren=0.0, space_mults=True)
    for expr in problems(dp, 100):
        s = solution_steps(expr)[0]
        assert "*" in s and n_ops(s) == 4
        assert not re.search(r"\d+\*\d+\*", s)  # space_mults: never a*b*c
    # zipf_order skews numbers towards small ones
    flat = [int(n) for e in problems(DataParams(max_num=50, p_paren=0, p_mult=0), 300) for n in re.findall(r"\d+", solution_steps(e)[0])]
    skew = [int(n) for e in problems(DataParams(max_num=50, p_paren=0, p_mult=0, zipf_order=1.5), 300) for n in re.findall(r"\d+", solution_steps(e)[0])]
    assert sum(skew) / len(skew) < 0.5 * sum(flat) / len(flat)


def test_parentheticals_are_nested_at_most_max_ents_minus_two_deep():
    dp = DataParams(max_ents=4, p_paren=1.0, p_ent=1.0, p_mult=0.0)
    depth = max(max(_depth(solution_steps(e)[0])) for e in problems(dp, 50))
    assert depth == 2  # max_ents=4 → brackets of at most 3, then 2 entities, which hold no brackets


def _depth(s: str):
    d, out = 0, [0]
    for c in s:
        d += (c == "(") - (c == ")")
        out.append(d)
    return out


@pytest.mark.parametrize("contig", [True, False])
def test_blotching_removes_whole_steps(contig):
    rng = random.Random(3)
    n_dropped = 0
    for expr in problems(RICH, 300, seed=1):
        steps = solution_steps(expr)
        kept = blotch(steps, rng, 0.5, contig)
        assert kept[0] == steps[0] and kept[-1] == steps[-1]
        it = iter(steps)
        assert all(any(k == s for s in it) for k in kept)  # an ordered subsequence of whole steps
        dropped = [s not in kept for s in steps]
        n_dropped += sum(dropped)
        if not contig:
            assert not any(a and b for a, b in zip(dropped, dropped[1:]))
    assert n_dropped > 100


def test_blotch_extremes():
    steps = ["1+2+3+4", "3+3+4", "6+4", "10"]
    assert blotch(steps, random.Random(0), 1.0, True) == ["1+2+3+4", "10"]
    assert blotch(steps, random.Random(0), 1.0, False) == ["1+2+3+4", "6+4", "10"]
    assert blotch(steps, random.Random(0), 0.0, True) == steps


def test_registered_task_samples_and_blotched_samples_stay_consistent():
    dp = DataParams(task="arith", blotch_p=0.5, contig_blotches=True, max_ents=4, p_paren=0.3)
    rng = random.Random(0)
    for _ in range(300):
        sample = SYNTHETIC_TASKS["arith"].generate(rng, dp)
        parts = sample.split("=")
        values = {eval_str(p) for p in parts}
        assert len(values) == 1 and parts[-1] == str(values.pop())
        prompt, answer = split_problem(sample)
        assert prompt == parts[0] + "=" and answer == parts[-1]
        assert final_answer(sample) == answer


def test_splits_never_share_a_problem():
    dp = DataParams(task="arith", max_num=9, max_ents=2, blotch_p=0.5, n_train_samples=300, n_val_samples=30, n_test_samples=30)
    td = get_task_data(dp, seed=0)
    held = {s.split("=")[0] for s in td.splits["val"] + td.splits["test"]}
    assert len(held) == 60
    assert not held & {s.split("=")[0] for s in td.splits["train"]}
    assert td.answer_sep == "="


def test_bad_knobs_are_user_errors():
    with pytest.raises(UserError, match="max_ents"):
        SYNTHETIC_TASKS["arith"].generate(random.Random(0), DataParams(max_ents=1))
    with pytest.raises(UserError, match="blotch_p"):
        SYNTHETIC_TASKS["arith"].generate(random.Random(0), DataParams(blotch_p=1.5))
