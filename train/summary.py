"""The block every run ends with: what it reached, against what, how fast, where it all went, what next.

A researcher's first question after a run is "was that good, and where is it?": the final
train/val (and test, when the run evaluated it) figures sit beside the task's floor or baselines,
then wall time and throughput, then every path the run wrote, then the call that loads it.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from train.saving import resolve_save_dir


def fmt_value(name: str, value: Any) -> str:
    """Accuracies and exact-match shares as percentages, losses with 4 decimals."""
    if not isinstance(value, (int, float)):
        return str(value)
    if name.split(":")[0].split("/")[-1].removeprefix("val_").removeprefix("test_") in ("acc", "exact"):
        return f"{100 * value:.2f} %"
    return f"{value:.4f}"


def fmt_figures(figures: dict[str, Any]) -> str:
    return ", ".join(f"{name.removesuffix(':main')} {fmt_value(name, v)}" for name, v in figures.items())


def last_value(train_stats: dict[str, list], name: str) -> float | None:
    rows = train_stats.get(name) or []
    return float(rows[-1][3]) if rows else None


def task_reference(dm: Any, split: str = "val") -> dict[str, float]:
    """The task's constants for a split: loss floor, baselines (`TaskData.extras[f"{split}_stats"]`)."""
    task_data = getattr(dm, "task_data", None)
    extras = getattr(task_data, "extras", None) or {}
    return {k: float(v) for k, v in (extras.get(f"{split}_stats") or {}).items()}


def reference_line(figures: dict[str, float], reference: dict[str, float]) -> str:
    """The floor/baselines, and how far the loss is above the floor when the task has one."""
    text = fmt_figures(reference)
    floor, loss = reference.get("loss_floor"), figures.get("loss:main")
    if floor and loss is not None:
        text += f" (loss is {100 * (loss / floor - 1):.1f} % above the floor)"
    return text


def summary_lines(
    rc: Any, results: dict[str, Any], train_stats: dict[str, list], dm: Any, *, run_dir: Path | None, log_folder: Path,
    ckpt_dir: Path, save_dir: Path, loggers: list | None = None,
) -> list[str]:
    head = f"=== summary: {rc.config_name} task={rc.data.task} {rc.describe()}".rstrip()
    return [
        head, *figure_lines(results, train_stats, dm), time_line(results, train_stats),
        *path_lines(rc, results, run_dir=run_dir, log_folder=log_folder, ckpt_dir=ckpt_dir, save_dir=save_dir, loggers=loggers),
    ]


def figures_on_test_set(results: dict[str, Any]) -> dict[str, Any]:
    """Test-set figures when the run evaluated them: `results["test"]`, or `test_*` numbers."""
    test = results.get("test")
    if isinstance(test, dict):
        return test
    return {k.removeprefix("test_"): v for k, v in results.items() if k.startswith("test_") and isinstance(v, (int, float))}


def figure_lines(results: dict[str, Any], train_stats: dict[str, list], dm: Any) -> list[str]:
    """Final train, val and test figures, each split beside the task's floor or baselines."""
    train_loss = last_value(train_stats, "stat/train_loss:main")
    lines = ["  train  " + (f"loss {train_loss:.4f} (last batch)" if train_loss is not None else "no train loss recorded")]
    val = dict(results.get("val") or {})
    reference = task_reference(dm, "val")
    model_metrics = {n.removeprefix("stat/val_"): last_value(train_stats, n) for n in train_stats if n.startswith("stat/val_")}
    extra = {k: v for k, v in model_metrics.items() if k not in val and k not in reference and not k.startswith("final_") and v is not None}
    lines.append(f"  val    {fmt_figures({**val, **extra})}")
    if reference:
        lines.append(f"  task   val {reference_line(val, reference)}")
    test = figures_on_test_set(results)
    if test:
        lines.append(f"  test   {fmt_figures(test)}")
        test_ref = task_reference(dm, "test")
        if test_ref:
            lines.append(f"  task   test {reference_line(test, test_ref)}")
    return lines


def time_line(results: dict[str, Any], train_stats: dict[str, list]) -> str:
    tps = [float(r[3]) for r in train_stats.get("time/tokens_per_s") or []]
    losses = train_stats.get("stat/train_loss:main") or []
    steps = losses[-1][0] + 1 if losses else 0
    speed = f"{statistics.fmean(tps):,.0f} tokens/s (mean of {len(tps)} readings)" if tps else "tokens/s not measured (fewer batches than hyperparams_log_freq)"
    return f"  time   {results.get('wall_time_s', float('nan')):.1f} s training, {steps} steps, {speed}"


def path_lines(rc: Any, results: dict[str, Any], *, run_dir: Path | None, log_folder: Path, ckpt_dir: Path, save_dir: Path, loggers: list | None) -> list[str]:
    """Where everything went, and the call that loads the run."""
    lines = [f"  run    {run_dir}" if run_dir is not None else "  run    not saved: add --save to keep the model (then load it with model_explorer)"]
    logs = [str(Path(log_folder) / "metrics.csv")]
    wandb_dir = Path(log_folder) / "wandb"
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers or []) or wandb_dir.is_dir():
        logs.append(f"wandb files in {wandb_dir}")
    lines.append(f"  logs   {', '.join(logs)}")
    kept = sorted(p.name for p in Path(ckpt_dir).iterdir()) if Path(ckpt_dir).is_dir() else []
    lines.append(f"  ckpts  {ckpt_dir} ({', '.join(kept)})" if kept else "  ckpts  none kept: a finished run drops its resume checkpoint")
    if run_dir is not None:
        lines.append(f"  report {Path(save_dir) / rc.config_name / 'report.md'} (rewritten when the sweep ends; model_explorer.report({rc.config_name!r}))")
        lines.append(f"  next   {load_call(run_dir, results.get('timestamp'), save_dir)}")
    return lines


def load_call(run_dir: Path, timestamp: str | None, save_dir: Path) -> str:
    """The call that loads this run; names the save dir when model_explorer would not look there by default."""
    if not timestamp:
        return f"lm, dataset, train_stats, params = model_explorer.get_model_by_path({json.dumps(str(run_dir))})"
    where = "" if Path(save_dir).resolve() == resolve_save_dir().resolve() else f", save_dir={json.dumps(str(save_dir))}"
    return f"lm, dataset, train_stats, params = model_explorer.get_model_by_timestamp({json.dumps(timestamp)}{where})"


def print_summary(*args: Any, **kwargs: Any) -> None:
    print("\n".join(summary_lines(*args, **kwargs)), flush=True)
