"""Sweep report: main.py --save writes report.md/.csv/.png; model_explorer.report rebuilds it from disk."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

import model_explorer
from tests.conftest import torch_threads
from tests.explorer_helpers import TINY_RUN

pytestmark = pytest.mark.usefixtures("one_thread")
from core.errors import UserError
from train.report import write_config_report, write_report

SWEEP = TINY_RUN.replace("dim=16", "dim=[16,24]").replace("lr=3e-3", "lr=[1e-3,3e-3]")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    import main

    root = tmp_path_factory.mktemp("sweep")
    (root / "configs").mkdir()
    (root / "configs" / "grid.txt").write_text(SWEEP)
    saves = root / "saved-models"
    args = ["--config=grid", f"--configs-dir={root / 'configs'}", f"--save-dir={saves}", f"--log-dir={root / 'logs'}", "--no-wandb", "--save"]
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("HOME", str(root / "home"))
        assert main.main(args) == 0
    return saves


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_writes_a_report_with_one_row_per_run(sweep):
    folder = sweep / "grid"
    rows = read_csv(folder / "report.csv")
    assert len(rows) == 4
    assert list(rows[0])[0] == "run" and set(list(rows[0])[1:3]) == {"dim", "lr"}, "the swept parameters come first"
    assert {(r["dim"], r["lr"]) for r in rows} == {("16", "0.001"), ("16", "0.003"), ("24", "0.001"), ("24", "0.003")}
    for r in rows:
        run_dir = folder / r["run_dir"]
        results = json.loads((run_dir / "results.json").read_text())
        params = json.loads((run_dir / "params.json").read_text())
        stats = json.loads((run_dir / "train_stats.json").read_text())
        assert str(params["model"]["dim"]) == r["dim"] and r["run"] == run_dir.name
        assert math.isclose(float(r["final_val_loss"]), results["val_loss"], rel_tol=1e-9)
        assert int(r["n_params"]) == results["n_params"] and math.isclose(float(r["wall_time_s"]), results["wall_time_s"])
        vals = [row[3] for row in stats["stat/val_loss:main"]] + [results["val_loss"]]
        assert math.isclose(float(r["best_val_loss"]), min(vals)) and float(r["best_val_loss"]) <= float(r["final_val_loss"])
        train = [row[3] for row in stats["stat/train_loss:main"]][-10:]
        assert math.isclose(float(r["final_train_loss"]), sum(train) / len(train), rel_tol=1e-9)
        assert float(r["tokens_per_s"]) > 0
    assert len({r["n_params"] for r in rows}) == 2, "dim changes the parameter count"
    md = (folder / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| 20")]
    assert len(table) == 4 and md.count("**") == 2, "one row per run, the best val loss in bold"
    png = folder / "report.png"
    assert png.stat().st_size > 10_000
    from matplotlib.image import imread

    assert imread(png).shape[:2] == (500, 800)


def test_model_explorer_report_rebuilds_the_same_table_from_disk(sweep, tmp_path):
    folder = sweep / "grid"
    original = read_csv(folder / "report.csv")
    original_md = (folder / "report.md").read_text()
    for name in ("report.csv", "report.md", "report.png"):
        (folder / name).unlink()
    rep = model_explorer.report("grid", save_dir=sweep)
    assert read_csv(folder / "report.csv") == original and (folder / "report.md").read_text() == original_md
    assert (folder / "report.png").is_file()
    assert [r["run"] for r in rep.table()] == [r["run"] for r in original] and rep.columns == list(original[0])
    moved = tmp_path / "elsewhere"  # a sweep copied from another machine: any folder works
    shutil.copytree(folder, moved)
    rep2 = model_explorer.report(moved)
    assert read_csv(moved / "report.csv") == original and len(rep2.rows) == 4


def test_single_run_and_errors(sweep, tmp_path):
    one = tmp_path / "one"
    run_dir = next(p.parent for p in (sweep / "grid").rglob("results.json"))
    shutil.copytree(run_dir, one / run_dir.name)
    write_report(one)
    rows = read_csv(one / "report.csv")
    assert len(rows) == 1 and list(rows[0])[:2] == ["run", "final_train_loss"], "nothing varies: no parameter columns"
    with pytest.raises(UserError, match="no saved runs of config 'nope'.*grid"):
        model_explorer.report("nope", save_dir=sweep)
    assert write_config_report(sweep, "nope") == {}, "main.py's call only notes it: the sweep still succeeds"
