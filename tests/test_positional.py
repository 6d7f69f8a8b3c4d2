"""Positional encodings: every choice trains on `copy`; the shared ones keep the two layer
architectures identical; rotary and random behave as documented."""
from __future__ import annotations

import pytest
import torch

from data.data_params import DataParams
from data.dataloader import LMDataModule
from data.tokenizer import CharTokenizer
from model.lm import LM
from model.model_params import ModelParams
from model.positional import POS_ENCODINGS, RandomPositionalEncoding, apply_rotary
from tests.attention_edits import force_explicit
from core.errors import UserError
from train.evaluate import evaluate

TOK = CharTokenizer("abcdefgh>")
SHARED = ["learned", "sinusoidal", "random", "none"]  # the encodings torch's layer can use too


def model(arch: str, pe: str, **kw) -> LM:
    mp = dict(layer_architecture=arch, dim=32, n_heads=4, n_layers=2, max_seq_len=32, max_posencs=64, pos_encoding=pe)
    return LM(ModelParams(**{**mp, **kw}), TOK)


def test_every_documented_choice_is_registered():
    from model.model_params import ModelParams as MP
    from core.params_base import field_choices

    assert set(field_choices(MP)["pos_encoding"]) == set(POS_ENCODINGS) == {*SHARED, "rotary"}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("pe", SHARED)
def test_architectures_agree_where_the_encoding_is_shared(pe, mode):
    torch.manual_seed(0)
    a = model("torch-transformer", pe)
    b = model("custom-transformer", pe)
    b.load_state_dict(a.state_dict())
    getattr(a, mode)()
    getattr(b, mode)()
    x = torch.randint(0, TOK.n_tokens, (3, 20))
    with torch.no_grad():
        torch.manual_seed(1)  # 'random' draws positions in training: give both the same draw
        za = a(x)
        torch.manual_seed(1)
        zb = b(x)
    assert (za - zb).abs().max().item() <= 1e-5


def test_rotary_needs_the_custom_attention_and_an_even_head_dim():
    with pytest.raises(UserError, match="custom-transformer"):
        model("torch-transformer", "rotary")
    with pytest.raises(UserError, match="even head dimension"):
        model("custom-transformer", "rotary", dim=12, n_heads=4)
    with pytest.raises(UserError, match="pos_encoding"):
        model("custom-transformer", "alibi")


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    q1, k1 = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    seq = 12
    q = apply_rotary(q1.expand(1, 1, seq, 8).contiguous())
    k = apply_rotary(k1.expand(1, 1, seq, 8).contiguous())
    scores = (q @ k.transpose(-1, -2))[0, 0]  # scores[m, n] for the same q and k vectors at every position
    for offset in range(-3, 4):
        diag = torch.diagonal(scores, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-5)
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 2)[0])
    assert torch.allclose(apply_rotary(q1), q1)  # position 0 is not rotated
    assert torch.allclose(q.norm(dim=-1), q1.norm(dim=-1).expand(1, 1, seq))  # a rotation keeps norms


def test_rotary_reaches_both_attention_paths_and_changes_the_model(monkeypatch):
    torch.manual_seed(0)
    fast = model("custom-transformer", "rotary").eval()
    slow = model("custom-transformer", "rotary").eval()
    plain = model("custom-transformer", "none").eval()
    with torch.no_grad():  # sharpen attention so that where keys sit matters
        for layer in fast.decoder.layers:
            layer.self_attn.in_proj_weight.mul_(20)
    slow.load_state_dict(fast.state_dict())
    plain.load_state_dict(fast.state_dict())
    x = torch.randint(0, TOK.n_tokens, (2, 15))
    with torch.no_grad():
        fused = fast(x)
        force_explicit(monkeypatch)  # every later call takes the explicit path
        out = slow(x, get_attns=True)
        assert torch.allclose(fused, slow(x), atol=1e-5) and torch.allclose(fused, out["logits"], atol=1e-5)
        assert (fast(x) - plain(x)).abs().max() > 1e-3  # the rotation is actually applied
        assert torch.all(out["attns"].triu(1) == 0)
        y = x.clone()
        y[:, 10:] = (y[:, 10:] + 1) % TOK.n_tokens
        assert torch.allclose(fast(x)[:, :10], fast(y)[:, :10], atol=1e-6)  # still causal


