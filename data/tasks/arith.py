"""Arithmetic with step-by-step solutions, and "blotching" (task `arith`).

A sample is a problem followed by its reductions, one operation per step, each step joined by
`=`: `3+4*(2+1)=3+4*3=3+12=15`. The knobs follow the semantic-blotching generator
(`max_num`, `max_ents`, `p_mult`, `max_mult_num`, `p_paren`, `space_mults`, `zipf_order`,
`p_ent`; see their help in DataParams).

Reduction order: the leftmost innermost parenthetical first (a parenthetical that is down to
one number loses its brackets in the same step), then the leftmost `*`, then the leftmost `+`.

Blotching drops whole intermediate steps (never the problem, never the final answer): each
one is dropped with probability `blotch_p`; with `contig_blotches=False` a dropped step is
always followed by a kept one. Since a step is a whole `=`-separated segment, no number is
ever cut.

`incl_intl_prob=False` trains only on what follows the first `=` (the trainer's answer mask).
The metric that matters is the final answer under greedy decoding from `problem=`:
`final_answer` extracts it from a completion; `stat/val_acc:final_answer` is logged at every
validation (`arith_final_answer`).

Torch-free.
"""
from __future__ import annotations

import random
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union

from core.errors import UserError
from data.syntheticdata import registered
from data.task_registry import task_metric, task_settings, task_summary
from core.params_base import param

if TYPE_CHECKING:
    from data.data_params import DataParams

STEP_SEP = "="
N_GREEDY = 256  # val problems decoded per validation (greedy decoding is the slow part)


@task_settings
class ArithSettings:
    """`arith` settings (DataParams); names follow the semantic-blotching generator."""

    max_num: int = param(20, "arith: largest number in a problem (inclusive; numbers start at 0)")
    max_ents: int = param(3, "arith: most entities in a problem (>= 2); a parenthetical counts as one and holds at most max_ents-1", min=2)
    p_mult: float = param(0.3, "arith: probability that an operator is '*' rather than '+'")
    max_mult_num: int = param(9, "arith: largest number that may stand next to a '*'")
    p_paren: float = param(0.2, "arith: probability that an entity is a parenthetical sub-problem")
    space_mults: bool = param(True, "arith: never multiply more than two numbers in a row (a*b*c)")
    zipf_order: float = param(0.0, "arith: numbers n are drawn with weight (n+1)^-zipf_order; 0 = uniform")
    p_ent: float = param(0.5, "arith: probability of each entity beyond the first two")
    blotch_p: float = param(0.0, "arith: probability of dropping each intermediate solution step (the problem and the answer are kept)")
    contig_blotches: bool = param(True, "arith: allow adjacent steps to be dropped together; False keeps a step between dropped ones")

# An expression is a flat list alternating entity, operator, entity, ...; an entity is an int
# or a nested expression (a parenthetical).
Entity = Union[int, "Expr"]
Expr = list


# --- sampling ---------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _number_weights(top: int, zipf_order: float) -> tuple[float, ...]:
    return tuple((n + 1) ** -zipf_order for n in range(top + 1))


def _number(rng: random.Random, top: int, zipf_order: float) -> int:
    return rng.choices(range(top + 1), weights=_number_weights(top, zipf_order))[0]


def check_params(dp: DataParams) -> None:
    if dp.max_ents < 2:
        raise UserError(f"arith: max_ents must be >= 2 (got {dp.max_ents}); raise it")
    if dp.max_num < 0 or dp.max_mult_num < 0:
        raise UserError(f"arith: max_num and max_mult_num must be >= 0 (got {dp.max_num}, {dp.max_mult_num})")
    for name in ("p_mult", "p_paren", "p_ent", "blotch_p"):
        v = getattr(dp, name)
        if not 0 <= v <= 1:
            raise UserError(f"arith: {name} must be in [0, 1] (got {v}); fix it in DataParams")


def sample_problem(rng: random.Random, dp: DataParams, max_ents: int | None = None) -> Expr:
    """A random problem: 2 entities plus each further one (up to max_ents) with probability p_ent."""
    max_ents = dp.max_ents if max_ents is None else max_ents
    n = 2 + sum(rng.random() < dp.p_ent for _ in range(max_ents - 2))
    ops = _operators(rng, dp, n - 1)
    expr: Expr = []
    for i in range(n):
        next_to_mult = (i > 0 and ops[i - 1] == "*") or (i < n - 1 and ops[i] == "*")
        if i:
            expr.append(ops[i - 1])
        expr.append(_entity(rng, dp, next_to_mult, max_ents))
    return expr


def _operators(rng: random.Random, dp: DataParams, n: int) -> list[str]:
    ops: list[str] = []
    for _ in range(n):
        op = "*" if rng.random() < dp.p_mult else "+"
        if op == "*" and dp.space_mults and ops and ops[-1] == "*":
            op = "+"
        ops.append(op)
    return ops


