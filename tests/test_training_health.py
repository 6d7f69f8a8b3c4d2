"""Training health stats, lr schedules, early stopping, the final test-set evaluation, and which
parameters get weight decay."""
from __future__ import annotations

import csv
import json
import math
import types
from pathlib import Path

import pytest
import torch

from tests.explorer_helpers import train_tiny_run
from train.health import adamw_last_updates, global_norm, layer_of, update_ratios
from train.schedules import lr_factor

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = """
DataParams
task="copy"
n_train_samples=128
n_val_samples=16
n_test_samples=24
min_len=2
max_len=5
alphabet="abcd"
max_seq_len=16

TrainParams
epochs=30
batch_size=16
lr={lr}
warmup_steps=2
hyperparams_log_freq=2
val_check_interval=2
n_print_samples=0
grad_clip=0.001
{extra}

ModelParams
layer_architecture="custom-transformer"
dim=16
n_layers=2
n_heads=2
max_seq_len=16
"""


def _tiny_lm(n_layers: int = 2):
    from data.tokenizer import CharTokenizer
    from model.lm import LM
    from model.model_params import ModelParams

    torch.manual_seed(0)
    return LM(ModelParams(dim=16, n_layers=n_layers, n_heads=2, max_seq_len=8), CharTokenizer.from_texts(["abcd"]))


def _rows(run: Path, name: str) -> list:
    return json.loads((run / "train_stats.json").read_text()).get(name, [])


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """lr so small the val loss can't improve by min_delta: early stopping ends it after `patience` validations."""
    root = tmp_path_factory.mktemp("es")
    extra = 'early_stop_stat="stat/val_loss:main"\nearly_stop_patience=2\nearly_stop_min_delta=0.01\nlr_schedule="wsd"'
    return train_tiny_run(root, "es", RUN.format(lr=1e-6, extra=extra)), root


# --- health -------------------------------------------------------------------------------
def test_global_norm_is_the_norm_of_everything_together():
    ts = [torch.randn(3, 4), torch.randn(5), torch.randn(2, 2, 2)]
    assert torch.allclose(global_norm(ts), torch.cat([t.reshape(-1) for t in ts]).norm())
    assert global_norm([]) is None


@pytest.mark.parametrize("fused", [False, True])
def test_update_ratio_from_adamw_state_equals_the_real_update(fused):
    from train.trainer import fused_adamw_supported

    if fused and not fused_adamw_supported(torch.device("cpu")):
        pytest.skip("this torch has no fused CPU AdamW")
    lm = _tiny_lm()
    opt = torch.optim.AdamW([{"params": [p for p in lm.parameters() if p.dim() >= 2], "weight_decay": 0.1},
                             {"params": [p for p in lm.parameters() if p.dim() < 2], "weight_decay": 0.0}], lr=1e-2, fused=fused)
    batch = {"x_indices": torch.randint(3, lm.n_tokens, (4, 8)), "mask": torch.ones(4, 8, dtype=torch.bool)}
    for step in range(3):
        for g in opt.param_groups:
            g["lr"] = 1e-2 * (step + 1)  # a schedule: the lr of the last step is what counts
        before = {p: p.detach().clone() for p in lm.parameters()}
        opt.zero_grad()
        lm.get_losses(batch)[0]["main"].backward()
        opt.step()
    ups = adamw_last_updates(opt, [g["lr"] for g in opt.param_groups])
    for p in lm.parameters():
        assert torch.allclose(ups[p], before[p] - p.detach(), rtol=1e-3, atol=1e-7)
    ratios = update_ratios(list(lm.named_parameters()), ups)
    assert set(ratios) == {"embed", "pos_enc.embedding", "layer0", "layer1", "decoder.norm"}
    w0 = [(n, p) for n, p in lm.named_parameters() if layer_of(n) == "layer0"]
    real = global_norm([before[p] - p.detach() for _, p in w0]) / global_norm([p for _, p in w0])
    assert math.isclose(float(ratios["layer0"]), float(real), rel_tol=1e-3)


def test_health_stats_reach_train_stats_and_the_csv_on_the_logged_steps(stopped_run):
    run, root = stopped_run
    grad, weight = _rows(run, "health/grad_norm"), _rows(run, "health/weight_norm")
    assert grad and [r[0] for r in grad] == [r[0] for r in weight]
    assert all((r[0] + 1) % 2 == 0 for r in grad)  # every log_every_n_steps (= hyperparams_log_freq = 2) steps
    assert all(r[3] > 0.001 * 10 for r in grad)  # before clipping (grad_clip=0.001)
    n_val = len(_rows(run, "stat/val_loss:main"))
    for layer in ("layer0", "layer1", "embed", "pos_enc.embedding"):
        rows = _rows(run, f"health/update_ratio:{layer}")
        assert len(rows) == n_val and all(0 < r[3] < 1e-3 for r in rows)  # lr 1e-6: tiny updates
    (metrics,) = (root / "logs").rglob("metrics.csv")
    with open(metrics) as f:
        csv_rows = list(csv.DictReader(f))
    logged = [float(r["health/grad_norm"]) for r in csv_rows if r.get("health/grad_norm")]
    assert logged == pytest.approx([r[3] for r in grad], rel=1e-5)
    assert len([r for r in csv_rows if r.get("health/update_ratio:layer0")]) == n_val


def test_log_health_false_records_none(tmp_path):
    run = train_tiny_run(tmp_path, "quiet", RUN.format(lr=1e-3, extra="log_health=False\nepochs=1").replace("epochs=30\n", ""))
    assert not [k for k in json.loads((run / "train_stats.json").read_text()) if k.startswith("health/")]


