"""Resuming: checkpoints restore a run exactly (weights and train_stats), after SIGKILL, Ctrl-C, or mid-sweep.

The equality tests use dropout, mid-epoch validations and step checkpoints, so they fail if the
RNG states, the data position, the optimizer/scheduler or LMTrainer's own state is not restored.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, Workspace, tiny_config, torch_threads
from train import checkpointing
from train.checkpointing import ResumableSampler, load_checkpoint_safely
from train.snapshots import FOLDER

def config(n_train: int = 256, epochs: int = 3, lr: str = "3e-3", every: int = 5, val: str = "7") -> str:
    return tiny_config(
        n_train_samples=n_train, epochs=epochs, batch_size=16, lr=lr, checkpoint_every_n_steps=every, val_check_interval=val, dropout=0.1,
        snapshot_log_spaced=True, snapshot_every_n_steps=9,  # checkpoints over training must resume exactly too
    )


def stats_without_time(run_dir: Path) -> dict:
    stats = json.loads((run_dir / "train_stats.json").read_text())
    return {k: v for k, v in stats.items() if not k.startswith("time/")}


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ: {different}"
    snaps_a, snaps_b = sorted((a / FOLDER).glob("*.safetensors")), sorted((b / FOLDER).glob("*.safetensors"))
    assert [p.name for p in snaps_a] == [p.name for p in snaps_b] and snaps_a, "the same checkpoints over training"
    for pa, pb in zip(snaps_a, snaps_b):
        ta, tb = load_file(pa), load_file(pb)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f"checkpoint over training {pa.name} differs"
    sa, sb = stats_without_time(a), stats_without_time(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k] == sb[k], f"train_stats[{k!r}] differs"


def sub_env(home: Path) -> dict[str, str]:
    return {
        **os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home), "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1",
        "HARNESS_DATA_CACHE": str(home / "data-cache"),
    }


def wait_for(pred, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before the expected point:\n{out[-2000:]}\n{err[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out waiting for a checkpoint")
        time.sleep(0.01)


def in_progress_dirs(saves: Path) -> list[Path]:
    """Run folders with a checkpoint and no manifest (not the hidden ones a finishing run is swapping out)."""
    found = [p.parent.parent for p in saves.rglob("checkpoints/last.ckpt")]
    return sorted(d for d in found if not d.name.startswith(".") and not (d / "manifest.json").exists())


# --- data order ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [23, 24])  # a partial last batch, and none
def test_sampler_matches_seeded_shuffled_dataloader(n):
    """Same order as the plain loader LMDataModule used to hand Lightning, pass after pass."""
    seed = 5
    loader = torch.utils.data.DataLoader(list(range(n)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(seed))

    def one_pass():  # as Lightning iterates: len(loader) batches, never asking past the end
        it = iter(loader)
        return [int(x) for _ in range(len(loader)) for x in next(it)]

    expected = [one_pass() for _ in range(4)]
    s = ResumableSampler(n, seed, batch_size=4)
    got = []
    for e in range(4):
        s.set_epoch(e)
        got.append(list(s))
    assert got == expected
    # restart in epoch 2 after 3 batches: the rest of that epoch, then epoch 3 as usual
    fresh = ResumableSampler(n, seed, batch_size=4)
    fresh.resume({"epoch": 2, "batches_done": 3, "batch_size": 4, "n": n})
    assert list(fresh) == expected[2][12:]
    fresh.set_epoch(3)
    assert list(fresh) == expected[3]


# --- exactness from every checkpoint --------------------------------------------------------
def test_resume_from_every_checkpoint_is_exact(ws: Workspace, monkeypatch, one_thread, capsys):
    """48 steps, checkpoints every 5 steps and after validations every 7 batches; resume from each one."""
    ws.write_config("ex", config())
    snaps: list[Path] = []
    save = checkpointing.SafeCheckpointIO.save_checkpoint

    def snapshot(self, ckpt, path, storage_options=None):
        save(self, ckpt, path, storage_options)
        state_dir = Path(path).parent.parent
        dst = ws.root / "snaps" / f"{len(snaps):02d}-step{ckpt['global_step']}"
        import shutil

        shutil.copytree(state_dir, dst)
        snaps.append(dst)

    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", snapshot)
    assert ws.main("--config=ex", "--save", "--no-wandb") == 0
    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", save)
    (ref,) = ws.run_dirs()
    steps = [int(p.name.split("step")[1]) for p in snaps]
    assert {5, 7, 10, 14, 30, 48} <= set(steps), steps  # step-, validation-, coinciding and end-of-training checkpoints
    assert steps.count(30) == 1, "a step checkpoint followed by a validation is replaced by the one after it"
    ck = load_checkpoint_safely(snaps[0] / "checkpoints" / "last.ckpt")  # weights_only=True
    assert {"lm_trainer", "harness", "optimizer_states", "lr_schedulers", "loops"} <= set(ck)
    for snap in snaps:
        capsys.readouterr()
        assert ws.main(f"--resume={snap}", "--no-wandb") == 0, snap.name
        assert "resuming" in capsys.readouterr().out
        assert_same_run(snap, ref)
        assert not (snap / "checkpoints").exists() and not (snap / "run_state.json").exists()


# --- SIGKILL and Ctrl-C in real processes ---------------------------------------------------------
@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory):
    """Two identical runs in subprocesses, started together: one SIGKILLed, one sent SIGINT, after their first checkpoint."""
    procs = {}
    for how in ("kill", "int"):
        w = Workspace(tmp_path_factory.mktemp(how))
        w.write_config("long", config(n_train=512, epochs=4, every=10, val="0.5"))
        cmd = [sys.executable, str(REPO / "main.py"), *w.args("--config=long", "--save", "--no-wandb")]
        procs[how] = (w, subprocess.Popen(cmd, cwd=REPO, env=sub_env(w.root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = {}
    for how, (w, proc) in procs.items():
        wait_for(lambda: in_progress_dirs(w.saves), proc)
        proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    for how, (w, proc) in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        out[how] = (w, proc.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def reference_long(tmp_path_factory):
    """The same run, never interrupted (in-process)."""
    w = Workspace(tmp_path_factory.mktemp("ref"))
    w.write_config("long", config(n_train=512, epochs=4, every=10, val="0.5"))
    with torch_threads(1):  # CPU results are bitwise reproducible at a fixed thread count
        assert w.main("--config=long", "--save", "--no-wandb") == 0
    (ref,) = w.run_dirs()
    return ref


def test_sigkill_then_resume_equals_uninterrupted_run(stopped_runs, reference_long, one_thread, capsys):
    w, rc, _, _ = stopped_runs["kill"]
    assert rc == -signal.SIGKILL
    (state_dir,) = in_progress_dirs(w.saves)
    state = json.loads((state_dir / "run_state.json").read_text())
    assert state["status"] == "running"  # a killed process can't say otherwise
    assert w.main(f"--resume={state_dir.name}", "--no-wandb") == 0  # by timestamp
    out = capsys.readouterr().out
    assert "resuming" in out and "from step" in out
    (run_dir,) = w.run_dirs()
    assert run_dir == state_dir
    assert_same_run(run_dir, reference_long)


def test_ctrl_c_saves_a_checkpoint_exits_cleanly_and_resumes_exactly(stopped_runs, reference_long, one_thread):
    w, rc, stdout, stderr = stopped_runs["int"]
    assert rc == 130, stderr
    assert "Traceback" not in stderr and "SIGINT received" in stdout
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("interrupted: SIGINT at step") and "--resume=" in last
    (state_dir,) = in_progress_dirs(w.saves)
    state = json.loads((state_dir / "run_state.json").read_text())
    assert state["status"] == "interrupted"
    ck = load_checkpoint_safely(state_dir / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == state["last_checkpoint_step"] and 0 < ck["global_step"] < 128
    assert w.main(f"--resume={state_dir}", "--no-wandb") == 0
    assert_same_run(state_dir, reference_long)


# --- sweeps -------------------------------------------------------------------------------
def test_sweep_resume_skips_finished_runs_and_resumes_the_interrupted_one(ws: Workspace, one_thread, capsys):
    ws.write_config("sw", config(epochs=4, lr="[1e-3,2e-3,3e-3,4e-3]", every=5, val="1.0"))
    cmd = [sys.executable, str(REPO / "main.py"), *ws.args("--config=sw", "--save", "--no-wandb")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=sub_env(ws.root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(ws.run_dirs()) == 2 and in_progress_dirs(ws.saves), proc)
    proc.kill()
    proc.communicate()
    first_two = {d: (d / "manifest.json").stat().st_mtime_ns for d in ws.run_dirs()}
    (third,) = in_progress_dirs(ws.saves)

    assert ws.main("--config=sw", "--save", "--no-wandb", "--resume") == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("=== run")]
    assert len(lines) == 4
    assert "skipped, already finished" in lines[0] and "skipped, already finished" in lines[1]
    assert "resuming" in lines[2] and str(third) in lines[2]
    assert "skipped" not in lines[3] and "resuming" not in lines[3]
    dirs = ws.run_dirs()
    assert len(dirs) == 4 and third in dirs
    assert {d: (d / "manifest.json").stat().st_mtime_ns for d in first_two} == first_two, "runs 1-2 were not retrained"
    assert not in_progress_dirs(ws.saves)

    # the resumed run 3 equals run 3 trained without interruption
    ws.write_config("three", config(epochs=4, lr="3e-3", every=5, val="1.0"))
    assert ws.main("--config=three", "--save", "--no-wandb") == 0
    (three,) = [d for d in ws.run_dirs() if d.relative_to(ws.saves).parts[0] == "three"]
    assert_same_run(third, three)

    # a second --resume has nothing left to do
    assert ws.main("--config=sw", "--save", "--no-wandb", "--resume") == 0
    assert capsys.readouterr().out.count("skipped, already finished") == 4


def test_run_identity_is_stable_and_ignores_defaults(ws: Workspace):
    from train.config import load_runs
    from train.resume import sweep_identities

    ws.write_config("a", config())
    ws.write_config("b", config().replace("lr=3e-3", "lr=3e-3\nweight_decay=0.1"))  # 0.1 is the default
    (a,), (b,) = load_runs("a", ws.configs), load_runs("b", ws.configs)
    b.config_name = "a"
    assert sweep_identities([a], 0) == sweep_identities([b], 0)
    assert sweep_identities([a], 0) != sweep_identities([a], 1)
    ws.write_config("sw", config(lr="[1e-3,1e-3,2e-3]"))
    ids = sweep_identities(load_runs("sw", ws.configs), 0)
    assert len(set(ids)) == 3, "a repeated sweep value still gets its own identity"


def test_resume_errors_are_one_line(ws: Workspace, capsys):
    ws.write_config("t", config())
    cases = [
        (["--resume=1999-01-01--00-00-00"], "no run with that timestamp"),
        ([f"--resume={ws.root}/nowhere/x"], "no such folder"),
        ([f"--resume={ws.root}"], "no run_state.json"),
        (["--config=t", f"--resume={ws.root}"], "drop --config"),
    ]
    for args, fragment in cases:
        assert ws.main(*args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err


def test_packed_text_resume_is_exact(ws: Workspace, monkeypatch, one_thread):
    """Packed windows (no mask, plain mean loss; one padded tail window): resuming mid-epoch from a step
    checkpoint ends with the same weights and train_stats as the uninterrupted run."""
    data = ws.root / "data"
    (data / "verse").mkdir(parents=True)
    (data / "verse" / "data.txt").write_text("".join(f"line {i} of the verse {'la ' * (i % 5)}\n" for i in range(80)))
    monkeypatch.setenv("HARNESS_DATA_PATH", str(data))
    text = config(epochs=2, every=5, val="1.0").replace('task="copy"', 'task="verse"\npack=True')
    ws.write_config("pk", text)
    snaps: list[Path] = []
    save = checkpointing.SafeCheckpointIO.save_checkpoint

    def snapshot(self, ckpt, path, storage_options=None):
        save(self, ckpt, path, storage_options)
        if ckpt["global_step"] == 5:
            import shutil

            dst = ws.root / "snap"
            shutil.copytree(Path(path).parent.parent, dst)
            snaps.append(dst)

    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", snapshot)
    assert ws.main("--config=pk", "--save", "--no-wandb") == 0
    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", save)
    (ref,) = ws.run_dirs()
    stats = stats_without_time(ref)["stat/train_loss:main"]
    assert len(snaps) == 1 and len(stats) > 10  # the snapshot is mid-epoch: 2 epochs of > 5 steps
    assert ws.main(f"--resume={snaps[0]}", "--no-wandb") == 0
    assert_same_run(snaps[0], ref)
