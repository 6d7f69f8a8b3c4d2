"""Start-up: wall time of `main.py --help` and `main.py --config=test-synth --dry-run`, fresh processes."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bench.settings import BenchSettings

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python_bare": ["-c", "pass"],  # the interpreter alone, for scale
    "help": ["main.py", "--help"],
    "dry_run": ["main.py", "--config=test-synth", "--dry-run", "--no-wandb"],
}


def run(s: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    for name, args in COMMANDS.items():
        times = []
        for _ in range(s.startup_repeats):
            t = time.perf_counter()
            res = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
            times.append(time.perf_counter() - t)
            if res.returncode != 0:
                raise RuntimeError(f"startup bench: {' '.join(args)} exited {res.returncode}: {res.stderr.strip()[-300:]}")
        seconds[name] = statistics.median(times)
        log(f"[startup] {' '.join(args)}: {seconds[name]:.2f} s")
    return {"seconds": seconds, "commands": {k: " ".join(["python", *v]) for k, v in COMMANDS.items()}}
