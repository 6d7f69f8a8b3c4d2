"""Train the task demo configs and write docs/tasks.md: each task's floor or baselines next to
the loss/accuracy the model reached, with the wall time and the command.

    python scripts/task_results.py                 # all of configs/tasks-*.txt → docs/tasks.md
    python scripts/task_results.py --only hmm      # one of them (the table keeps the others' rows)
    python scripts/task_results.py --out /tmp/t.md --threads 2

Each config runs as `python main.py --config=tasks-NAME --no-wandb --save ...` in a subprocess
(saved runs go to a temporary folder unless --keep-dir is given). The figures come from the
saved run: `results.json` (final val metrics, wall time of training) and `train_stats.json`
(the task's logged constants such as `stat/val_loss_floor`, and the last greedy-decoding
accuracy of the arithmetic task).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # `python3 scripts/...` without the venv active: rerun under .venv/bin/python
    sys.path.insert(0, str(REPO))
    from train.venv_python import ensure_venv_python

    ensure_venv_python()

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def run_config(name: str, save_dir: Path, threads: int | None) -> dict:
    """Train configs/tasks-{name}.txt once; return what the saved run recorded."""
    cmd = [sys.executable, "main.py", f"--config=tasks-{name}", "--no-wandb", "--save", f"--save-dir={save_dir}", f"--log-dir={save_dir / 'logs'}"]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    load_before = _load()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"tasks-{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    (run_dir,) = sorted(p.parent for p in (save_dir / f"tasks-{name}").rglob("manifest.json"))
    results = json.loads((run_dir / "results.json").read_text())
    stats = json.loads((run_dir / "train_stats.json").read_text())
    last = {k: v[-1][3] for k, v in stats.items()}
    steps = max((r[0] for v in stats.values() for r in v), default=0)
    return {
        "results": results, "last": last, "total_s": total, "steps": steps, "load": (load_before, _load()),
        "command": "python main.py --config=tasks-" + name + " --no-wandb",
    }


def _load() -> float:
    """1-minute load average (other jobs on the machine slow every run down; the doc says how busy it was)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def row(name: str, r: dict) -> list[str]:
    """[task, config, reference, reached, gap, steps, train s, total s, command]; the middle three
    come from the task file's `@task_summary` (data/task_registry.py)."""
    ref, reached, gap = task_summaries()[name](r["results"]["val"], r["last"])
    cfg = f"[configs/tasks-{name}.txt](../configs/tasks-{name}.txt)"
    return [name, cfg, ref, reached, gap, str(r["steps"]), f"{r['results']['wall_time_s']:.0f}", f"{r['total_s']:.0f}", f"`{r['command']}`"]


def task_summaries() -> dict:
    sys.path.insert(0, str(REPO))
    from data.task_registry import TASK_SUMMARIES, load_task_modules

    load_task_modules()
    return TASK_SUMMARIES


def demo_tasks() -> tuple[str, ...]:
    """Tasks with a demo config (configs/tasks-NAME.txt) and a summary in their task file."""
    names = (p.stem.removeprefix("tasks-") for p in sorted((REPO / "configs").glob("tasks-*.txt")))
    return tuple(n for n in names if n in task_summaries())


HEADER = ["task", "config", "floor / baseline", "reached", "gap", "steps", "train s", "total s", "command"]


def table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def update_doc(path: Path, new_rows: dict[str, list[str]], note: str) -> None:
    """Replace the rows of the tasks just run inside the marked block; keep the others."""
    text = path.read_text() if path.exists() else f"# Tasks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    old_rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(HEADER) and cells[0] not in ("task", "---"):
            old_rows[cells[0]] = cells
    merged = {**old_rows, **new_rows}  # rows keep their place in the doc; new tasks go last
    body = table(list(merged.values()))
    path.write_text(f"{head}{BEGIN}\n{body}\n\n{note}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="comma-separated subset of the tasks with a configs/tasks-NAME.txt")
    p.add_argument("--out", default=str(REPO / "docs" / "tasks.md"))
    p.add_argument("--keep-dir", default=None, help="save the runs here instead of a temporary folder")
    p.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the runs")
    args = p.parse_args(argv)
    tasks = demo_tasks()
    names = [t for t in (args.only.split(",") if args.only else tasks)]
    for n in names:
        if n not in tasks:
            raise SystemExit(f"unknown task {n!r}; choose from {', '.join(tasks)}")
    rows, loads = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        save_dir = Path(args.keep_dir or tmp)
        for n in names:
            print(f"training tasks-{n} ...", flush=True)
            r = run_config(n, save_dir, args.threads)
            rows[n] = row(n, r)
            loads.append(f"{n} {r['load'][0]:.1f}→{r['load'][1]:.1f}")
            print("  " + " | ".join(rows[n][2:8]), flush=True)
    note = (
        f"Measured {datetime.date.today()} with `python scripts/task_results.py{' --only ' + args.only if args.only else ''}` on {machine()}; "
        f"1-minute load average before→after each run: {', '.join(loads)}."
    )
    update_doc(Path(args.out), rows, note)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
