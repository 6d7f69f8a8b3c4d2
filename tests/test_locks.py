"""Concurrent runs: folders are claimed atomically, a run in progress is locked by its process, stale locks are taken over."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace
from tests.test_resume import config, sub_env
from core.errors import UserError
from train.locks import LOCK, RunLocks, claim_folder


@pytest.fixture
def other_process():
    """A live process that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    lock = folder / LOCK
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "then", "command": "main.py --config=x"}))
    return lock


def test_claim_folder_never_hands_out_the_same_folder(tmp_path):
    base = tmp_path / "cfg" / "copy" / "run" / "2026-01-01--00-00-00"
    got = [claim_folder(base) for _ in range(3)]
    assert [p.name for p in got] == ["2026-01-01--00-00-00", "2026-01-01--00-00-00-1", "2026-01-01--00-00-00-2"]
    assert all(p.is_dir() for p in got)


def test_live_lock_is_refused_naming_the_holder(tmp_path, other_process):
    write_lock(tmp_path, other_process)
    with pytest.raises(UserError) as e, RunLocks() as locks:
        locks.acquire(tmp_path)
    assert f"process {other_process}" in str(e.value) and "in use" in str(e.value)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == other_process, "the holder's lock is untouched"


def test_lock_on_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid(), host="some-other-machine")
    with pytest.raises(UserError, match="some-other-machine"), RunLocks() as locks:
        locks.acquire(tmp_path)


def test_stale_lock_is_taken_over_and_released(tmp_path, capsys):
    write_lock(tmp_path, dead_pid())
    with RunLocks() as locks:
        locks.acquire(tmp_path)
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
        locks.acquire(tmp_path)  # the same process again: fine
    assert "took over" in capsys.readouterr().out
    assert not (tmp_path / LOCK).exists() and not list(tmp_path.iterdir()), "released, no temporary files left"


def test_concurrent_identical_runs_all_finish_with_their_own_folders(tmp_path):
    """Three identical `--config=cc --save` started together: three complete runs, three separate logs."""
    n = 3
    ws = Workspace(tmp_path)
    ws.write_config("cc", config(n_train=64, epochs=1, every=2, val="1.0"))
    cmd = [sys.executable, str(REPO / "main.py"), *ws.args("--config=cc", "--save", "--no-wandb")]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=sub_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(n)]
    results = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    runs = ws.run_dirs()
    assert len(runs) == n, runs
    leftovers = [p for p in ws.saves.rglob("*") if p.name in ("run_state.json", "last.ckpt", LOCK) or p.name.startswith(".m")]
    assert not leftovers and not [p for p in ws.saves.rglob(".*") if p.name != ".run-index" and p.parent.name != ".run-index"], leftovers
    csvs = sorted(ws.logs.rglob("metrics.csv"))
    assert len(csvs) == n and len({c.parent for c in csvs}) == n, csvs
    for c in csvs:  # one run per log: every optimizer step logged once
        with open(c) as f:
            steps = [row["step"] for row in csv.DictReader(f) if row.get("stat/train_loss:main")]
        assert len(steps) == len(set(steps)), f"{c} interleaves runs"
    for run in runs:
        stats = json.loads((run / "train_stats.json").read_text())
        assert len(stats["stat/train_loss:main"]) == 4, "each run trained its 4 steps"
