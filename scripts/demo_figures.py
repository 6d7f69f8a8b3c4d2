"""Run the demo exactly as `make demo` does and write its figures to docs/demo-figures.json.

    python3 scripts/demo_figures.py            # or: make demo-figures

README.md and docs/plain-run.md quote these figures; tests/test_readme.py checks that they do,
so the README's demo numbers always come from a real run of the committed code. The run is
saved into a temporary folder; the machine's load is recorded beside the timings.
"""
from __future__ import annotations

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
OUT = REPO / "docs" / "demo-figures.json"
DEMO = ["main.py", "--config=test-synth", "--no-wandb", "--save"]  # the Makefile's demo target


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def readme_figures(fig: dict) -> list[str]:
    """The demo figures as README.md and docs/plain-run.md write them."""
    return [f"val loss {fig['val_loss']:.2f}", f"{100 * fig['acc_answer']:.1f} % answer-token accuracy", f"{100 * fig['exact_answer']:.1f} % of val samples"]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *DEMO, f"--save-dir={tmp}/saved", f"--log-dir={tmp}/logs"], cwd=REPO, capture_output=True, text=True,
        )
        command_s = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
            return proc.returncode
        (results_file,) = Path(tmp, "saved").rglob("results.json")
        results = json.loads(results_file.read_text())
    import torch

    fig = {
        "command": "python3 " + " ".join(DEMO),
        "val_loss": results["val"]["loss:main"],
        "acc_answer": results["val"]["acc:answer"],
        "exact_answer": results["val"]["exact:answer"],
        "n_params": results["n_params"],
        "train_wall_s": round(results["wall_time_s"], 1),
        "command_wall_s": round(command_s, 1),
        "cpu_cores": os.cpu_count(),
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked: results can differ across CPUs
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    OUT.write_text(json.dumps(fig, indent=1) + "\n")
    print(json.dumps(fig, indent=1))
    print("README wording:", "; ".join(readme_figures(fig)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
