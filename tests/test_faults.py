"""Failures: non-finite losses and gradients, damaged or unsafe files, unwritable or full disks, unreachable wandb."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, Workspace
from tests.test_resume import config, in_progress_dirs
from train.checkpointing import load_checkpoint_safely
from core.errors import UserError
from train.loading import load_run


def one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("error:") and "Traceback" not in err[0]
    return err[0]


# --- non-finite guard ---------------------------------------------------------------------------
def inject(monkeypatch, at_call: int, where: str) -> None:
    """Make the `at_call`-th training loss NaN ('loss'), or leave it finite but make its gradients NaN ('grad')."""
    from model.lm import LM

    real = LM.get_losses
    calls = {"n": 0}

    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return torch.full_like(g, float("nan"))

    def get_losses(self, *args, **kwargs):
        losses, n = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at_call and self.training:
            if where == "loss":
                losses = {**losses, "main": losses["main"] * float("nan")}
            else:
                w = next(self.parameters())
                losses = {**losses, "main": losses["main"] + NanGrad.apply(w).sum() * 0.0}
        return losses, n

    monkeypatch.setattr(LM, "get_losses", get_losses)


def test_nan_loss_stops_the_run_keeps_the_last_good_checkpoint_and_marks_it_failed(ws: Workspace, monkeypatch, capsys):
    ws.write_config("nan", config(epochs=1, lr="3e-3", every=5, val="1.0").replace("dim=16", "dim=[16,8]"))
    inject(monkeypatch, at_call=13, where="loss")  # the 13th batch = step 12 of the first run
    assert ws.main("--config=nan", "--save", "--no-wandb") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 2 and "run 1/2" in err[0] and "1 of 2 run(s) failed" in err[1]
    assert "non-finite stat/train_loss:main = nan at step 12" in err[0] and "Last good checkpoint: step 10" in err[0]
    (failed_dir,) = in_progress_dirs(ws.saves)
    failure = json.loads((failed_dir / "FAILED.json").read_text())
    assert failure["stat"] == "stat/train_loss:main" and failure["step"] == 12 and failure["last_good_checkpoint"]["step"] == 10
    assert json.loads((failed_dir / "run_state.json").read_text())["status"] == "failed"
    ck = load_checkpoint_safely(failed_dir / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 10 and all(torch.isfinite(v).all() for v in ck["state_dict"].values())
    assert len(ws.run_dirs()) == 1, "the sweep went on with run 2"
    # re-running the sweep with --resume skips both: one finished, one failed (it would fail again)
    assert ws.main("--config=nan", "--save", "--no-wandb", "--resume") == 0
    out = capsys.readouterr().out
    assert "skipped, failed earlier" in out and "skipped, already finished" in out


def test_nan_gradient_names_the_parameter(ws: Workspace, monkeypatch, capsys):
    ws.write_config("g", config(every=5, val="1.0"))
    inject(monkeypatch, at_call=3, where="grad")
    assert ws.main("--config=g", "--no-wandb") == 1  # without --save: the log folder holds the state
    line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")][0]
    assert "non-finite gradient of model." in line and "at step 2" in line and "No checkpoint was written before it" in line
    (failed,) = list(ws.logs.rglob("FAILED.json"))
    assert json.loads(failed.read_text())["stat"].startswith("gradient of model.")


def test_huge_learning_rate_fails_cleanly(ws: Workspace, capsys):
    ws.write_config("lr", config(lr="1e6", every=5, val="1.0").replace("dropout=0.1", "dropout=0.0"))
    assert ws.main("--config=lr", "--save", "--no-wandb") == 1
    err = capsys.readouterr().err
    assert "non-finite" in err and "at step" in err and "Traceback" not in err
    (failed_dir,) = [p.parent for p in ws.saves.rglob("FAILED.json")]
    assert json.loads((failed_dir / "run_state.json").read_text())["status"] == "failed"


# --- integrity -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> Path:
    w = Workspace(tmp_path_factory.mktemp("saved"))
    w.write_config("s", config(epochs=1, every=0, val="1.0"))
    assert w.main("--config=s", "--save", "--no-wandb") == 0
    (run_dir,) = w.run_dirs()
    return run_dir


def damaged_copy(run_dir: Path, dst: Path, name: str, how: str) -> Path:
    import shutil

    shutil.copytree(run_dir, dst)
    p = dst / name
    data = bytearray(p.read_bytes())
    if how == "truncate":
        p.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        data[len(data) // 2] ^= 0x01
        p.write_bytes(bytes(data))
    else:
        p.unlink()
    return dst


@pytest.mark.parametrize(
    "name,how,fragment",
    [
        ("model.safetensors", "truncate", "truncated or altered"),
        ("train_stats.json", "flip", "does not match its sha256"),
        ("model.safetensors", "flip", "does not match its sha256"),
        ("tokenizer.json", "delete", "is missing"),
        ("params.json", "truncate", "truncated or altered"),
    ],
)
def test_damaged_saved_run_is_refused_naming_the_file(saved_run, tmp_path, name, how, fragment):
    bad = damaged_copy(saved_run, tmp_path / "bad", name, how)
    with pytest.raises(UserError) as e:
        load_run(bad)
    assert fragment in str(e.value) and str(bad / name) in str(e.value)


def test_saved_run_holds_no_pickle(saved_run):
    from safetensors import safe_open

    load_run(saved_run)  # intact: loads
    for p in (f for f in saved_run.rglob("*") if f.is_file()):  # checkpoints over training included
        if p.suffix == ".safetensors":
            with safe_open(str(p), framework="pt"):
                pass
        else:
            json.loads(p.read_text())  # every other file is JSON
        assert not p.read_bytes().startswith((b"\x80", b"PK")), f"{p.name} looks like a pickle / torch zip"


def test_damaged_or_unsafe_checkpoint_is_refused(ws: Workspace, monkeypatch, capsys, tmp_path):
    ws.write_config("c", config(every=5, val="1.0"))
    import train.checkpointing as ck

    real = ck.RunCheckpoint._save_checkpoint

    def save_then_stop(self, trainer, filepath):
        real(self, trainer, filepath)
        raise ck.RunInterrupted("test stop")

    monkeypatch.setattr(ck.RunCheckpoint, "_save_checkpoint", save_then_stop)
    assert ws.main("--config=c", "--save", "--no-wandb") == 130
    monkeypatch.undo()
    (state_dir,) = in_progress_dirs(ws.saves)
    last = state_dir / "checkpoints" / "last.ckpt"
    good = last.read_bytes()

    data = bytearray(good)
    data[len(data) // 2] ^= 0x01  # one flipped bit: torch.load would not notice
    last.write_bytes(bytes(data))
    capsys.readouterr()
    assert ws.main(f"--resume={state_dir}", "--no-wandb") == 2
    line = one_line_error(capsys)
    assert str(last) in line and "does not match its sha256" in line

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {}, "evil": Evil()}, last)
    (last.parent / "last.ckpt.sha256").unlink()  # not our file: no recorded hash, refused as unverified ...
    assert ws.main(f"--resume={state_dir}", "--no-wandb") == 2
    line = one_line_error(capsys)
    assert "can't be verified" in line and "--allow-unverified" in line and str(last) in line
    assert ws.main(f"--resume={state_dir}", "--no-wandb", "--allow-unverified") == 2  # ... and when allowed, weights_only stops it
    line = one_line_error(capsys)
    assert "cannot load checkpoint" and "weights_only=True" in line and str(last) in line
    assert not marker.exists(), "the pickle was executed"


# --- environment -----------------------------------------------------------------------------------
def test_unwritable_save_dir_fails_before_training(ws: Workspace, capsys, tmp_path):
    ws.write_config("t", config(epochs=1))
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    for save_dir in (a_file / "runs", Path("/proc/harness-save-test")):
        assert ws.main("--config=t", "--save", "--no-wandb", f"--save-dir={save_dir}") == 2
        line = one_line_error(capsys)
        assert "cannot write to" in line and "--save-dir" in line
        assert "samples after" not in capsys.readouterr().out
    assert a_file.read_text() == "not a folder" and not ws.saves.exists() and not ws.logs.exists()


def test_full_disk_fails_before_training(ws: Workspace, monkeypatch, capsys):
    from collections import namedtuple

    import train.saving

    ws.write_config("t", config(epochs=1))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(train.saving.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    assert ws.main("--config=t", "--save", "--no-wandb") == 2
    line = one_line_error(capsys)
    assert "not enough disk space" in line and "MiB free" in line
    assert not ws.saves.exists(), "nothing is created before the check"


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(ws: Workspace, monkeypatch, capsys):
    import train.checkpointing as ck

    ws.write_config("t", config(epochs=1, every=5, val="1.0"))
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    assert ws.main("--config=t", "--save", "--no-wandb") == 2
    line = one_line_error(capsys)
    assert "could not write checkpoint" in line and "No space left on device" in line and "previous checkpoint is kept" in line
    monkeypatch.undo()
    (state_dir,) = in_progress_dirs(ws.saves)
    assert load_checkpoint_safely(state_dir / "checkpoints" / "last.ckpt")["global_step"] == 5
    assert not [p for p in (state_dir / "checkpoints").iterdir() if ".tmp-" in p.name], "no partial file left"
    assert ws.main(f"--resume={state_dir}", "--no-wandb") == 0
    assert ws.run_dirs() == [state_dir]


def test_wandb_host_follows_base_url(monkeypatch):
    from train.loggers import WANDB_HOST, wandb_host, wandb_reachable

    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    assert wandb_host() == WANDB_HOST
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert wandb_host() == ("127.0.0.1", 9)
    assert not wandb_reachable(), "no key: offline"
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    assert not wandb_reachable(timeout=2.0), "nothing listens there: offline"


def test_unreachable_wandb_goes_offline(ws: Workspace, tmp_path):
    """A dummy key and a wandb server that never answers (TEST-NET address): the run logs offline and finishes."""
    ws.write_config("w", config(epochs=1, val="1.0"))
    home = tmp_path / "home"
    wandb_dir = home / "wandb"
    env = {
        **os.environ, "HOME": str(home), "WANDB_API_KEY": "0123456789abcdef" * 2 + "01234567", "WANDB_BASE_URL": "http://192.0.2.1:9",
        "WANDB_DIR": str(wandb_dir), "WANDB_CONFIG_DIR": str(wandb_dir), "WANDB_CACHE_DIR": str(wandb_dir), "WANDB_DATA_DIR": str(wandb_dir),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("WANDB_MODE", None)
    r = subprocess.run(
        [sys.executable, str(REPO / "main.py"), *ws.args("--config=w")], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "logging offline" in r.stdout
    assert list(ws.logs.rglob("offline-run-*")), "offline wandb files are in the log dir"


# --- interrupted at awkward moments ------------------------------------------------------------------
def test_two_quick_ctrl_cs_exit_130_with_the_resume_line(ws: Workspace, monkeypatch, capsys):
    """The second signal stops at once (no new checkpoint), yet still exits 130 naming the checkpoint to resume from."""
    import signal

    from train.trainer import LMTrainer

    ws.write_config("i", config(epochs=1, every=2, val="1.0"))
    real = LMTrainer.training_step

    def step(self, batch, batch_idx):
        if self.global_step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, batch, batch_idx)

    monkeypatch.setattr(LMTrainer, "training_step", step)
    assert ws.main("--config=i", "--save", "--no-wandb") == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("interrupted: SIGINT received twice") and "checkpoint at step 4" in err[-1] and "--resume=" in err[-1]
    monkeypatch.undo()
    (state_dir,) = in_progress_dirs(ws.saves)
    assert json.loads((state_dir / "run_state.json").read_text())["status"] == "interrupted"
    assert ws.main(f"--resume={state_dir}", "--no-wandb") == 0 and ws.run_dirs() == [state_dir]


def test_crash_between_the_renames_of_save_run_loses_nothing(ws: Workspace, monkeypatch, capsys):
    """Killed after the run dir was moved aside, before the finished run was renamed in: --resume finishes the swap."""
    import train.saving

    ws.write_config("r", config(epochs=1, every=5, val="1.0"))
    real = os.rename

    def rename(src, dst):
        if str(src).endswith(".incomplete"):
            raise OSError("simulated crash")
        return real(src, dst)

    monkeypatch.setattr(train.saving.os, "rename", rename)
    with pytest.raises(OSError, match="simulated crash"):
        ws.main("--config=r", "--save", "--no-wandb")
    monkeypatch.undo()
    assert not [d for d in ws.run_dirs() if not d.name.startswith(".")], "the finished run is hidden ..."
    assert list(ws.saves.rglob(".*.incomplete")) and list(ws.saves.rglob(".*.in-progress"))
    capsys.readouterr()
    assert ws.main("--config=r", "--save", "--no-wandb", "--resume") == 0
    out = capsys.readouterr().out
    assert "finished the interrupted save" in out and "skipped, already finished" in out
    (run,) = ws.run_dirs()
    load_run(run)
    assert not [p for p in ws.saves.rglob(".*") if ".run-index" not in p.parts], "no hidden leftovers"
