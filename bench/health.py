"""Cost of the training-health stats (train/health.py): the harness with `log_health` on vs off.

Same contender as throughput's (a) (`run_one`, torch-transformer, same size and data), trained
with `log_health=True` and `=False`, interleaved on/off/on/off for `rounds` rounds so load drift
hits both alike. Two logging cadences: the default (`hyperparams_log_freq=50`: norms every 50
steps) and the worst case (`hyperparams_log_freq=1`: every step logs, so the norms run every
step). The figure is the on/off ratio of median tokens/s per cadence; goal ≥ 0.98.

On a busy machine those ratios drown in noise, so the section also times, in process CPU time,
what a logged step adds (the two fused norms of train/health.py) against one optimizer step of
the same model and batch, without Lightning.
"""
from __future__ import annotations

import gc
import statistics
import time
from typing import Any, Callable

import torch

from bench.settings import BenchSettings
from bench.throughput import harness
from bench import data as bench_data
from bench.harness import run_config
from bench.throughput import _data_module
from model.lm import LM
from train.health import global_norm

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
    micro = norm_cost(s)
    log(f"[health] norms {micro['norms_ms']:.3f} ms vs step {micro['step_ms']:.1f} ms of CPU time")
    med = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in rates.items()}
    med_cpu = {c: {k: statistics.median(v) for k, v in d.items()} for c, d in cpu.items()}
    return {
        "tokens_per_s": med,
        "tokens_per_cpu_s": med_cpu,
        "ratio_on_off": {c: m["on"] / m["off"] for c, m in med.items()},
        "ratio_on_off_cpu": {c: m["on"] / m["off"] for c, m in med_cpu.items()},
        "windows": rates,
        "micro_cpu_ms": micro,
    }


def norm_cost(s: BenchSettings, repeats: int = 3) -> dict[str, float]:
    """CPU ms of the logged-step norms vs one AdamW training step (median of interleaved repeats)."""
    rc = run_config(s, s.size, "torch-transformer", bench_data.register(s.size.vocab_size), n_train=4 * s.size.batch_size, n_val=2, max_steps=1)
    dm = _data_module(s, rc)
    lm = LM(rc.model, dm.tokenizer).to(s.device)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    batch = {k: v.to(s.device) for k, v in next(iter(dm.train_dataloader())).items()}
    params = list(lm.parameters())

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        lm.get_losses(batch, rc.train)[0]["main"].backward()
        opt.step()

    def norms() -> None:
        float(global_norm(p.grad for p in params)) + float(global_norm(params))

    timings: dict[str, list[float]] = {"step_ms": [], "norms_ms": []}
    step()
    for _ in range(repeats):
        for name, fn, n in (("step_ms", step, max(2, s.window_steps)), ("norms_ms", norms, 20 * max(2, s.window_steps))):
            t = time.process_time()
            for _ in range(n):
                fn()
            timings[name].append(1000 * (time.process_time() - t) / n)
    return {k: statistics.median(v) for k, v in timings.items()}
