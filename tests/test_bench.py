"""`python -m bench --quick` runs every contender and writes its report where told (no timing assertions)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_quick_bench_every_contender_reports_a_number(tmp_path):
    docs = [REPO / "docs" / n for n in ("benchmarks.md", "benchmarks.json")]
    before = {p: p.stat().st_mtime_ns if p.exists() else None for p in docs}
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--threads", "1", "--out", str(out), "--conditions", "a test's tiny run"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    payload = json.loads((out / "benchmarks.json").read_text())
    results = payload["results"]

    from bench.throughput import LLAMA_BLOCK, default_layer, layer_choices

    thr = results["throughput"]
    tps = thr["tokens_per_s"]
    assert set(tps) == {"a", "b", "c", "d", "a+snap"} | ({"l"} if LLAMA_BLOCK in layer_choices() else set())
    info = thr["info"]
    assert len({info[k]["n_params"] for k in "abcd"}) == 1, info  # one model size for every contender
    assert thr["layers"]["a"] == default_layer() and set(thr["layers"].values()) >= {"torch-transformer"} | {default_layer()}
    big = thr["big_batch"]  # the default layer, the bare loop and the reference again at a larger batch, interleaved
    assert big["batch_size"] == 2 * payload["settings"]["size"]["batch_size"] and set(big["tokens_per_cpu_s"]) == {"a", "c", "d"}
    samplers = results["sampling"]["tokens_per_s"]
    assert set(samplers) == {f"{n}@b{b}" for n in ("ours_kv", "ours_recompute", "hf_generate") for b in (1, 8)}
    assert results["sampling"]["same_tokens"] == {"b1": True, "b8": True}  # greedy: cache, recompute and HF agree
    startup = results["startup"]["seconds"]
    assert set(startup) == {"python_bare", "help", "dry_run"}
    health = results["health"]["ratio_on_off"]
    assert set(health) == {"every 50 steps", "every step"}  # training-health stats on vs off (bench/health.py)
    assert all(v > 0 for v in results["health"]["micro_cpu_ms"].values())  # figures only; no timing assertion
    for value in [*health.values(), *tps.values(), *thr["tokens_per_cpu_s"].values(), *big["tokens_per_s"].values(), *samplers.values(), *startup.values()]:
        assert math.isfinite(value) and value > 0
    assert set(payload["ratios_cpu_time"]) >= {"a/c", "a/d", "custom/torch", "a/c@big", "a/d@big", "a+snap/a", "kv/recompute@b1", "ours/hf@b8"}
    assert payload["ratios_cpu_time"]["a/d@big"] == big["tokens_per_cpu_s"]["a"] / big["tokens_per_cpu_s"]["d"]
    by_round, n = payload["ratios_cpu_time_by_round"]["a/d"], payload["settings"]["n_windows"]  # one ratio per interleaved round
    import statistics

    first = statistics.median(thr["cpu_windows"]["a"][:n]) / statistics.median(thr["cpu_windows"]["d"][:n])
    assert len(by_round) == payload["settings"]["rounds"] and by_round[0] == first
    assert payload["machine"]["threads"] == 1

    md = (out / "benchmarks.md").read_text()
    for heading in ("## Training throughput", "## Sampling speed", "## Start-up", "## Cost of the training-health stats", "a/c", "a/d", "python -m bench --quick"):
        assert heading in md
    assert "| conditions | a test's tiny run |" in md  # the machine's state, as told
    import shlex

    assert shlex.split(payload["command"])[-2:] == ["--conditions", "a test's tiny run"]  # pastes back into a shell
    assert "bench summary" in res.stdout
    assert {p: p.stat().st_mtime_ns if p.exists() else None for p in docs} == before  # docs/ untouched


def test_bench_refuses_unknown_section(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--sections", "speed", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "unknown section" in res.stderr and "throughput" in res.stderr


def test_quality_scorer_takes_a_shorter_last_window():
    """Packed val windows end with a shorter one; the scorer predicts each of its tokens once too."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from bench.quality import val_loss

    torch.manual_seed(0)
    table = torch.randn(6, 6)
    windows = [np.arange(i, i + 5) % 6 for i in (0, 4, 8)] + [np.array([0, 1, 2])]
    got = val_loss(lambda x: table[x], windows, torch.device("cpu"), batch=3)
    ids = [torch.as_tensor(w) for w in windows]
    want = torch.cat([F.cross_entropy(table[w[:-1]], w[1:], reduction="none") for w in ids]).mean()
    assert abs(got - float(want)) < 1e-6


def test_bench_refuses_notes_that_are_not_a_file(tmp_path):
    """`--notes` names the analysis file; text given there would silently drop the analysis from the report."""
    res = subprocess.run([sys.executable, "-m", "bench", "--notes", "idle machine", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and not any(tmp_path.iterdir())
    assert "'idle machine' is not a file" in res.stderr and "--conditions" in res.stderr


def test_bench_times_a_subset_of_the_contenders_and_refuses_unknown_ones(tmp_path):
    """`--contenders a,d`: only those, at both batch sizes (more rounds of what matters in the same time)."""
    res = subprocess.run([sys.executable, "-m", "bench", "--quick", "--threads", "1", "--sections", "throughput", "--contenders", "a,d",
                          "--rounds", "2", "--out", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    payload = json.loads((tmp_path / "benchmarks.json").read_text())
    thr = payload["results"]["throughput"]
    assert set(thr["tokens_per_s"]) == {"a", "d"} and set(thr["big_batch"]["tokens_per_s"]) == {"a", "d"}
    assert len(payload["ratios_cpu_time_by_round"]["a/d"]) == 2 and "a/c" not in payload["ratios_cpu_time"]
    bad = subprocess.run([sys.executable, "-m", "bench", "--quick", "--contenders", "a,e", "--out", str(tmp_path / "x")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown contender(s) e" in bad.stderr
