"""gpt2.get_gpt2: a GPT-2 loaded by from_pretrained behaves like HF's GPT2LMHeadModel in our LM interface.

A tiny GPT-2 is written with save_pretrained into a temp folder and loaded by path through the
same code that loads "gpt2" from the hub.
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch


pytestmark = pytest.mark.usefixtures("one_thread")
from tests.tiny_gpt2 import TEXTS, make_tiny_gpt2
from core.errors import UserError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import GPT2LMHeadModel

    import gpt2

    folder = make_tiny_gpt2(tmp_path_factory.mktemp("gpt2"))
    hf = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    return gpt2.get_gpt2(str(folder)), hf, folder


def test_logits_equal_hf(tiny):
    lm, hf, _ = tiny
    ids = lm.tokenizer(TEXTS[1])
    x = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        ours, theirs = lm(x), hf(x).logits
    assert theirs.abs().max() > 1.0, "logits far from zero, so the comparison means something"
    assert (ours - theirs).abs().max().item() <= 1e-4
    with torch.no_grad():
        assert torch.equal(lm(TEXTS[1]), lm(ids))  # the seed's input formats


def test_perplexities_equal_exp_of_hf_loss(tiny):
    lm, hf, _ = tiny
    ids = lm.tokenizer(TEXTS[0])
    with torch.no_grad():
        hf_loss = hf(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    mean, mx, mn, n, per_token = lm.perplexities([TEXTS[0]], per_token=True)
    assert math.isclose(mean, math.exp(hf_loss), rel_tol=1e-5)
    assert n == len(ids) - 1 and per_token.shape == (1, len(ids) - 1)
    assert mn <= mean <= mx and math.isclose(mx, per_token.max().item(), rel_tol=1e-5)
    # several texts of different lengths: token-weighted mean of HF's per-token losses
    total, count = 0.0, 0
    for t in TEXTS[:3]:
        ids = torch.tensor([lm.tokenizer(t)])
        with torch.no_grad():
            loss = hf(ids, labels=ids).loss.item()
        total, count = total + loss * (ids.shape[1] - 1), count + ids.shape[1] - 1
    mean_l, _, _, n, per_token = lm.perplexities(TEXTS[:3], before_exp=True, per_token=True, batch_size=2)
    assert n == count and math.isclose(mean_l, total / count, rel_tol=1e-5)
    assert (per_token == -1).sum() == per_token.numel() - count  # dummy_res where nothing was predicted


def test_hidden_states_and_attentions_match_hf(tiny):
    lm, hf, _ = tiny
    ids = torch.tensor([lm.tokenizer(TEXTS[2])])
    with torch.no_grad():
        ours = lm(ids, get_embeddings=True, get_attns=True)
        theirs = hf(ids, output_hidden_states=True, output_attentions=True)
    n_layers = lm.model_params.n_layers
    assert ours["embeddings"].shape == (1, n_layers, ids.shape[1], 32)
    for i in range(n_layers - 1):  # HF's last hidden state has ln_f applied; ours are block outputs
        assert (ours["embeddings"][:, i] - theirs.hidden_states[i + 1]).abs().max() < 1e-4
    assert (ours["attns"] - torch.stack(theirs.attentions, dim=1)).abs().max() < 1e-5


def test_greedy_sampling_matches_hf_generate_and_kv_cache(tiny):
    lm, hf, _ = tiny
    prefix = lm.tokenizer("the weather")
    cached = lm.sample(prefix, max_seq_len=30, temperature=0, as_str=False)
    plain = lm.sample(prefix, max_seq_len=30, temperature=0, as_str=False, use_cache=False)
    assert cached == plain
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prefix]), max_length=30, do_sample=False, pad_token_id=lm.tokenizer.eos_id)[0].tolist()
    assert cached == ref[: len(cached)] and len(cached) > len(prefix)
    beams = lm.sample("the weather", max_seq_len=20, beam_size=3)
    assert len(beams) == 3 and all(isinstance(s, str) for s, _ in beams)
    assert [b[1] for b in beams] == sorted((b[1] for b in beams), reverse=True)


def test_show_lm_attns_and_cache_on_gpt2(tiny, tmp_path):
    import model_explorer

    lm, _, _ = tiny
    out, attns = model_explorer.show_lm_attns(lm, "the weather", layers=[1], heads=[0, 3], folder_name="g", attentions_dir=tmp_path, show=False)
    n = len(lm.tokenizer("the weather"))
    assert out.shape == (1, n, lm.n_tokens) and attns.shape == (1, 2, 4, n, n)
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["layer1_head0.png", "layer1_head3.png"]
    _, cache = lm.run_with_cache("the weather")
    resid = cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"] + cache["blocks.1.hook_mlp_out"]
    assert torch.allclose(resid, cache["blocks.1.hook_resid_post"], atol=1e-5)


def test_unsupported_variant_and_missing_model_are_clear_errors(tiny, tmp_path):
    from transformers import GPT2Config

    import gpt2

    with pytest.raises(UserError, match="scale_attn_by_inverse_layer_idx"):
        gpt2.model_params_from_hf(GPT2Config(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(UserError, match="activation"):
        gpt2.model_params_from_hf(GPT2Config(activation_function="swish"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not load"):
        gpt2.get_gpt2(str(tmp_path / "empty"))
