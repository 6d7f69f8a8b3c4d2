"""Checkpoints over training: the schedule, what a run writes and keeps, loading and looking across them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import model_explorer as me
from tests.conftest import TINY, Workspace
from core.errors import UserError
from train.snapshots import FOLDER, make_plan, planned_steps, thin_log_evenly
from train.train_params import TrainParams

pytestmark = pytest.mark.usefixtures("one_thread")

SNAP = TINY.replace("n_print_samples=1", "n_print_samples=0").replace("epochs=1", "epochs=2") + """
"""  # 256 samples / batch 32 = 8 steps per epoch, 16 in all


def snap_config(ws: Workspace, name: str = "snap", **train: str) -> None:
    """SNAP with TrainParams keys set (replaced where SNAP has them, else added)."""
    lines = [ln for ln in SNAP.splitlines() if ln.split("=", 1)[0] not in train]
    i = lines.index("TrainParams") + 1
    ws.write_config(name, "\n".join(lines[:i] + [f"{k}={v}" for k, v in train.items()] + lines[i:]))


# --- the schedule -------------------------------------------------------------------------
def test_planned_steps_log_spaced_every_n_and_the_final_step():
    assert planned_steps(100, log_spaced=True) == [0, 1, 2, 4, 8, 16, 32, 64, 100]
    assert planned_steps(100, every_n_steps=30) == [30, 60, 90, 100]
    assert planned_steps(10, every_n_steps=4, log_spaced=True) == [0, 1, 2, 4, 8, 10]
    assert planned_steps(7) == [7]


def test_thinning_keeps_the_ends_and_spreads_evenly_in_log_step():
    steps = list(range(0, 10001))
    kept = thin_log_evenly(steps, 9)
    assert len(kept) == 9 and kept[0] == 0 and kept[-1] == 10000
    gaps = [math.log1p(b) - math.log1p(a) for a, b in zip(kept, kept[1:])]
    assert max(gaps) - min(gaps) < 0.2 * max(gaps)  # even in log space, not in steps
    dense = thin_log_evenly(planned_steps(1000, every_n_steps=1, log_spaced=True), 20)
    assert len(dense) == 20 and len(set(dense)) == 20
    assert thin_log_evenly([3, 5], 9) == [3, 5] and thin_log_evenly([1, 2, 3], 1) == [3]


def test_limits_by_count_and_by_disk_say_what_they_kept():
    tp = TrainParams(snapshot_log_spaced=True, snapshot_every_n_samples=100, snapshot_max_count=5)
    plan = make_plan(tp, total_steps=1000, global_batch=32, bytes_each=1 << 20)
    assert len(plan.steps) == 5 and plan.planned > 5 and plan.steps[0] == 0 and plan.steps[-1] == 1000
    assert "5 of" in plan.describe() and "snapshot_max_count=5" in plan.describe()
    by_disk = make_plan(TrainParams(snapshot_every_n_steps=10, snapshot_max_mb=3.5), 1000, 32, 1 << 20)
    assert len(by_disk.steps) == 3 and "snapshot_max_mb=3.5 holds 3" in by_disk.describe()
    samples = make_plan(TrainParams(snapshot_every_n_samples=100), 20, 32, 1000)  # 100 samples -> every 4 steps of 32
    assert samples.steps == [4, 8, 12, 16, 20]
    both = make_plan(TrainParams(snapshot_every_n_samples=100, snapshot_every_n_steps=6), 20, 32, 1000)
    assert both.steps == [4, 6, 8, 12, 16, 18, 20]


def test_fsdp_with_snapshots_is_refused_before_training():
    from data.data_params import DataParams
    from model.model_params import ModelParams
    from train.validate import run_problem

    msg = run_problem(DataParams(), TrainParams(snapshot_log_spaced=True, strategy="fsdp"), ModelParams())
    assert msg and "fsdp" in msg and "snapshot" in msg
    assert run_problem(DataParams(), TrainParams(strategy="fsdp"), ModelParams()) is None


# --- a run with them on -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def snap_run(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("snap"))
    snap_config(ws, snapshot_log_spaced="True", snapshot_every_n_steps="6")
    import contextlib
    import io

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("WANDB_MODE", "disabled")
        assert ws.main("--config=snap", "--save", "--no-wandb") == 0
    (run,) = ws.run_dirs()
    return ws, run, out.getvalue()


def test_a_run_keeps_its_checkpoints_in_the_manifest_and_records_their_size(snap_run):
    ws, run, out = snap_run
    ids = me.checkpoint_ids(run)
    assert ids == [0, 32, 64, 128, 192, 256, 384, 512]  # steps 0 1 2 4 6 8 12 16 (batch 32)
    files = sorted((run / FOLDER).glob("*.safetensors"))
    assert len(files) == len(ids)
    manifest = json.loads((run / "manifest.json").read_text())
    assert all(f"{FOLDER}/{n}.safetensors" in manifest for n in ids)
    kept = json.loads((run / "results.json").read_text())["checkpoints_over_training"]
    assert kept["count"] == 8 and kept["n_samples"] == ids and kept["bytes"] == sum(f.stat().st_size for f in files)
    assert "checkpoints over training: 8 planned" in out and "8 kept in" in out
    final, last = load_file(run / "model.safetensors"), load_file(run / FOLDER / "512.safetensors")
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)  # the final weights are one of them
    first = load_file(run / FOLDER / "0.safetensors")
    assert not all(torch.equal(first[k], final[k]) for k in final)
    index = json.loads((run / FOLDER / "index.json").read_text())
    assert [e["step"] for e in index] == [0, 1, 2, 4, 6, 8, 12, 16]
    assert not list((run / FOLDER).glob(".*")), "no temporary files left behind"


def test_get_model_by_timestamp_loads_a_checkpoint_or_names_the_ones_that_exist(snap_run):
    ws, run, _ = snap_run
    lm0, dataset, stats, params = me.get_model_by_timestamp(run.name, save_dir=ws.saves, checkpoint=0)
    lm_final, *_ = me.get_model_by_path(run, checkpoint="final")
    plain, *_ = me.get_model_by_path(run)
    x = dataset.val_dataloader(8).__iter__().__next__()["x_indices"]
    with torch.no_grad():
        assert torch.equal(lm_final(x), plain(x)) and not torch.allclose(lm0(x), plain(x))
        mid, *_ = me.get_model_by_path(run, checkpoint=192)
        assert torch.equal(mid(x), mid(x))
    assert lm0.n_samples_seen == 0 and lm_final.n_samples_seen == 512 and mid.n_samples_seen == 192
    with pytest.raises(UserError) as e:
        me.get_model_by_timestamp(run.name, save_dir=ws.saves, checkpoint=100)
    msg = str(e.value)
    assert "\n" not in msg and "no checkpoint 100" in msg and "0, 32, 64, 128, 192, 256, 384, 512" in msg and "'final'" in msg


def test_a_damaged_checkpoint_is_refused_by_name(snap_run, tmp_path):
    import shutil

    _, run, _ = snap_run
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    with open(copy / FOLDER / "128.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\0\0\1")
    with pytest.raises(UserError, match="128.safetensors does not match"):
        me.get_model_by_path(copy, checkpoint=128)
    me.get_model_by_path(copy, checkpoint=64)  # the others still load


def test_all_checkpoints_load_lazily_in_order(snap_run, monkeypatch):
    import dynamics

    _, run, _ = snap_run
    loads = []
    real = dynamics._with_weights
    monkeypatch.setattr(dynamics, "_with_weights", lambda like, path: loads.append(path.name) or real(like, path))
    cps = me.get_all_checkpoints_by_timestamp(run)
    assert len(cps) == 8 and loads == []
    it = iter(cps)
    n, lm = next(it)
    assert n == 0 and loads == ["0.safetensors"] and lm.n_samples_seen == 0
    assert [n for n, _ in cps] == me.checkpoint_ids(run) and len(loads) == 9


def test_over_checkpoints_builds_a_table_and_plots_it(snap_run, tmp_path, capsys):
    _, run, _ = snap_run
    table = me.over_checkpoints(run, lambda lm, ds: lm.perplexities(ds.val_dataloader(16), before_exp=True)[0], name="val_loss")
    assert table.column("n_samples") == me.checkpoint_ids(run) and table.column("step") == [0, 1, 2, 4, 6, 8, 12, 16]
    losses = table.column("val_loss")
    assert losses[-1] < losses[0] - 0.1  # the model learned: loss falls across checkpoints
    results = json.loads((run / "results.json").read_text())
    assert losses[-1] == pytest.approx(results["val_loss"], rel=1e-5)  # the last checkpoint is the final model
    assert "100%" in capsys.readouterr().err  # the progress bar
    scores = me.over_checkpoints(run, lambda lm: {k: v.max().item() for k, v in me.head_scores(lm, seq_len=7).items()}, checkpoints=[0, 512], progress=False)
    assert scores.columns == ["n_samples", "step", "previous_token", "duplicate_token", "induction"] and len(scores) == 2
    fig = me.plot_over_checkpoints(table, "val_loss", filename="vl", metrics_dir=tmp_path, show=False)
    assert (tmp_path / "vl.png").stat().st_size > 0 and fig.axes[0].get_xscale() == "symlog"
    assert fig.axes[0].lines[0].get_xdata().tolist() == table.column("n_samples")
    assert (table.to_csv(tmp_path / "t.csv")).read_text().splitlines()[0] == "n_samples,step,val_loss"
    with pytest.raises(UserError, match="no column 'nope'"):
        me.plot_over_checkpoints(table, "nope", show=False)


def test_head_progress_has_one_panel_per_checkpoint_and_attns_are_titled(snap_run, tmp_path):
    _, run, _ = snap_run
    fig, patterns = me.show_head_progress(run, "abc>abc", layer=0, head=1, folder_name="prog", attentions_dir=tmp_path, show=False)
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == [f"after {n:,} samples" for n in me.checkpoint_ids(run)]
    assert patterns.shape == (8, 8, 8) and torch.allclose(patterns.sum(-1), torch.ones(8, 8))
    assert (tmp_path / "prog" / "progress_layer0_head1.png").is_file()
    with pytest.raises(UserError, match="no layer 3, head 0"):
        me.show_head_progress(run, "abc", layer=3, head=0, show=False)

    import matplotlib.pyplot as plt

    lm, *_ = me.get_model_by_path(run, checkpoint=128)
    shown = []
    real = plt.Figure.savefig
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plt.Figure, "savefig", lambda self, *a, **k: shown.append(self.axes[0].get_title()) or real(self, *a, **k))
        me.show_lm_attns(lm, "abc>abc", layers=[0], heads=[0], folder_name="t", attentions_dir=tmp_path, show=False)
        me.show_lm_attns(lm, "abc>abc", layers=[0], heads=[0], folder_name="t", attentions_dir=tmp_path, show=False, checkpoint=64)
    assert shown == ["layer 0, head 0, after 128 samples", "layer 0, head 0, after 64 samples"]


# --- with the rest of the harness ---------------------------------------------------------------------
def test_a_run_without_snapshots_says_how_to_get_them(ws: Workspace):
    ws.write_config("plain", SNAP.replace("epochs=2", "epochs=1"))
    assert ws.main("--config=plain", "--save", "--no-wandb") == 0
    (run,) = ws.run_dirs()
    assert me.checkpoint_ids(run) == [] and not (run / FOLDER).exists()
    assert "checkpoints_over_training" not in json.loads((run / "results.json").read_text())
    with pytest.raises(UserError, match="no checkpoints over training.*snapshot_log_spaced=True"):
        me.get_all_checkpoints_by_timestamp(run)
    me.get_model_by_path(run, checkpoint="final")


def test_limit_unsaved_run_and_sweep_report(ws: Workspace, capsys):
    """A count limit thins and says so; without --save they stay in the log folder; a sweep's report still works."""
    snap_config(ws, "sw", snapshot_every_n_steps="1", snapshot_max_count="4", lr="[1e-3,3e-3]")
    assert ws.main("--config=sw", "--save", "--no-wandb") == 0
    out = capsys.readouterr().out
    assert out.count("4 of 16 planned, thinned evenly in log(step) (snapshot_max_count=4)") == 2
    runs = ws.run_dirs()
    assert len(runs) == 2 and all(len(me.checkpoint_ids(r)) == 4 for r in runs)
    assert [e["step"] for e in json.loads((runs[0] / FOLDER / "index.json").read_text())] == thin_log_evenly(list(range(1, 17)), 4)
    import csv

    rows = list(csv.DictReader(open(ws.saves / "sw" / "report.csv")))
    assert len(rows) == 2 and all(float(r["final_val_loss"]) > 0 for r in rows) and (ws.saves / "sw" / "report.png").is_file()

    snap_config(ws, "nosave", snapshot_log_spaced="True")
    assert ws.main("--config=nosave", "--no-wandb") == 0
    (folder,) = [p for p in ws.logs.rglob(FOLDER) if "nosave" in p.parts]
    assert sorted(int(p.stem) for p in folder.glob("*.safetensors")) == [0, 32, 64, 128, 256, 512]
    assert not (folder.parent / "checkpoints").exists()
