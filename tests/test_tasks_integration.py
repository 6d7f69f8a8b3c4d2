"""The tasks inside the harness: floors and baselines logged beside the loss, the arithmetic
final-answer metric, answer-only loss, and TART through the vector objective (train, save, load)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from data.data_params import DataParams
from data.dataloader import LMDataModule
from data.tasks.arith import final_answer_accuracy, split_problem
from data.vector_input import VectorTokenizer
from model.lm import LM
from model.model_params import ModelParams
from core.errors import UserError
from tests.conftest import torch_threads
from train.task_metrics import task_val_stats

BASE = """
DataParams
{data}

TrainParams
{train}
warmup_steps=5
n_print_samples=1
print_sample_len=20

ModelParams
dim=32
n_layers=2
n_heads=4
max_seq_len={msl}
{model}
"""


def write(ws, name: str, data: str, msl: int, train: str = "epochs=1\nbatch_size=32\nlr=3e-3", model: str = "") -> None:
    (ws.configs / f"{name}.txt").write_text(BASE.format(data=data, msl=msl, train=train, model=model))


def stats_of(ws) -> tuple[dict, dict]:
    (run_dir,) = ws.run_dirs()
    stats = json.loads((run_dir / "train_stats.json").read_text())
    return {k: v[-1][3] for k, v in stats.items()}, json.loads((run_dir / "results.json").read_text())


def test_hmm_run_logs_the_floor_next_to_the_val_loss(ws):
    data = 'task="hmm"\nn_train_samples=256\nn_val_samples=64\nn_test_samples=16\nmin_len=12\nmax_len=12\nmax_seq_len=14'
    write(ws, "hmm", data, 14)
    assert ws.main("--config=hmm", "--no-wandb", "--save") == 0
    last, results = stats_of(ws)
    dm = LMDataModule(DataParams(task="hmm", n_train_samples=256, n_val_samples=64, n_test_samples=16, min_len=12, max_len=12, max_seq_len=14), seed=0)
    assert last["stat/val_loss_floor"] == pytest.approx(dm.task_data.extras["val_stats"]["loss_floor"])
    assert last["stat/val_loss:main"] > last["stat/val_loss_floor"]  # nobody beats the Bayes-optimal predictor
    assert 0 < last["stat/val_loss_floor_obs"] < math.log(5)


class _Oracle:
    """Stands in for an LM in `final_answer_accuracy`: answers from a lookup, optionally wrong."""

    def __init__(self, samples: list[str], wrong_every: int = 0):
        self.full = {split_problem(s)[0]: s for s in samples}
        self.wrong_every = wrong_every
        self.calls = 0

    def sample(self, prompts, max_seq_len, temperature):
        assert temperature == 0  # greedy
        out = []
        for p in prompts:
            self.calls += 1
            s = self.full[p]
            out.append(s + "1" if self.wrong_every and self.calls % self.wrong_every == 0 else s)
        return out


def test_final_answer_accuracy_counts_exact_final_answers():
    dm = LMDataModule(DataParams(task="arith", n_train_samples=50, n_val_samples=100, n_test_samples=10, blotch_p=0.5, max_seq_len=64), seed=0)
    val = dm.task_data.splits["val"]
    assert final_answer_accuracy(_Oracle(val), val, 64, batch_size=7) == 1.0
    assert final_answer_accuracy(_Oracle(val, wrong_every=4), val, 64, batch_size=7) == pytest.approx(0.75)
    blotched = [split_problem(s)[0] + split_problem(s)[1] for s in val]  # skipping every step is fine
    assert final_answer_accuracy(_Oracle(blotched), val, 64) == 1.0


def test_arith_run_logs_greedy_final_answer_accuracy(ws):
    data = 'task="arith"\nn_train_samples=256\nn_val_samples=16\nn_test_samples=16\nmax_num=9\nmax_ents=2\nmax_seq_len=24\nincl_intl_prob=False\nblotch_p=0.3'
    write(ws, "arith", data, 24)
    assert ws.main("--config=arith", "--no-wandb", "--save") == 0
    last, _ = stats_of(ws)
    assert 0.0 <= last["stat/val_acc:final_answer"] <= 1.0


def test_incl_intl_prob_false_trains_on_the_solution_only():
    dp = DataParams(task="arith", n_train_samples=64, n_val_samples=8, n_test_samples=8, max_seq_len=64)
    full = LMDataModule(dp, seed=0)
    dp_sol = DataParams(**{**dp.__dict__, "incl_intl_prob": False})
    sol = LMDataModule(dp_sol, seed=0)
    b_full, b_sol = next(iter(full.val_dataloader())), next(iter(sol.val_dataloader()))
    assert "loss_mask" not in b_full and torch.equal(b_sol["loss_mask"], b_sol["answer_mask"])
    torch.manual_seed(0)
    lm = LM(ModelParams(dim=16, n_heads=2, n_layers=1, max_seq_len=64), full.tokenizer)
    with torch.no_grad():
        per_token, _, _ = lm.token_losses(b_full)
        answer = b_full["answer_mask"][:, 1:]
        expected = per_token[answer].sum() / answer.sum()
        assert lm.get_losses(b_sol)[0]["main"] == pytest.approx(expected.item(), rel=1e-5)
        assert lm.get_losses(b_full)[0]["main"] != pytest.approx(expected.item(), rel=1e-3)


def test_task_val_stats_without_a_datamodule_or_extras():
    assert task_val_stats(None, None) == {}
    dm = LMDataModule(DataParams(task="copy", n_train_samples=20, n_val_samples=4, n_test_samples=4), seed=0)
    assert task_val_stats(None, dm) == {}


# --- TART: the vector objective --------------------------------------------------------
def tart_lm(**kw) -> LM:
    torch.manual_seed(0)
    mp = dict(dim=32, n_heads=4, n_layers=2, max_seq_len=32)
    return LM(ModelParams(**{**mp, **kw}), VectorTokenizer(5, "in_context_bce"))


@pytest.mark.parametrize("arch", ["torch-transformer", "custom-transformer"])
def test_vector_lm_reads_vectors_and_is_causal(arch):
    lm = tart_lm(layer_architecture=arch).eval()
    assert isinstance(lm.embed, torch.nn.Linear) and lm.embed.in_features == 5 and lm.out.out_features == 1
    x = torch.randn(2, 12, 5)
    with torch.no_grad():
        z = lm(x)
        assert z.shape == (2, 12, 1)
        y = x.clone()
        y[:, 7:] += 1.0  # the prediction for y_3 (read at x_3, position 6) must not see y_3 or later
        assert torch.allclose(lm(y)[:, :7], z[:, :7], atol=1e-6)
    with pytest.raises(ValueError, match="vectors"):
        lm(torch.zeros(1, 4, 3))


def test_vector_lm_architectures_agree():
    a = tart_lm(layer_architecture="torch-transformer").eval()
    b = tart_lm(layer_architecture="custom-transformer").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 10, 5)
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() < 1e-5


# One-dimensional problems: the in-context solution (infer the sign of w from the context)
# emerges within a few hundred steps; larger n_dims need longer runs (configs/tasks-tart.txt).
# Runs through main.py, so it also checks the vector objective with the custom layer and RoPE.
TART = 'task="tart"\nn_train_samples=16000\nn_val_samples=200\nn_test_samples=50\nn_positions=8\nn_dims=1\nweight_multiplier=5\nmax_seq_len=16'


def test_tart_trains_beats_majority_and_logs_its_baselines(ws, monkeypatch):
    # constant lr, rotary positions (custom attention): the in-context solution appears by ~200 steps
    train = "lr=3e-3\nmin_lr_frac=1.0\nweight_decay=0.0\nepochs=2\nbatch_size=64"
    write(ws, "tart", TART, 16, train=train, model='layer_architecture="custom-transformer"\npos_encoding="rotary"')
    with torch_threads(1):  # a tiny model: one thread is fastest and leaves the other cores alone
        assert ws.main("--config=tart", "--no-wandb", "--save") == 0
    last, results = stats_of(ws)
    for name in ("logreg_acc", "logreg_acc_2nd_half", "bayes_expected_acc", "majority_acc", "bayes_entropy"):
        assert f"stat/val_{name}" in last
    assert last["stat/val_logreg_acc_2nd_half"] > last["stat/val_majority_acc_2nd_half"] + 0.1
    assert results["val"]["acc:y_2nd_half"] > last["stat/val_majority_acc_2nd_half"] + 0.1, (results, last)
    assert results["val"]["loss:main"] < math.log(2) - 0.05

    from train.loading import load_run

    (run_dir,) = ws.run_dirs()
    lm, dm, _, _ = load_run(run_dir)
    assert isinstance(lm.tokenizer, VectorTokenizer)
    from train.evaluate import evaluate

    assert evaluate(lm, dm.val_dataloader())["loss:main"] == pytest.approx(results["val"]["loss:main"], rel=1e-5)


def test_tart_datamodule_batches_and_show_sample(capsys):
    dp = DataParams(task="tart", n_train_samples=10, n_val_samples=6, n_test_samples=4, n_positions=5, n_dims=3, max_seq_len=10)
    dm = LMDataModule(dp, seed=0, batch_size=4)
    assert isinstance(dm.tokenizer, VectorTokenizer) and dm.tokenizer.input_dim == 4
    b = next(iter(dm.val_dataloader()))
    assert b["x_vectors"].shape == (4, 10, 4) and b["y"].shape == (4, 5) and b["mask"].all()
    assert torch.equal(b["x_vectors"][:, 1::2, 0], 2 * b["y"] - 1) and torch.all(b["x_vectors"][:, 0::2, 3] == 0)
    assert dm.prompts() == [] and dm.show_sample(0, "val")
    assert "x_vectors" in capsys.readouterr().out
    with pytest.raises(UserError, match="max_seq_len"):
        LMDataModule(DataParams(task="tart", n_positions=20, max_seq_len=32), seed=0)


def test_results_script_rows_and_doc_update(tmp_path):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("task_results", REPO / "scripts" / "task_results.py")
    tr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tr)
    run = {"results": {"val": {"loss:main": 1.5}, "wall_time_s": 12.0}, "last": {"stat/val_loss_floor": 1.25}, "total_s": 20.0, "steps": 100, "command": "python main.py --config=tasks-hmm --no-wandb"}
    r = tr.row("hmm", run)  # the middle cells come from data/tasks/hmm.py's @task_summary
    assert "1.2500" in r[2] and "+20.0 %" in r[4] and r[5] == "100"
    assert tr.demo_tasks() == ("arith", "hmm", "tart")
    doc = tmp_path / "tasks.md"
    doc.write_text(f"# Tasks\n\nintro\n\n{tr.BEGIN}\n{tr.END}\n\nafter\n")
    tr.update_doc(doc, {"hmm": r}, "note 1")
    other = ["tart"] + r[1:]
    tr.update_doc(doc, {"tart": other}, "note 2")  # keeps the hmm row, adds tart after it
    text = doc.read_text()
    assert text.startswith("# Tasks\n\nintro") and text.rstrip().endswith("after")
    assert text.index("| hmm |") < text.index("| tart |") and "note 2" in text and "note 1" not in text
