"""Every model_explorer call on one tiny saved run per task kind, loaded from a copy of its folder.

A saved run must stand alone: its LM, tokenizer, params and train_stats load from the folder
only; the dataset is rebuilt when a call first needs it, and when its source is gone that call
says so in one line.
"""
from __future__ import annotations

import json
import shutil

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

import model_explorer
from data.saved_datamodule import SavedRunDataModule
from tests.task_runs import KINDS, train_kind
from core.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=KINDS)
def copied(request, tmp_path_factory):
    """(kind, folder holding a copy of the run, the copied run folder, the original root)."""
    kind = request.param
    root = tmp_path_factory.mktemp(f"orig-{kind}")
    with pytest.MonkeyPatch.context() as mp:
        run = train_kind(root, kind, mp)
    elsewhere = tmp_path_factory.mktemp(f"copy-{kind}")
    dest = elsewhere / "moved" / run.name
    shutil.copytree(run, dest)
    return kind, elsewhere, dest, root


def _data_env(monkeypatch, kind, root):
    if kind == "text":
        monkeypatch.setenv("HARNESS_DATA_PATH", str(root / "data"))


def test_every_explorer_call_on_every_task_kind(copied, monkeypatch, tmp_path, capsys):
    kind, elsewhere, run, root = copied
    _data_env(monkeypatch, kind, root)
    lm, dataset, stats, params = model_explorer.get_model_by_path(run)
    assert isinstance(dataset, SavedRunDataModule) and not dataset.is_built  # nothing read from the data yet
    assert params["data"]["task"] == params.data_params.task and "stat/val_loss:main" in stats

    lm2, *_ = model_explorer.get_model_by_timestamp(run.name, save_dir=elsewhere)
    assert all(torch.equal(a, b) for a, b in zip(lm.state_dict().values(), lm2.state_dict().values()))
    assert [r.path for r in model_explorer.list_runs(elsewhere)] == [run] and model_explorer.find_run(run.name, elsewhere) == run

    rep = model_explorer.verify_stable_load(run)
    assert rep["forward_deterministic"] and "stable load ok" in capsys.readouterr().out
    assert not dataset.is_built  # verify_stable_load loaded a copy of its own
    assert dataset.show_sample(0) and dataset.is_built
    x = model_explorer.model_input(dataset.collate([dataset.datasets["val"][0]]))[0]
    out, attns = model_explorer.show_lm_attns(lm, x, folder_name="a", attentions_dir=tmp_path, show=False)
    assert attns.shape[:3] == (1, 1, 2) and (tmp_path / "a" / "layer0_head0.png").is_file()
    assert torch.allclose(attns.sum(-1), torch.ones(()))  # rows of attention patterns sum to 1

    series = model_explorer.plot_metrics(run, "stat/val_loss:main", filename="v", metrics_dir=tmp_path, show=False)
    assert (tmp_path / "v.png").is_file() and len(series["stat/val_loss:main"][1]) >= 1
    report = model_explorer.report(elsewhere)
    assert len(report.rows) == 1 and (elsewhere / "report.md").is_file()

    if kind == "tart":  # no tokens: the token-level calls refuse in one line
        for call in (lambda: lm.perplexities(dataset.val_dataloader(4)), lambda: lm.sample("")):
            with pytest.raises(ValueError, match="reads vectors") as e:
                call()
            assert "\n" not in str(e.value)
    else:
        mean, *_ = lm.perplexities(dataset.val_dataloader(4), before_exp=True)
        assert abs(mean - json.loads((run / "results.json").read_text())["val_loss"]) < 1e-4
        assert isinstance(lm.sample("", max_seq_len=6, temperature=0), str)


@pytest.mark.parametrize("copied", ["text"], indirect=True)  # synthetic tasks regenerate their data anywhere
def test_a_copied_run_loads_without_its_data(copied, monkeypatch, tmp_path):
    kind, _, run, root = copied
    monkeypatch.setenv("HARNESS_DATA_PATH", str(tmp_path / "no-data-here"))
    (tmp_path / "no-data-here").mkdir()
    lm, dataset, stats, params = model_explorer.get_model_by_path(run)  # weights, tokenizer, params, stats: all from the folder
    assert lm.tokenizer.decode(lm.tokenizer.encode("hello", add_bos=False)) == "hello" and params.data_params.task == "mytext"
    assert stats["stat/val_loss:main"]
    with pytest.raises(UserError, match=r"the data of run .* \(task 'mytext'\) can't be rebuilt here: unknown task 'mytext'.*load without it") as e:
        dataset.val_dataloader()
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="can't be rebuilt here"):
        model_explorer.verify_stable_load(run)
    _data_env(monkeypatch, kind, root)  # the data is back: the same object builds it now
    assert len(dataset.datasets["val"]) > 0 and dataset.is_built
