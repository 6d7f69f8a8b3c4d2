"""Llama and GPT-NeoX/Pythia through pretrained.get_hf_model: our registered components compute
transformers' logits, and the LM interface (KV-cache sampling, perplexities, hooks, attention
plots) works on them. Tiny random models saved with save_pretrained, loaded like hub names."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tests.tiny_gpt2 import TEXTS
from tests.tiny_hf import make_tiny_llama, make_tiny_neox

FAMILIES = {"llama": make_tiny_llama, "gpt_neox": make_tiny_neox}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    import pretrained

    folder = FAMILIES[request.param](tmp_path_factory.mktemp(request.param))
    hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    return pretrained.get_hf_model(str(folder)), hf, request.param


def test_components_match_the_family(pair):
    lm, hf, family = pair
    mp = lm.model_params
    if family == "llama":
        assert mp.layer_architecture == "llama" and mp.n_kv_heads == 2 < mp.n_heads == 4
    else:
        assert mp.parallel_residual and mp.rotary_frac == 0.25 and mp.pos_encoding == "rotary" and not mp.tie_embeddings


def test_logits_and_attention_equal_transformers(pair):
    lm, hf, _ = pair
    ids = lm.tokenizer(TEXTS[1])
    x = torch.tensor([ids, ids[::-1]])
    with torch.no_grad():
        ours = lm(x, get_attns=True)
        theirs = hf(x, output_attentions=True)
    assert theirs.logits.abs().max() > 1.0, "logits far from zero, so the comparison means something"
    assert (ours["logits"] - theirs.logits).abs().max().item() <= 1e-4
    assert (ours["attns"] - torch.stack(theirs.attentions, dim=1)).abs().max() < 1e-5


def test_perplexities_equal_exp_of_hf_loss(pair):
    lm, hf, _ = pair
    ids = torch.tensor([lm.tokenizer(TEXTS[0])])
    with torch.no_grad():
        hf_loss = hf(ids, labels=ids).loss.item()
    mean, _, _, n, _ = lm.perplexities([TEXTS[0]], per_token=True)
    assert math.isclose(mean, math.exp(hf_loss), rel_tol=1e-5) and n == ids.shape[1] - 1


def test_greedy_sampling_with_kv_cache_matches_hf_generate(pair):
    lm, hf, _ = pair
    prefix = lm.tokenizer("the weather")
    cached = lm.sample(prefix, max_seq_len=30, temperature=0, as_str=False)
    assert cached == lm.sample(prefix, max_seq_len=30, temperature=0, as_str=False, use_cache=False)
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prefix]), max_length=30, do_sample=False, pad_token_id=lm.tokenizer.eos_id)[0].tolist()
    assert cached == ref[: len(cached)] and len(cached) > len(prefix)


def test_cache_hooks_and_attention_plots(pair, tmp_path):
    import model_explorer

    lm, _, family = pair
    n = len(lm.tokenizer("the weather"))
    _, cache = lm.run_with_cache("the weather")
    assert cache["blocks.1.attn.hook_k"].shape[2] == (lm.model_params.n_kv_heads or lm.model_params.n_heads)
    resid = cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"] + cache["blocks.1.hook_mlp_out"]
    assert torch.allclose(resid, cache["blocks.1.hook_resid_post"], atol=1e-5)
    heads = lm.model_params.n_heads
    out, attns = model_explorer.show_lm_attns(lm, "the weather", layers=[1], heads=[0], folder_name=family, attentions_dir=tmp_path, show=False)
    assert attns.shape == (1, 2, heads, n, n) and (tmp_path / family / "layer1_head0.png").is_file()
    def ablate(z, hook):
        z[:, :, 0] = 0
    with torch.no_grad():
        assert not torch.allclose(lm.run_with_hooks("the weather", fwd_hooks=[("blocks.0.attn.hook_z", ablate)]), out)


def test_init_from_a_llama_folder_uses_its_weights(tmp_path):
    import pretrained
    from train.loading import load_source

    folder = make_tiny_llama(tmp_path / "l", tie=True)
    lm, src = pretrained.get_hf_model(str(folder)), load_source(str(folder))
    assert src.model_params == lm.model_params and src.model_params.tie_embeddings and src.kind == "hf"
    assert all(torch.equal(src.state_dict[k], v) for k, v in lm.state_dict().items())


def test_head_scores_and_a_checkpoint_trajectory(pair, tmp_path):
    """The dynamics tools' head scores run on each family; get_all_checkpoints walks local folders in order."""
    import pretrained
    from model.head_scores import head_scores

    lm, _, family = pair
    scores = head_scores(lm, seq_len=8, n_seqs=2)
    assert set(scores) == {"previous_token", "duplicate_token", "induction"}
    for s in scores.values():
        assert s.shape == (lm.model_params.n_layers, lm.model_params.n_heads) and ((s >= 0) & (s <= 1)).all()
    folders = [str(FAMILIES[family](tmp_path / f"s{seed}", seed=seed)) for seed in (1, 2)]
    table = [(label, head_scores(m, seq_len=8, n_seqs=2)["induction"]) for label, m in pretrained.get_all_checkpoints(folders)]
    assert [label for label, _ in table] == folders and not torch.equal(table[0][1], table[1][1])
    rows = pretrained.over_checkpoints(folders, lambda m: head_scores(m, seq_len=8, n_seqs=2)["induction"].max().item(), name="induction")
    assert [r["checkpoint"] for r in rows] == folders and [r["n_samples"] for r in rows] == [0, 1]
    assert [r["induction"] for r in rows] == [t.max().item() for _, t in table]


@pytest.mark.parametrize("family", ["llama", "neox"])
def test_any_feed_forward_width_loads(family, tmp_path):
    """Real checkpoints state their MLP width (Llama-2 7B: 11008 = 2.6875 × 4096), which no
    dim_ff_factor gives: `ff_dim` carries it, and the logits still equal transformers'."""
    import pretrained

    if family == "llama":
        folder, cls = make_tiny_llama(tmp_path / "m", intermediate_size=86), "LlamaForCausalLM"
    else:
        folder, cls = make_tiny_neox(tmp_path / "m", intermediate_size=72), "GPTNeoXForCausalLM"
    import transformers

    hf = getattr(transformers, cls).from_pretrained(folder).eval()
    lm = pretrained.get_hf_model(str(folder))
    assert lm.model_params.ff_dim == hf.config.intermediate_size
    x = torch.tensor([lm.tokenizer(TEXTS[1])])
    with torch.no_grad():
        assert (lm(x) - hf(x).logits).abs().max().item() <= 1e-4
