"""Activation cache and hooks: names, the residual identity, ablation, patching, cleanup."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from data.tokenizer import CharTokenizer
from model.lm import LM
from model.model_params import ModelParams
from tests.attention_edits import force_explicit

pytestmark = pytest.mark.usefixtures("one_thread")

TOK = CharTokenizer("abcdefgh>")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
ARCHS = ["custom-transformer", "torch-transformer"]


def make_lm(arch: str = "custom-transformer", **kw) -> LM:
    torch.manual_seed(0)
    lm = LM(ModelParams(layer_architecture=arch, dim=32, n_heads=4, n_layers=3, max_seq_len=24, **kw), TOK).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3)  # non-trivial activations
    return lm


X = torch.tensor([TOK("abc>abc"), TOK("hgf>hgf")])


def documented_names() -> set[str]:
    return set(re.findall(r"^\| `([a-z_{}.0-9]+)` \|", DOCS.read_text(), flags=re.M))


@pytest.mark.parametrize("kw", [dict(arch="custom-transformer"), dict(arch="custom-transformer", norm_first=False), dict(arch="torch-transformer")])
def test_every_hook_name_is_documented_in_one_place(kw):
    lm = make_lm(kw.pop("arch"), **kw)
    names = {re.sub(r"blocks\.\d+\.", "blocks.{i}.", n) for n in lm.hook_names()}
    assert names == documented_names()
    assert lm.hook_names()[:3] == ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre"]


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_shapes_and_residual_identity(arch):
    lm = make_lm(arch)
    with torch.no_grad():
        logits, cache = lm.run_with_cache(X)
        plain = lm(X)
    assert torch.allclose(logits, plain, atol=1e-5), "caching does not change the output"
    b, s = X.shape
    assert cache["blocks.1.attn.hook_q"].shape == (b, s, 4, 8) and cache["blocks.1.attn.hook_z"].shape == (b, s, 4, 8)
    assert cache["blocks.1.attn.hook_pattern"].shape == (b, 4, s, s) and cache["blocks.2.mlp.hook_post"].shape == (b, s, 128)
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], cache["hook_embed"] + cache["hook_pos_embed"])
    for i in range(3):
        c = lambda n: cache[f"blocks.{i}.{n}"]  # noqa: E731
        assert torch.allclose(c("hook_resid_post"), c("hook_resid_pre") + c("hook_attn_out") + c("hook_mlp_out"), atol=1e-4)
        assert torch.allclose(c("hook_resid_mid"), c("hook_resid_pre") + c("hook_attn_out"), atol=1e-5)
        if i < 2:
            assert torch.equal(c("hook_resid_post"), cache[f"blocks.{i + 1}.hook_resid_pre"])
        attn = lm.decoder.layers[i].self_attn
        assert torch.allclose(attn.out_proj(c("attn.hook_z").flatten(2)), c("hook_attn_out"), atol=1e-5), "z feeds attn_out"
        q, k = c("attn.hook_q").transpose(1, 2), c("attn.hook_k").transpose(1, 2)
        scores = (q @ k.transpose(-1, -2) / 8**0.5).masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        assert torch.allclose(scores.softmax(-1), c("attn.hook_pattern"), atol=1e-5), "q and k make the pattern"
    assert torch.allclose(lm.out(cache["ln_final.hook_normalized"]), logits, atol=1e-5)
    with torch.no_grad():
        emb = lm(X, get_embeddings=True)["embeddings"]
    assert torch.allclose(emb, torch.stack([cache[f"blocks.{i}.hook_resid_post"] for i in range(3)], dim=1), atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_cached_pattern_equals_show_lm_attns(arch):
    import model_explorer

    lm = make_lm(arch)
    _, cache = lm.run_with_cache("abc>abc")
    _, attns = model_explorer.show_lm_attns(lm, "abc>abc", show=False)
    assert torch.equal(torch.stack([cache["pattern", i] for i in range(3)], dim=1), attns)
    _, some = lm.run_with_cache("abc>abc", names_filter=["blocks.0.attn.hook_pattern", "blocks.2.attn.hook_pattern"])
    assert sorted(some) == ["blocks.0.attn.hook_pattern", "blocks.2.attn.hook_pattern"]
    assert torch.allclose(some["blocks.2.attn.hook_pattern"], attns[:, 2], atol=1e-6)  # layer 1 took the fused kernel


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_ablating_a_head_changes_logits_and_leaves_the_model_alone(arch):
    lm = make_lm(arch)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    with torch.no_grad():
        clean = lm(X)

        def ablate(z, hook):
            z[:, :, 2] = 0

        ablated = lm.run_with_hooks(X, fwd_hooks=[("blocks.1.attn.hook_z", ablate)])
        assert (ablated - clean).abs().max() > 1e-2
        manual = copy.deepcopy(lm)  # the same ablation by editing weights: head 2's slice of out_proj
        manual.decoder.layers[1].self_attn.out_proj.weight[:, 16:24] = 0
        assert torch.allclose(manual(X), ablated, atol=1e-4)
        assert torch.equal(lm(X), clean), "no hook survives the call"
    assert all(torch.equal(v, before[k]) for k, v in lm.state_dict().items())


def test_patching_the_residual_stream_with_another_inputs_activation():
    lm = make_lm()
    a, b = X[:1], X[1:]
    with torch.no_grad():
        logits_b, cache_b = lm.run_with_cache(b)
        patched = lm.run_with_hooks(a, fwd_hooks=[("blocks.0.hook_resid_pre", lambda r, hook: cache_b[hook.name])])
        late = lm.run_with_hooks(a, fwd_hooks=[("blocks.2.hook_resid_post", lambda r, hook: cache_b[hook.name])])
    assert torch.allclose(patched, logits_b, atol=1e-5) and torch.allclose(late, logits_b, atol=1e-5)


def test_hooks_are_gone_after_an_exception():
    lm = make_lm()
    calls = []

    def boom(x, hook):
        calls.append(hook.name)
        raise RuntimeError("inside a hook")

    with torch.no_grad():
        clean = lm(X)
        with pytest.raises(RuntimeError, match="inside a hook"):
            lm.run_with_hooks(X, fwd_hooks=[("blocks.1.hook_mlp_out", boom)])
        assert calls == ["blocks.1.hook_mlp_out"]
        assert torch.equal(lm(X), clean) and lm.run_with_cache(X)[0].shape == clean.shape
        assert calls == ["blocks.1.hook_mlp_out"], "the failed call's hook never runs again"


def test_pattern_hooks_reach_the_fused_path_and_filters(monkeypatch):
    fast = make_lm()
    uniform = lambda p, hook: torch.tril(torch.ones_like(p)) / torch.tril(torch.ones_like(p)).sum(-1, keepdim=True)  # noqa: E731
    with torch.no_grad():
        hooked = fast.run_with_hooks(X, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), uniform)])
        assert (hooked - fast(X)).abs().max() > 1e-2, "a pattern hook runs even when the fused kernel is on"
        force_explicit(monkeypatch)
        assert torch.allclose(hooked, fast.run_with_hooks(X, fwd_hooks=[(lambda n: n.endswith("hook_pattern"), uniform)]), atol=1e-5)
    _, cache = fast.run_with_cache(X, names_filter=lambda n: "resid" in n)
    assert cache and all("resid" in n for n in cache)


def test_clear_errors():
    lm = make_lm()
    with pytest.raises(ValueError, match=r"no hook point 'blocks.0.attn.hook_patern'.*did you mean blocks.0.attn.hook_pattern"):
        lm.run_with_hooks(X, fwd_hooks=[("blocks.0.attn.hook_patern", lambda x, h: None)])
    with pytest.raises(ValueError, match="returned shape"):
        lm.run_with_hooks(X, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, h: x[:, :1])])
    _, cache = lm.run_with_cache(X)
    with pytest.raises(KeyError, match="did you mean"):
        cache["blocks.0.hook_resid_pree"]


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_layer_recomputed_from_its_weights_equals_torch(norm_first, mode):
    lm = make_lm("torch-transformer", norm_first=norm_first)
    getattr(lm, mode)()
    with torch.no_grad():
        native = lm(X)  # torch's own forward
        explicit = lm.run_with_hooks(X)  # hooks active: torch_layer_forward
    assert (native - explicit).abs().max() < 1e-4


def test_injected_layers_get_residual_hooks():
    lm = make_lm()
    lm.decoder.layers.insert(1, nn.ReLU())  # the seed's "inject a ReLU layer" example
    names = lm.hook_names()
    assert "blocks.1.hook_resid_post" in names and "blocks.1.attn.hook_pattern" not in names
    with torch.no_grad():
        out = lm(X, get_embeddings=True, get_attns=True)
    assert out["embeddings"].shape[1] == 4 and out["attns"].shape[1] == 3
    assert (out["embeddings"][:, 1] >= 0).all()
