"""Task-specific validation statistics, logged by LMTrainer beside the val loss.

Two sources, both declared in the task's own file in `data/tasks/`:
- constants the task computed with its data (`TaskData.extras["val_stats"]`: a loss floor,
  baselines), logged as `stat/val_{name}` at every validation so plots show them as lines
  next to `stat/val_loss:main`;
- evaluations that need the model (`@task_metric("task")`, `data/task_registry.py`), e.g. the
  arithmetic task's greedy final-answer accuracy, `stat/val_acc:final_answer`.
"""
from __future__ import annotations

from typing import Any

from data.task_registry import TASK_METRICS, load_task_modules, task_metric

__all__ = ["TASK_METRICS", "task_metric", "task_val_stats"]


def task_val_stats(lm: Any, dm: Any) -> dict[str, float]:
    """Every task-specific statistic for a validation, full names (`stat/val_...`) → values."""
    if dm is None or getattr(dm, "task_data", None) is None:
        return {}
    out = {f"stat/val_{k}": float(v) for k, v in dm.task_data.extras.get("val_stats", {}).items()}
    load_task_modules()
    fn = TASK_METRICS.get(dm.data_params.task)
    if fn is not None:
        out.update(fn(lm, dm))
    return out
