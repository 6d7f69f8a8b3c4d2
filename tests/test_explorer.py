"""model_explorer on a freshly trained tiny run: reload, verify, plot, attention, perplexities."""
from __future__ import annotations

import json
import math
import shutil

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import model_explorer
from model.lm import LM
from tests.explorer_helpers import train_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")
from core.errors import UserError
from train.evaluate import evaluate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer")
    run_dir = train_tiny_run(root)
    return run_dir, root / "saved-models"


def test_get_model_by_timestamp_and_by_path(run, monkeypatch):
    run_dir, saves = run
    lm, dataset, train_stats, params = model_explorer.get_model_by_timestamp(run_dir.name, save_dir=saves)
    assert isinstance(lm, LM) and not lm.training
    assert params == json.loads((run_dir / "params.json").read_text()) and params["model"]["dim"] == 16
    assert len(dataset.datasets["val"]) == 40 and dataset.show_sample(1)
    assert {"stat/train_loss:main", "stat/val_loss:main", "lr"} <= set(train_stats)
    assert all(len(r) == 4 for r in train_stats["stat/val_loss:main"]) and len(train_stats["stat/val_loss:main"]) == 2
    lm2, *_ = model_explorer.get_model_by_path(run_dir)
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), lm2.state_dict().values()))
    monkeypatch.setenv("HARNESS_SAVE_DIR", str(saves))  # the save dir from the environment
    assert model_explorer.find_run(run_dir.name) == run_dir
    assert model_explorer.find_run(run_dir.name[:16]) == run_dir  # a unique prefix is enough
    assert [r.path for r in model_explorer.list_runs()] == [run_dir]


def test_unknown_and_ambiguous_timestamps_are_clear_errors(run, tmp_path):
    run_dir, saves = run
    with pytest.raises(UserError, match=f"no run with timestamp '1999-01-01--00-00-00'.*nearest: {run_dir.name}"):
        model_explorer.get_model_by_timestamp("1999-01-01--00-00-00", save_dir=saves)
    with pytest.raises(UserError, match="no saved runs"):
        model_explorer.get_model_by_timestamp(run_dir.name, save_dir=tmp_path / "empty")
    two = tmp_path / "two"
    shutil.copytree(run_dir, two / "a" / run_dir.name)
    shutil.copytree(run_dir, two / "b" / run_dir.name)
    with pytest.raises(UserError, match=r"matches 2 runs.*/a/.*/b/.*get_model_by_path"):
        model_explorer.get_model_by_timestamp(run_dir.name, save_dir=two)


def test_verify_stable_load_passes_on_a_good_run(run, capsys):
    run_dir, saves = run
    rep = model_explorer.verify_stable_load(run_dir.name, save_dir=saves)
    saved = json.loads((run_dir / "results.json").read_text())["val_loss"]
    assert math.isclose(rep["reloaded_val"]["loss:main"], saved, rel_tol=1e-6)
    assert rep["forward_deterministic"] and rep["tokenizer_round_trip"]
    assert "stable load ok" in capsys.readouterr().out


def test_verify_stable_load_fails_on_altered_weights(run, tmp_path):
    from safetensors.torch import save_model

    from train.saving import WEIGHTS, write_manifest

    run_dir, _ = run
    bad = tmp_path / "saves" / "x" / run_dir.name
    shutil.copytree(run_dir, bad)
    lm, *_ = model_explorer.get_model_by_path(bad)
    with torch.no_grad():
        torch.manual_seed(0)
        lm.embed.weight.add_(0.05 * torch.randn_like(lm.embed.weight))
    save_model(lm, str(bad / WEIGHTS))
    with pytest.raises(UserError, match="altered"):  # the manifest notices first
        model_explorer.verify_stable_load(bad)
    write_manifest(bad)  # re-sign it: now only the behaviour check can notice
    with pytest.raises(model_explorer.UnstableLoadError, match=r"val loss:main was .* when saved but is"):
        model_explorer.verify_stable_load(run_dir.name, save_dir=tmp_path / "saves")


