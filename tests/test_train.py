"""End to end: main.py trains, logs, prints samples and saves a complete run."""
from __future__ import annotations

import json
import math

import torch

from train.loading import load_run
from train.trainer import lr_factor

FILES = {"model.safetensors", "tokenizer.json", "params.json", "train_stats.json", "results.json", "versions.json", "manifest.json"}


def test_plain_run_saves_every_file(ws, capsys):
    ws.write_config("tiny")
    assert ws.main("--config=tiny", "--no-wandb", "--save") == 0
    out = capsys.readouterr().out
    assert "samples after epoch 0" in out and "expected" in out
    (run_dir,) = ws.run_dirs()
    assert run_dir.relative_to(ws.saves).parts[:3] == ("tiny", "copy", "run")
    assert {p.name for p in run_dir.iterdir()} == FILES
    params = json.loads((run_dir / "params.json").read_text())
    assert set(params) >= {"data", "train", "model", "seed"} and params["model"]["dim"] == 16
    results = json.loads((run_dir / "results.json").read_text())
    assert math.isfinite(results["val_loss"]) and results["n_params"] > 0
    assert "torch" in json.loads((run_dir / "versions.json").read_text())
    assert not any(p.name.endswith(".incomplete") for p in run_dir.parent.iterdir())
    assert list(ws.logs.rglob("metrics.csv")), "the CSV log is always written"
    lm, dataset, train_stats, loaded_params = load_run(run_dir)
    assert loaded_params == params and lm.model_params.dim == 16 and len(dataset.datasets["val"]) == 32


def test_train_stats_format(ws):
    ws.write_config("tiny", hyperparams_log_freq="2")
    assert ws.main("--config=tiny", "--no-wandb", "--save") == 0
    (run_dir,) = ws.run_dirs()
    stats = json.loads((run_dir / "train_stats.json").read_text())
    assert {"stat/train_loss:main", "stat/val_loss:main", "stat/val_acc:answer", "lr", "time/tokens_per_s"} <= set(stats)
    rows = [tuple(r) for v in stats.values() for r in v]
    assert all(len(r) == 4 for r in rows)
    counters = sorted(r[2] for r in rows)
    assert counters == list(range(len(rows))), "counter numbers every recorded value once"
    for v in stats.values():
        assert [r[2] for r in v] == sorted(r[2] for r in v)
    train = stats["stat/train_loss:main"]
    batch = 32
    assert [r[0] for r in train] == list(range(len(train)))  # step before this batch's update
    assert [r[1] for r in train] == [batch * (i + 1) for i in range(len(train))]  # 256 samples / 32 = 8 batches
    assert train[-1][1] == 256


def test_copy_loss_falls_well_below_unigram_baseline(ws):
    from data.dataloader import LMDataModule
    from train.config import load_runs

    ws.write_config("learn", n_train_samples="6000", epochs="3", dim="48", n_heads="4", n_layers="2", lr="3e-3", hyperparams_log_freq="50")
    (rc,) = load_runs("learn", ws.configs)
    unigram = LMDataModule(rc.data, seed=0).unigram_entropy()
    assert ws.main("--config=learn", "--no-wandb", "--save") == 0
    (run_dir,) = ws.run_dirs()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["val_loss"] < 0.8 * unigram, (results["val_loss"], unigram)
    assert results["val"]["acc:answer"] > 0.9


def test_sweep_trains_each_combination(ws):
    ws.write_config("sw", dim="[8,16]", lr="[1e-3,3e-3]", n_train_samples="64")
    assert ws.main("--config=sw", "--no-wandb", "--save") == 0
    dirs = ws.run_dirs()
    assert len(dirs) == 4
    got = {(json.loads((d / "params.json").read_text())["model"]["dim"], json.loads((d / "params.json").read_text())["train"]["lr"]) for d in dirs}
    assert got == {(8, 1e-3), (8, 3e-3), (16, 1e-3), (16, 3e-3)}
    assert {d.parent.name for d in dirs} == {"lr=0.001,dim=8", "lr=0.003,dim=8", "lr=0.001,dim=16", "lr=0.003,dim=16"}


def test_wandb_without_network_or_key_goes_offline(ws):
    ws.write_config("tiny", n_train_samples="64")
    proc = ws.subprocess("--config=tiny", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "logging offline" in proc.stdout
    assert list(ws.logs.rglob("wandb/offline-run-*")), "wandb wrote its offline run under --log-dir"


def test_custom_transformer_trains(ws):
    ws.write_config("tiny", n_train_samples="64")
    text = (ws.configs / "tiny.txt").read_text().replace("ModelParams\n", 'ModelParams\nlayer_architecture="custom-transformer"\n')
    (ws.configs / "tiny.txt").write_text(text)
    assert ws.main("--config=tiny", "--no-wandb", "--save") == 0
    (run_dir,) = ws.run_dirs()
    lm, *_ = load_run(run_dir)
    assert lm.model_params.layer_architecture == "custom-transformer"


def test_lr_schedule_warms_up_then_decays_to_floor():
    f = [lr_factor(s, warmup=10, total=100, min_frac=0.1) for s in range(120)]
    assert f[0] == 0.1 and f[9] == 1.0
    assert all(a <= b for a, b in zip(f[:10], f[1:10]))
    assert all(a >= b for a, b in zip(f[10:100], f[11:100]))
    assert abs(f[100] - 0.1) < 1e-9 and abs(f[119] - 0.1) < 1e-9
    assert torch.tensor(f).min() >= 0.1 - 1e-9


def test_progress_bar_stays_on_but_redraws_every_few_batches():
    from train.progress import PROGRESS_BAR_REFRESH, progress_bar

    bar = progress_bar(tty=True)
    assert bar.is_enabled and bar.refresh_rate == PROGRESS_BAR_REFRESH > 1