def _entity(rng: random.Random, dp: DataParams, next_to_mult: bool, max_ents: int) -> Entity:
    if next_to_mult:
        return _number(rng, min(dp.max_mult_num, dp.max_num), dp.zipf_order)
    if max_ents - 1 >= 2 and rng.random() < dp.p_paren:
        return sample_problem(rng, dp, max_ents - 1)
    return _number(rng, dp.max_num, dp.zipf_order)


# --- solving ----------------------------------------------------------------------------
def to_str(expr: Entity, top: bool = True) -> str:
    if isinstance(expr, int):
        return str(expr)
    inner = "".join(x if isinstance(x, str) else to_str(x, top=False) for x in expr)
    return inner if top else f"({inner})"


def _apply(a: int, op: str, b: int) -> int:
    return a * b if op == "*" else a + b


def reduce_once(expr: Expr) -> Expr:
    """One operation: innermost-leftmost parenthetical first, then leftmost '*', then leftmost '+'."""
    for i in range(0, len(expr), 2):
        if isinstance(expr[i], list):
            inner = reduce_once(expr[i])
            return expr[:i] + [inner[0] if len(inner) == 1 else inner] + expr[i + 1 :]
    ops = expr[1::2]
    j = 2 * ops.index("*") + 1 if "*" in ops else 1
    return expr[: j - 1] + [_apply(expr[j - 1], expr[j], expr[j + 1])] + expr[j + 2 :]


def solution_steps(expr: Expr) -> list[str]:
    """The problem, every intermediate step, and the final value, as strings."""
    steps = [to_str(expr)]
    while len(expr) > 1:
        expr = reduce_once(expr)
        steps.append(to_str(expr))
    return steps


def evaluate(expr: Entity) -> int:
    """Value of an expression (independent of the step-by-step reducer, for checks)."""
    if isinstance(expr, int):
        return expr
    terms, prod = [], evaluate(expr[0])
    for op, ent in zip(expr[1::2], expr[2::2]):
        if op == "*":
            prod *= evaluate(ent)
        else:
            terms.append(prod)
            prod = evaluate(ent)
    return sum(terms) + prod


def blotch(steps: list[str], rng: random.Random, p: float, contig: bool) -> list[str]:
    """Drop whole intermediate steps with probability p; the first and last step always stay."""
    if p <= 0 or len(steps) <= 2:
        return list(steps)
    kept = [steps[0]]
    dropped_last = False
    for step in steps[1:-1]:
        drop = rng.random() < p and (contig or not dropped_last)
        if not drop:
            kept.append(step)
        dropped_last = drop
    kept.append(steps[-1])
    return kept


# --- the task ---------------------------------------------------------------------------
def split_problem(sample: str) -> tuple[str, str]:
    """`3+4*2=3+8=11` → (`3+4*2=`, `11`): the greedy-decoding prompt and the expected answer."""
    problem, _, _ = sample.partition(STEP_SEP)
    return problem + STEP_SEP, sample.rsplit(STEP_SEP, 1)[-1]


def final_answer(completion: str) -> str:
    """The final answer of a decoded solution: what follows its last '='."""
    return completion.rsplit(STEP_SEP, 1)[-1].strip()


def _problem_key(sample: str) -> str:
    return sample.partition(STEP_SEP)[0]


@registered(name="arith", answer_sep=STEP_SEP, dedup_key=_problem_key)
def arith(rng: random.Random, dp: DataParams) -> str:
    """3+4*2=3+8=11: a problem and its reductions (some dropped with blotch_p)."""
    check_params(dp)
    steps = solution_steps(sample_problem(rng, dp))
    return STEP_SEP.join(blotch(steps, rng, dp.blotch_p, dp.contig_blotches))


# --- the metric -------------------------------------------------------------------------
@task_metric("arith")
def arith_final_answer(lm: Any, dm: Any, n: int = N_GREEDY) -> dict[str, float]:
    """Share of val problems whose greedily decoded solution ends in the right answer."""
    return {"stat/val_acc:final_answer": final_answer_accuracy(lm, dm.task_data.splits["val"][:n], dm.data_params.max_seq_len)}


def final_answer_accuracy(lm: Any, samples: list[str], max_seq_len: int, batch_size: int = 64) -> float:
    """Decode each `problem=` greedily (temperature 0) and compare what follows the last '='."""
    if not samples:
        return float("nan")
    right = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        prompts = [split_problem(s)[0] for s in chunk]
        completions = lm.sample(prompts, max_seq_len=max_seq_len, temperature=0)
        right += sum(final_answer(c) == split_problem(s)[1] for c, s in zip(completions, chunk))
    return right / len(samples)


@task_summary("arith")
def arith_summary(val: dict, last: dict) -> tuple[str, str, str]:
    """docs/tasks.md: greedy final-answer accuracy (1.0 is reachable)."""
    acc = last["stat/val_acc:final_answer"]
    ref = "1.0 reachable: the problem fixes the answer (blotching makes the steps, not the answer, random)"
    return ref, f"final-answer accuracy {acc:.3f}; solution loss {val['loss:main']:.4f}", f"{1 - acc:.3f} of problems wrong"