def test_plot_metrics(run, tmp_path):
    run_dir, saves = run
    stats = json.loads((run_dir / "train_stats.json").read_text())
    series = model_explorer.plot_metrics(run_dir.name, "stat/val_loss:main", filename="val", save_dir=saves, metrics_dir=tmp_path)
    assert series == {"stat/val_loss:main": ([r[1] for r in stats["stat/val_loss:main"]], [r[3] for r in stats["stat/val_loss:main"]])}
    assert series["stat/val_loss:main"][0] == [256, 512]  # x = samples trained
    assert (tmp_path / "val.png").stat().st_size > 5000
    other = tmp_path / "copy" / run_dir.name.replace("--", "--x")
    shutil.copytree(run_dir, other)
    several = model_explorer.plot_metrics([run_dir, other], ["stat/val_loss:main", "stat/train_loss:main"], save_dir=saves, show=False)
    assert len(several) == 4 and len(next(iter(v for k, v in several.items() if "train_loss" in k))[0]) == len(stats["stat/train_loss:main"])
    with pytest.raises(UserError, match=r"no metric 'stat/val_los'; available: .*stat/val_loss:main"):
        model_explorer.plot_metrics(run_dir.name, "stat/val_los", save_dir=saves)


@pytest.mark.parametrize("arch", ["custom-transformer", "torch-transformer"])
def test_show_lm_attns(run, tmp_path, arch):
    from dataclasses import replace

    run_dir, _ = run
    lm, *_ = model_explorer.get_model_by_path(run_dir)
    if arch == "torch-transformer":  # same weights in torch's own layer
        other = LM(replace(lm.model_params, layer_architecture=arch), lm.tokenizer).eval()
        other.load_state_dict(lm.state_dict())
        lm = other
    seq = "abc>abc"
    ids = lm.tokenizer(seq)
    out, attns = model_explorer.show_lm_attns(lm, seq, layers=[1], heads=[0, 1], folder_name="demo", attentions_dir=tmp_path)
    n = len(ids)
    assert out.shape == (1, n, lm.n_tokens) and attns.shape == (1, 2, 2, n, n)
    with torch.no_grad():
        assert torch.allclose(out, lm(seq), atol=1e-6)
        assert torch.allclose(attns, lm(seq, get_attns=True)["attns"], atol=1e-6)
    assert torch.allclose(attns.sum(-1), torch.ones(1, 2, 2, n), atol=1e-5) and torch.all(attns.triu(1) == 0)
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["layer1_head0.png", "layer1_head1.png"]
    out2, attns2 = model_explorer.show_lm_attns(lm, ids, show=False)  # ids in, nothing saved
    assert torch.allclose(attns2, attns, atol=1e-6)
    with pytest.raises(ValueError, match="no layer 5"):
        model_explorer.show_lm_attns(lm, seq, layers=[5])


def test_perplexities_on_a_dataloader_and_on_strings(run):
    run_dir, _ = run
    lm, dataset, *_ = model_explorer.get_model_by_path(run_dir)
    val_loss = evaluate(lm, dataset.val_dataloader())["loss:main"]
    mean_l, max_l, min_l, n, per_token = lm.perplexities(dataset.val_dataloader(7), per_token=True, before_exp=True)
    assert math.isclose(mean_l, val_loss, rel_tol=1e-6), "mean CE over a dataloader is the val loss"
    masks = [b.get("mask", torch.ones_like(b["x_indices"], dtype=torch.bool))[:, 1:] for b in dataset.val_dataloader(7)]  # no mask: nothing padded
    assert n == sum(int(m.sum()) for m in masks)
    width = max(m.shape[1] for m in masks)
    assert per_token.shape == (40, width)
    real = per_token != -1
    assert int(real.sum()) == n and math.isclose(float(per_token[real].max()), max_l, rel_tol=1e-5)
    assert math.isclose(float(per_token[real].double().mean()), mean_l, rel_tol=1e-5)
    mean_p, max_p, min_p, n2, none = lm.perplexities(dataset.val_dataloader(16))
    assert n2 == n and none == [] and math.isclose(mean_p, math.exp(mean_l), rel_tol=1e-6)
    assert math.isclose(max_p, math.exp(max_l), rel_tol=1e-5) and math.isclose(min_p, math.exp(min_l), rel_tol=1e-5)
    streamed = lm.perplexities(b for b in dataset.val_dataloader(5))  # any iterable of batches, consumed lazily
    assert math.isclose(streamed[0], mean_p, rel_tol=1e-6)
    _, _, _, n3, pt = lm.perplexities(["abc>abc", "a>a"], per_token=True, dummy_res=-7)
    assert n3 == 7 + 3 and pt.shape == (2, 7) and (pt[1, 3:] == -7).all() and (pt[:, :3] > 1).all()
