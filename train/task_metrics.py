"""Task-specific validation statistics, logged by LMTrainer beside the val loss.

Two sources, both keyed by the task:
- constants the task computed with its data (`TaskData.extras["val_stats"]`: a loss floor,
  baselines), logged as `stat/val_{name}` at every validation so plots show them as lines
  next to `stat/val_loss:main`;
- evaluations that need the model (`@task_metric("task")`), e.g. the arithmetic task's
  exact-match accuracy of the final answer under greedy decoding, `stat/val_acc:final_answer`.
"""
from __future__ import annotations

from typing import Any, Callable

MetricFn = Callable[[Any, Any], dict[str, float]]  # (lm, datamodule) → {stat name: value}
TASK_METRICS: dict[str, MetricFn] = {}

N_GREEDY = 256  # val problems decoded per validation (greedy decoding is the slow part)


def task_metric(task: str) -> Callable[[MetricFn], MetricFn]:
    def wrap(fn: MetricFn) -> MetricFn:
        TASK_METRICS[task] = fn
        return fn

    return wrap


def task_val_stats(lm: Any, dm: Any) -> dict[str, float]:
    """Every task-specific statistic for a validation, full names (`stat/val_...`) → values."""
    if dm is None or getattr(dm, "task_data", None) is None:
        return {}
    out = {f"stat/val_{k}": float(v) for k, v in dm.task_data.extras.get("val_stats", {}).items()}
    fn = TASK_METRICS.get(dm.data_params.task)
    if fn is not None:
        out.update(fn(lm, dm))
    return out


@task_metric("arith")
def arith_final_answer(lm: Any, dm: Any, n: int = N_GREEDY) -> dict[str, float]:
    """Share of val problems whose greedily decoded solution ends in the right answer."""
    return {"stat/val_acc:final_answer": final_answer_accuracy(lm, dm.task_data.splits["val"][:n], dm.data_params.max_seq_len)}


def final_answer_accuracy(lm: Any, samples: list[str], max_seq_len: int, batch_size: int = 64) -> float:
    """Decode each `problem=` greedily (temperature 0) and compare what follows the last '='."""
    from data.tasks_arithmetic import final_answer, split_problem

    if not samples:
        return float("nan")
    right = 0
    for i in range(0, len(samples), batch_size):
        chunk = samples[i : i + batch_size]
        prompts = [split_problem(s)[0] for s in chunk]
        completions = lm.sample(prompts, max_seq_len=max_seq_len, temperature=0)
        right += sum(final_answer(c) == split_problem(s)[1] for c, s in zip(completions, chunk))
    return right / len(samples)