# --- schedules ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cosine", "linear", "constant", "wsd"])
def test_step_schedules_warm_up_then_follow_their_shape(kind):
    f = [lr_factor(s, warmup=10, total=100, min_frac=0.1, kind=kind, decay_frac=0.2) for s in range(100)]
    assert f[:10] == [(i + 1) / 10 for i in range(10)]
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))  # never rises after warm-up
    if kind == "constant":
        assert set(f[10:]) == {1.0}
    elif kind == "wsd":
        assert set(f[10:80]) == {1.0} and f[80] == 1.0 and f[99] == pytest.approx(0.1 + 0.9 / 20) and f[85] < 1
    else:
        assert f[99] == pytest.approx(0.1, abs=0.02) and f[55] < 0.9
    if kind == "linear":
        assert f[55] == pytest.approx(1 - 0.9 * 45 / 90)


def test_plateau_halves_lr_when_val_loss_stalls(tmp_path):
    extra = 'lr_schedule="plateau"\nplateau_patience=0\nplateau_factor=0.5\nmin_lr_frac=0.2\nepochs=3'
    run = train_tiny_run(tmp_path, "plat", RUN.format(lr=1e-6, extra=extra).replace("epochs=30\n", ""))
    lrs = [r[3] for r in _rows(run, "lr")]
    assert lrs[0] == pytest.approx(1e-6)  # no warm-up with plateau
    assert pytest.approx(5e-7) in lrs and min(lrs) == pytest.approx(2e-7)  # halves, never below min_lr_frac * lr


# --- early stopping and the test set --------------------------------------------------------
def test_early_stopping_ends_the_run_and_the_test_loss_is_recorded(stopped_run):
    from train.report import load_row

    run, root = stopped_run
    results = json.loads((run / "results.json").read_text())
    assert "stat/val_loss:main did not improve for 2 validations" in results["stopped_early"]
    assert results["steps"] == 2 * 3  # validations at steps 2, 4, 6: the first sets the best, two more without improvement
    assert results["test"]["loss:main"] == results["test_loss"] and results["test_loss"] != results["val_loss"]
    assert _rows(run, "stat/test_loss:main")[0][3] == pytest.approx(results["test_loss"])
    row = load_row(run)
    assert row.metrics["test_loss"] == results["test_loss"]
    with open(root / "saved-models" / "es" / "report.csv") as f:
        (r,) = list(csv.DictReader(f))
    assert float(r["test_loss"]) == pytest.approx(results["test_loss"])


def test_early_stop_stat_mistakes_are_one_line_errors(ws, capsys):
    ws.write_config("bad", text=RUN.format(lr=1e-3, extra='early_stop_stat="stat/train_loss:main"'))
    assert ws.main("--config=bad", "--no-wandb") == 2
    assert "early_stop_stat='stat/train_loss:main' is not a validation stat" in capsys.readouterr().err
    ws.write_config("bad2", text=RUN.format(lr=1e-3, extra='early_stop_stat="stat/val_nope"\nepochs=1').replace("epochs=30\n", ""))
    assert ws.main("--config=bad2", "--no-wandb") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "early_stop_stat='stat/val_nope' is not logged at validation; validation stats: " in err[-1] and "stat/val_loss:main" in err[-1]


# --- weight decay -------------------------------------------------------------------------
def test_weight_decay_skips_position_embeddings_biases_and_norms():
    from train.train_params import TrainParams
    from train.trainer import LMTrainer

    lm = _tiny_lm()
    module = LMTrainer(lm, TrainParams(weight_decay=0.1))
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=10, precision="32-true", world_size=1)
    try:
        opt = module.configure_optimizers()["optimizer"]
    finally:
        module._trainer = None
    names = {id(p): n for n, p in lm.named_parameters()}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert "pos_enc.embedding.weight" in plain and "embed.weight" in decayed
    assert "decoder.layers.0.mlp.linear1.weight" in decayed and "decoder.layers.0.mlp.linear1.bias" in plain
    assert not [n for n in decayed if "norm" in n or n.endswith("bias")]


def test_plateau_and_early_stopping_resume_exactly(ws, monkeypatch, capsys):
    """Resumed from checkpoints taken after validations, a plateau run with early stopping ends as
    the uninterrupted one: same weights, same stats (lr drops included), same stopping step."""
    import shutil

    from tests.test_resume import assert_same_run, config
    from train import checkpointing

    extra = ('lr_schedule="plateau"\nplateau_patience=0\nmin_lr_frac=0.01\n'
             'early_stop_stat="stat/val_loss:main"\nearly_stop_patience=3\nearly_stop_min_delta=0.05\n')
    ws.write_config("pr", config(epochs=6, lr="1e-6", every=100, val="6").replace("TrainParams\n", "TrainParams\n" + extra))
    snaps: list[Path] = []
    save = checkpointing.SafeCheckpointIO.save_checkpoint

    def snapshot(self, ckpt, path, storage_options=None):
        save(self, ckpt, path, storage_options)
        snaps.append(ws.root / "snaps" / f"{len(snaps):02d}")
        shutil.copytree(Path(path).parent.parent, snaps[-1])

    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", snapshot)
    assert ws.main("--config=pr", "--save", "--no-wandb") == 0
    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", save)
    (ref,) = ws.run_dirs()
    results = json.loads((ref / "results.json").read_text())
    assert results["stopped_early"] and len(set(r[3] for r in _rows(ref, "lr"))) >= 2  # it stopped early and the lr dropped
    for snap in (snaps[1], snaps[len(snaps) // 2]):
        assert ws.main(f"--resume={snap}", "--no-wandb") == 0, snap.name
        assert_same_run(snap, ref)
        assert json.loads((snap / "results.json").read_text())["steps"] == results["steps"]
