"""Synthetic tasks, splits, tokenizer and batching."""
from __future__ import annotations

import random

import pytest
import torch

from data.data_params import DataParams
from data.dataloader import LMDataModule, mycollate, windows
from data.syntheticdata import SYNTHETIC_TASKS, generate_splits, registered
from data.tokenizer import CharTokenizer
from data.tokenizer_kinds import load_tokenizer
from core.errors import UserError

DP = DataParams(n_train_samples=300, n_val_samples=50, n_test_samples=50, min_len=3, max_len=6, alphabet="abcde", max_seq_len=16)


@pytest.mark.parametrize("task", ["copy", "reverse", "sort", "histogram"])
def test_tasks_are_registered_and_correct(task):
    rng = random.Random(0)
    for _ in range(50):
        q, a = SYNTHETIC_TASKS[task].generate(rng, DP).split(">")
        expected = {"copy": q, "reverse": q[::-1], "sort": "".join(sorted(q)), "histogram": "".join(str(q.count(c)) for c in q)}[task]
        assert a == expected and DP.min_len <= len(q) <= DP.max_len


def test_splits_are_seeded_and_disjoint():
    a = generate_splits(SYNTHETIC_TASKS["copy"], DP, seed=1)
    b = generate_splits(SYNTHETIC_TASKS["copy"], DP, seed=1)
    c = generate_splits(SYNTHETIC_TASKS["copy"], DP, seed=2)
    assert a == b and a != c
    assert {k: len(v) for k, v in a.items()} == {"train": 300, "val": 50, "test": 50}
    assert not set(a["train"]) & set(a["val"]) and not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])


def test_too_small_sample_space_is_a_clear_error():
    dp = DataParams(n_val_samples=500, min_len=1, max_len=1, alphabet="ab")
    with pytest.raises(UserError, match="distinct val samples"):
        generate_splits(SYNTHETIC_TASKS["copy"], dp, seed=0)


def test_registered_decorator_adds_a_task():
    @registered(answer_sep=None, name="test_only_task")
    def _gen(rng, dp):
        return "ab"

    try:
        assert SYNTHETIC_TASKS["test_only_task"].generate(random.Random(0), DP) == "ab"
    finally:
        del SYNTHETIC_TASKS["test_only_task"]


def test_char_tokenizer_round_trip_and_json(tmp_path):
    tok = CharTokenizer.from_texts(["hello>world"])
    ids = tok("hello")
    assert ids[0] == tok.bos_id and tok.decode(ids) == "hello"
    assert tok(["he", "lo"]) == [tok("he"), tok("lo")]
    tok.save(tmp_path / "t.json")
    back = load_tokenizer(tmp_path / "t.json")
    assert back.itos == tok.itos and back("world", add_eos=True) == tok("world", add_eos=True)
    with pytest.raises(ValueError, match="not in this char tokenizer"):
        tok("xyz")


def test_mycollate_pads_and_masks():
    b = mycollate([[5, 6, 7], [8]], pad_id=0)
    assert b["x_indices"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["mask"].tolist() == [[True, True, True], [True, False, False]]


def test_datamodule_batches_and_answer_mask():
    dm = LMDataModule(DP, seed=0, batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    x, mask, ans = batch["x_indices"], batch["mask"], batch["answer_mask"]
    assert x.shape[0] == 8 and mask.dtype == torch.bool
    for row, m, a in zip(x, mask, ans):
        text = dm.tokenizer.decode(row[m].tolist())
        q, answer = text.split(">")
        assert a.sum().item() == len(answer) + 1  # answer tokens + EOS
        assert row[m][0] == dm.tokenizer.bos_id and row[m][-1] == dm.tokenizer.eos_id
    assert dm.show_sample(0).count(">") == 1


def test_datamodule_rejects_samples_longer_than_max_seq_len():
    with pytest.raises(UserError, match="raise max_seq_len"):
        LMDataModule(DataParams(n_train_samples=10, n_val_samples=5, n_test_samples=5, max_len=20, max_seq_len=16))


def test_windows_cover_the_sequence():
    ids = list(range(10))
    assert windows(ids, 4, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert windows(ids, 4, 3)[:2] == [[0, 1, 2, 3], [3, 4, 5, 6]]
    assert windows([1, 2], 4, 4) == [[1, 2]]
