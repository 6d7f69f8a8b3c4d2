"""Cost of the training-health stats (train/health.py): the harness with `log_health` on vs off.

Same contender as throughput's (a) (`run_one`, torch-transformer, same size and data), trained
with `log_health=True` and `=False`, interleaved on/off/on/off for `rounds` rounds so load drift
hits both alike. Two logging cadences: the default (`hyperparams_log_freq=50`: norms every 50
steps) and the worst case (`hyperparams_log_freq=1`: every step logs, so the norms run every
step). The figure is the on/off ratio of median tokens/s per cadence; goal ≥ 0.98.
"""
from __future__ import annotations

import gc
import statistics
from typing import Any, Callable

from bench.settings import BenchSettings
from bench.throughput import harness

CADENCES = {"every 50 steps": 50, "every step": 1}


def run(s: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    rates: dict[str, dict[str, list[float]]] = {c: {"on": [], "off": []} for c in CADENCES}
    cpu: dict[str, dict[str, list[float]]] = {c: {"on": [], "off": []} for c in CADENCES}
    for r in range(s.rounds):
        for cadence, freq in CADENCES.items():
            for state in ("on", "off"):
                w, _ = harness(s, "torch-transformer", log_health=state == "on", hyperparams_log_freq=freq)
                rates[cadence][state] += w.rates(s.tokens_per_step)
                cpu[cadence][state] += w.cpu_rates(s.tokens_per_step)
                log(f"[health] round {r + 1}/{s.rounds}, logging {cadence}, health {state}: "
                    f"{statistics.median(w.rates(s.tokens_per_step)):,.0f} tokens/s")
                gc.collect()
    med = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in rates.items()}
    med_cpu = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in cpu.items()}
    return {
        "tokens_per_s": med,
        "tokens_per_cpu_s": med_cpu,
        "ratio_on_off": {c: m["on"] / m["off"] for c, m in med.items()},
        "ratio_on_off_cpu": {c: m["on"] / m["off"] for c, m in med_cpu.items()},
        "windows": rates,
    }