def test_random_positions_are_sorted_distinct_fresh_in_training_and_fixed_in_eval():
    enc = RandomPositionalEncoding(ModelParams(dim=16, max_seq_len=32, max_posencs=40))
    enc.train()
    drawn = enc.sample_positions(64, torch.device("cpu"))
    assert drawn.shape == (64, 32) and int(drawn.max()) < 40 and int(drawn.min()) >= 0
    assert torch.all(drawn[:, 1:] > drawn[:, :-1])  # sorted, hence distinct
    assert len({tuple(r) for r in drawn.tolist()}) > 50  # fresh per sequence
    positions = torch.arange(20).expand(3, 20)
    assert not torch.equal(enc(positions), enc(positions))
    enc.eval()
    one = enc(torch.arange(20).unsqueeze(0))
    assert torch.equal(enc(positions), one.expand(3, -1, -1))  # deterministic and batch-independent
    assert torch.equal(enc(torch.arange(12).unsqueeze(0)), one[:, :12])  # a prefix keeps its encodings
    assert torch.equal(enc(torch.tensor([[12, 13]])), one[:, 12:14])  # as incremental decoding asks
    with pytest.raises(UserError, match="max_posencs"):
        RandomPositionalEncoding(ModelParams(max_seq_len=64, max_posencs=32))


COPY = DataParams(task="copy", alphabet="abcd", min_len=4, max_len=4, n_train_samples=2000, n_val_samples=64, n_test_samples=8, max_seq_len=16)


@pytest.fixture(scope="module")
def copy_data() -> LMDataModule:
    return LMDataModule(COPY, seed=0, batch_size=32)


# learned and rotary solve copy in a few hundred steps; the others get a shorter run that must
# clearly beat the unigram baseline (they need far longer for the exact copy at this size).
SOLVES = {"learned": 800, "rotary": 800}


@pytest.mark.parametrize("pe", ["learned", "sinusoidal", "random", "rotary", "none"])
def test_each_encoding_trains_on_copy(pe, copy_data, one_thread):
    torch.manual_seed(0)
    arch = "custom-transformer" if pe == "rotary" else "torch-transformer"
    lm = LM(ModelParams(layer_architecture=arch, dim=32, n_heads=4, n_layers=2, max_seq_len=16, max_posencs=64, pos_encoding=pe), copy_data.tokenizer)
    before = evaluate(lm, copy_data.val_dataloader())
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    steps, done = SOLVES.get(pe, 300), 0
    while done < steps:
        for batch in copy_data.train_dataloader():
            loss = lm.get_losses(batch)[0]["main"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    after = evaluate(lm, copy_data.val_dataloader())
    assert after["loss:main"] < 0.75 * before["loss:main"]
    assert after["loss:main"] < copy_data.unigram_entropy() - 0.2
    if pe in SOLVES:
        assert after["exact:answer"] >= 0.9, after


@pytest.mark.parametrize("pe", ["random", "rotary"])
def test_incremental_decoding_matches_full_recomputation(pe):
    torch.manual_seed(0)
    lm = model("custom-transformer", pe).eval()
    with torch.no_grad():
        for layer in lm.decoder.layers:  # sharpen attention so positions matter
            layer.self_attn.in_proj_weight.mul_(10)
    prompts = ["abc>", "hgfe>"]
    cached = lm.sample(prompts, max_seq_len=20, temperature=0, as_str=False, use_cache=True)
    full = lm.sample(prompts, max_seq_len=20, temperature=0, as_str=False, use_cache=False)
    assert cached == full
