"""What a newcomer meets after `make demo`: the run summary, threads, honest progress, stats in
every epoch of the CSV, resume commands with every flag, readable saved files, clear errors."""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import main
from tests.conftest import REPO


def summary_block(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("=== summary:"))
    return lines[start : start + 12]


def test_run_ends_with_summary_whose_next_call_loads_the_run(ws, capsys):
    ws.write_config("tiny")
    assert ws.main("--config=tiny", "--no-wandb", "--save") == 0
    (run_dir,) = ws.run_dirs()
    text = "\n".join(summary_block(capsys.readouterr().out))
    for needle in ("train  loss", "val    loss", "acc:answer", "tokens/s", " s training", str(run_dir), "metrics.csv", "report.md", "ckpts"):
        assert needle in text, needle
    (call,) = [line.split("next", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("next")]
    assert "model_explorer.get_model_by_timestamp(" in call and str(ws.saves) in call  # names the non-default save dir
    import model_explorer

    scope = {"model_explorer": model_explorer}
    exec(call, scope)  # the printed command, as printed, loads the run
    assert scope["lm"].model_params.dim == 16 and "stat/val_loss:main" in scope["train_stats"]


def test_unsaved_run_says_how_to_keep_it(ws, capsys):
    ws.write_config("tiny", n_train_samples="64")
    assert ws.main("--config=tiny", "--no-wandb") == 0
    text = "\n".join(summary_block(capsys.readouterr().out))
    assert "not saved: add --save" in text and "get_model_by" not in text


def test_summary_puts_val_and_test_beside_the_task_floor_and_baselines():
    from train.summary import summary_lines

    rc = SimpleNamespace(config_name="hmm", data=SimpleNamespace(task="hmm"), describe=lambda: "")
    dm = SimpleNamespace(task_data=SimpleNamespace(extras={"val_stats": {"loss_floor": 1.0}, "test_stats": {"loss_floor": 0.8}}))
    results = {"val": {"loss:main": 1.05}, "test": {"loss:main": 0.84}, "wall_time_s": 2.0, "timestamp": None}
    stats = {"stat/train_loss:main": [(0, 1, 0, 1.2)], "time/tokens_per_s": [(0, 1, 1, 100.0), (1, 2, 2, 300.0)]}
    lines = summary_lines(rc, results, stats, dm, run_dir=None, log_folder=Path("/l"), ckpt_dir=Path("/nonexistent"), save_dir=Path("/s"))
    text = "\n".join(lines)
    assert "val    loss 1.0500" in text and "test   loss 0.8400" in text
    assert "task   val loss_floor 1.0000 (loss is 5.0 % above the floor)" in text
    assert "task   test loss_floor 0.8000 (loss is 5.0 % above the floor)" in text
    assert "200 tokens/s" in text and "1 steps" in text


# --- threads ---------------------------------------------------------------------------------
def test_threads_setting_reaches_torch(ws, monkeypatch):
    from train.cpu_threads import apply_threads, usable_cores

    old = torch.get_num_threads()
    try:
        ws.write_config("tiny", n_train_samples="64")
        text = (ws.configs / "tiny.txt").read_text().replace("TrainParams\n", "TrainParams\nthreads=1\n")
        (ws.configs / "tiny.txt").write_text(text)
        torch.set_num_threads(2)
        assert ws.main("--config=tiny", "--no-wandb") == 0
        assert torch.get_num_threads() == 1
        assert apply_threads(0) == 1, "0 keeps a count already set in this process (bench, notebook)"
        torch.set_num_threads(usable_cores() + 3)  # more threads than cores this process may use
        assert apply_threads(0) == usable_cores() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def test_load_warning_only_when_load_exceeds_cores():
    from train.cpu_threads import load_warning

    assert load_warning(cores=2, load=1.9) is None
    line = load_warning(cores=2, load=7.5)
    assert line.startswith("warning: load average 7.5 on 2 cores") and "\n" not in line


# --- progress ----------------------------------------------------------------------------------
def fake_trainer(**kw):
    base = dict(max_epochs=3, max_steps=-1, num_training_batches=100, accumulate_grad_batches=1, global_step=0, current_epoch=0)
    return SimpleNamespace(**{**base, **kw})


def test_bar_totals_and_epochs_hold_for_max_steps_and_epochs():
    from train.progress import HonestRichBar, planned_epochs, progress_bar, short_name

    bar = progress_bar(tty=True)
    assert isinstance(bar, HonestRichBar)
    t = fake_trainer(current_epoch=2)
    bar._trainer = t
    assert bar.total_train_batches == 100 and planned_epochs(t) == 3 and bar.epoch_description() == "Epoch 3/3"  # not "2/2"
    t = fake_trainer(max_steps=250, global_step=200, current_epoch=2)
    bar._trainer = t
    assert bar.total_train_batches == 50 and bar.epoch_description() == "Epoch 3/3"
    t = fake_trainer(max_epochs=10, max_steps=150, global_step=0)
    bar._trainer = t
    assert planned_epochs(t) == 2 and bar.epoch_description() == "Epoch 1/2"
    assert short_name("stat/val_loss:main") == "val_loss" and short_name("stat/val_acc:answer") == "val_acc:answer"


def test_plain_progress_lines_when_stdout_is_not_a_terminal(ws, capsys, monkeypatch):
    import train.progress

    monkeypatch.setattr(train.progress, "PLAIN_EVERY_S", 0.0)  # every batch
    ws.write_config("tiny", n_train_samples="160", epochs="2")  # 5 batches an epoch
    assert ws.main("--config=tiny", "--no-wandb") == 0
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 10, out
    line = re.compile(r"step (\d+)/10 \(epoch ([12])/2\) \| train_loss \d+\.\d{4} \| [\d,]+ tokens/s \| elapsed \d+:\d\d:\d\d \| ETA \d+:\d\d:\d\d")
    assert all(line.fullmatch(s) for s in steps), steps
    assert [int(line.fullmatch(s)[1]) for s in steps] == list(range(1, 11)) and steps[-1].endswith("ETA 0:00:00")
    assert sum(line.startswith("validation at step ") and "val_loss " in line for line in out.splitlines()) == 2


# --- CSV and wandb -----------------------------------------------------------------------------
def test_metrics_csv_has_lr_and_throughput_in_every_epoch(ws):
    """5 batches an epoch, lr every 4 steps: counted within an epoch, epoch 1 never hit a logging step."""
    ws.write_config("tiny", n_train_samples="160", epochs="2")
    assert ws.main("--config=tiny", "--no-wandb") == 0
    (path,) = ws.logs.rglob("metrics.csv")
    rows = list(csv.DictReader(path.open()))
    for name in ("lr", "time/tokens_per_s", "time/elapsed_s"):
        epochs = {r["epoch"] for r in rows if r.get(name)}
        assert epochs == {"0", "1"}, (name, epochs)
    lr_steps = [int(r["step"]) for r in rows if r.get("lr")]
    loss_steps = [int(r["step"]) for r in rows if r.get("stat/train_loss:main")]
    assert lr_steps == loss_steps == [3, 7], "wandb gets the same log_metrics calls as the CSV"


def test_log_every_n_steps_divides_the_hyperparams_period():
    from train.run import log_every_n_steps

    assert [log_every_n_steps(f) for f in (1, 4, 50, 100, 120, 53)] == [1, 4, 50, 50, 40, 1]


# --- resume command ----------------------------------------------------------------------------
def test_resume_command_repeats_every_flag():
    args = main.build_parser().parse_args(["--config=sw", "--no-wandb", "--save", "--save-dir=/tmp/my saves", "--seed=7", "--log-dir=/l", "--task=reverse"])
    one = main.resume_command(args, Path("/tmp/my saves/sw/run"))
    assert one == "python3 main.py --save-dir='/tmp/my saves' --log-dir=/l --no-wandb --resume='/tmp/my saves/sw/run'"
    sweep = main.resume_command(args)
    for flag in ("--config=sw", "--task=reverse", "--save", "--save-dir='/tmp/my saves'", "--no-wandb", "--seed=7", "--log-dir=/l"):
        assert flag in sweep
    assert sweep.endswith(" --resume")
    again = main.build_parser().parse_args(shlex.split(sweep)[2:])
    assert (again.config, again.save_dir, again.seed, again.no_wandb, again.resume) == ("sw", "/tmp/my saves", 7, True, "")


def test_interrupted_run_prints_full_resume_command_and_resume_rewrites_report(ws, capsys, monkeypatch):
    from train import checkpointing
    from train.resume import RunInterrupted

    ws.write_config("tiny", n_train_samples="160", epochs="2")
    orig = checkpointing.RunCheckpoint.on_train_batch_end

    def stop_after_step_6(self, trainer, *a, **k):
        orig(self, trainer, *a, **k)
        if trainer.global_step == 6:
            raise RunInterrupted("SIGINT at step 6")  # as the Ctrl-C handler does, after a checkpoint

    monkeypatch.setattr(checkpointing.RunCheckpoint, "on_train_batch_end", stop_after_step_6)
    assert ws.main("--config=tiny", "--no-wandb", "--save", "--seed=3") == 130
    err = capsys.readouterr().err
    cmd = err.strip().splitlines()[-1].split("continue with: ", 1)[1]
    assert "--no-wandb" in cmd and f"--save-dir={ws.saves}" in cmd and f"--log-dir={ws.logs}" in cmd and "--resume=" in cmd
    monkeypatch.setattr(checkpointing.RunCheckpoint, "on_train_batch_end", orig)
    report = ws.saves / "tiny" / "report.md"
    assert not report.exists()
    assert main.main(shlex.split(cmd)[2:]) == 0  # the printed command, as printed
    assert report.is_file() and "run" in report.read_text()


# --- small things ----------------------------------------------------------------------------
def test_saved_weights_are_readable_like_the_other_files(ws):
    old = os.umask(0o022)
    try:
        ws.write_config("tiny", n_train_samples="64")
        assert ws.main("--config=tiny", "--no-wandb", "--save") == 0
    finally:
        os.umask(old)
    (run_dir,) = ws.run_dirs()
    assert {oct(p.stat().st_mode & 0o777) for p in run_dir.iterdir()} == {"0o644"}


def test_unknown_task_names_the_data_path_file(ws, capsys, monkeypatch):
    from data.custom_files import data_path_file

    monkeypatch.delenv("HARNESS_DATA_PATH", raising=False)
    ws.write_config("tiny")
    assert ws.main("--config=tiny", "--task=nosuchtask", "--no-wandb") == 2
    err = capsys.readouterr().err
    assert str(data_path_file()) in err and len(err.strip().splitlines()) == 1


def test_flag_defaults_follow_harness_env_vars(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CONFIGS_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("HARNESS_SAVE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("HARNESS_LOG_DIR", str(tmp_path / "l"))
    args = main.build_parser().parse_args(["--config=x"])
    assert (args.configs_dir, args.save_dir, args.log_dir) == (str(tmp_path / "c"), str(tmp_path / "s"), str(tmp_path / "l"))


def test_python_without_torch_reruns_under_the_venv_or_says_how_to_get_one():
    """Simulated with a module nobody has: the venv lacks it too, so the second try stops with the fix."""
    code = "from train.venv_python import ensure_venv_python; ensure_venv_python('no_such_module_for_the_harness')"
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_REEXECED"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    if (REPO / ".venv" / "bin" / "python").exists() and Path(sys.executable).absolute() != REPO / ".venv" / "bin" / "python":
        assert lines[0].startswith("note: ") and "running this command with" in lines[0]
    assert lines[-1].startswith("error: no_such_module_for_the_harness is not installed") and "make demo" in lines[-1]
