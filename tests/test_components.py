"""Registries and blocks: registering is the only step to make a component selectable; any block
gets hooks, the KV cache, sampling, saving and reloading from the harness; the Llama-style block
trains from a config; old saved runs and configs still work."""
from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

import model_explorer
from data.tokenizer import CharTokenizer
from model import registry
from model.lm import LM
from model.model_params import ModelParams
from model.transformer.block import PositionWise
from model.transformer.components import RMSNorm, SwiGLU
from model.transformer.transformerencoderlayer import TransformerEncoderLayer
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")
from core.errors import UserError
from core.params_base import field_choices
from train.loading import load_run
from train.saving import params_from

TOK = CharTokenizer("abcdefgh>")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"
LLAMA = dict(layer_architecture="llama", pos_encoding="rotary", n_kv_heads=2)
FIELDS = {"block": "layer_architecture", "attention": "attention", "mlp": "mlp", "norm": "norm", "pos_encoding": "pos_encoding"}


def make_lm(**kw) -> LM:
    torch.manual_seed(0)
    return LM(ModelParams(**{**dict(dim=32, n_heads=4, n_layers=2, max_seq_len=24), **kw}), TOK).eval()


def test_declared_names_equal_registered_classes_and_model_params_choices():
    for kind, field in FIELDS.items():
        classes = registry.registered(kind)  # imports every declaring module
        assert set(registry._declared()[kind]) <= set(classes), kind  # plus any registered at run time (this file's block)
        assert set(field_choices(ModelParams)[field]) - {None} == set(classes)
    assert {"custom-transformer", "llama", "torch-transformer"} <= set(registry.names("block"))
    assert ModelParams().layer_architecture == "custom-transformer", "the default is the editable block"


def test_help_lists_registered_components_without_importing_torch():
    out = subprocess.run([sys.executable, "main.py", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    for kind in registry.KINDS:
        for name in registry._declared()[kind]:  # a subprocess: this file's runtime registration is not there
            assert re.search(rf"^\s+{re.escape(name)}\s+\S", out, flags=re.M), name
    probe = "import sys, main; main.build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout.strip() == "False"


def test_config_errors_name_the_closest_registered_component(ws, capsys):
    ws.write_config("bad", text=ws_text('layer_architecture="lama"'))
    assert ws.main("--config=bad", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "layer_architecture='lama'" in err and "did you mean 'llama'" in err and "@block" in err and len(err.strip().splitlines()) == 1
    ws.write_config("old", text=ws_text("attn_fast_path=False"))
    assert ws.main("--config=old", "--dry-run") == 2
    assert "attn_fast_path was removed" in capsys.readouterr().err


def ws_text(line: str) -> str:
    from tests.conftest import TINY

    return TINY.replace("ModelParams\n", f"ModelParams\n{line}\n")


@registry.block("test-swiglu-block")
class SwigluBlock(TransformerEncoderLayer):
    """A block registered by this test: the default block with a SwiGLU MLP and RMSNorm."""

    default_mlp = "swiglu"
    default_norm = "rmsnorm"


@pytest.mark.parametrize("kw", [LLAMA, dict(layer_architecture="test-swiglu-block"), dict(layer_architecture="custom-transformer", parallel_residual=True, pos_encoding="rotary", rotary_frac=0.25)],
                         ids=["llama", "registered-in-test", "parallel-partial-rotary"])
def test_any_block_gets_hooks_kv_cache_sampling_and_plots_from_the_harness(kw, tmp_path):
    assert kw["layer_architecture"] in field_choices(ModelParams)["layer_architecture"]
    lm = make_lm(**kw)
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3)
    names = {re.sub(r"blocks\.\d+\.", "blocks.{i}.", n) for n in lm.hook_names()}
    documented = set(re.findall(r"^\| `([a-z_{}.0-9]+)` \|", DOCS.read_text(), flags=re.M))
    assert names == documented
    x = torch.tensor([TOK("abc>abc"), TOK("hgf>hgf")])
    with torch.no_grad():
        logits, cache = lm.run_with_cache(x)
        assert torch.allclose(logits, lm(x), atol=1e-5)
        for i in range(2):
            c = lambda n: cache[f"blocks.{i}.{n}"]  # noqa: E731
            if not kw.get("parallel_residual"):
                assert torch.allclose(c("hook_resid_post"), c("hook_resid_pre") + c("hook_attn_out") + c("hook_mlp_out"), atol=1e-4)
        ablated = lm.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_z", lambda z, hook: z.zero_())])
        assert (ablated - logits).abs().max() > 1e-3
    cached = lm.sample(["abc>", "hg"], max_seq_len=20, temperature=0, as_str=False)
    assert cached == lm.sample(["abc>", "hg"], max_seq_len=20, temperature=0, as_str=False, use_cache=False)
    _, attns = model_explorer.show_lm_attns(lm, "abc>abc", layers=[1], heads=[0], folder_name="p", attentions_dir=tmp_path)
    assert attns.shape == (1, 2, 4, 8, 8) and (tmp_path / "p" / "layer1_head0.png").stat().st_size > 1000


def test_llama_block_has_its_components_and_no_biases():
    lm = make_lm(**LLAMA)
    layer = lm.decoder.layers[0]
    assert isinstance(layer.norm1, RMSNorm) and isinstance(layer.mlp, SwiGLU) and isinstance(lm.decoder.norm, RMSNorm)
    assert not [n for n, _ in lm.named_parameters() if n.endswith("bias")]
    assert layer.self_attn.in_proj_weight.shape == ((4 + 2 + 2) * 8, 32), "grouped-query: 4 query heads, 2 key/value heads"
    assert not [n for n, _ in lm.named_parameters() if n.startswith("pos_enc")], "rotary adds nothing to the embeddings"
    _, cache = lm.run_with_cache("abc")
    assert cache["blocks.0.attn.hook_k"].shape[2] == 2 and cache["blocks.0.attn.hook_q"].shape[2] == 4
    with pytest.raises(UserError, match="pos_encoding='rotary'"):
        make_lm(layer_architecture="llama")
    with pytest.raises(UserError, match="n_kv_heads=3 must divide n_heads=4"):
        make_lm(**{**LLAMA, "n_kv_heads": 3})


def test_llama_trains_from_a_config_saves_and_reloads(ws, capsys):
    text = (REPO / "configs" / "llama-synth.txt").read_text()
    for key, value in dict(n_train_samples=1024, n_val_samples=32, n_test_samples=8, epochs=1, batch_size=32, warmup_steps=2, dim=16, n_heads=4).items():
        text = re.sub(rf"^{key}=.*$", f"{key}={value}", text, flags=re.M)
    ws.write_config("llama", text=text)
    assert ws.main("--config=llama", "--no-wandb", "--save") == 0
    assert "attention: fused SDPA (unedited)" in capsys.readouterr().out
    (run_dir,) = ws.run_dirs()
    lm, dataset, stats, params = load_run(run_dir)
    assert params["model"]["layer_architecture"] == "llama" and params["model"]["n_kv_heads"] == 2
    losses = [r[3] for r in stats["stat/train_loss:main"]]
    assert sum(losses[-3:]) / 3 < losses[0] - 0.08, "it learns (0.12 in 32 steps when written)"
    again, *_ = load_run(run_dir)
    x = next(iter(dataset.val_dataloader(8)))["x_indices"]
    with torch.no_grad():
        assert torch.equal(lm(x), again(x))


def test_old_runs_and_torch_named_weights_load_into_the_default_block():
    torch_lm = make_lm(layer_architecture="torch-transformer")
    old_names = torch_lm.state_dict()  # the names every run saved before the registries had (linear1, norm1, ...)
    assert "decoder.layers.0.linear1.weight" in old_names
    lm = make_lm()
    lm.load_state_dict(old_names, strict=True)
    x = torch.randint(0, TOK.n_tokens, (2, 10))
    with torch.no_grad():
        assert (lm(x) - torch_lm(x)).abs().max() < 1e-5
    torch_lm.load_state_dict(make_lm().state_dict(), strict=True)  # and back
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mp = params_from(ModelParams, {"dim": 32, "layer_architecture": "custom-transformer", "attn_fast_path": False})
    assert mp.dim == 32 and any("attn_fast_path was removed" in str(w.message) for w in caught)


def test_stack_members_are_blocks_or_parameter_free():
    lm = make_lm()
    lm.decoder.layers.insert(1, nn.ReLU())  # the seed's example keeps working (tests/test_hooks.py)
    lm.decoder.layers.insert(1, PositionWise(nn.Linear(32, 32)))
    assert lm.sample("abc", max_seq_len=12, temperature=0) == lm.sample("abc", max_seq_len=12, temperature=0, use_cache=False)
    lm.decoder.layers.insert(1, nn.Conv1d(32, 32, 3, padding=1))
    with pytest.raises(TypeError, match=r"layer 1 \(Conv1d\) has parameters but is not a model.transformer.block.Block"):
        lm("abc")


def test_torch_reference_block_refuses_what_it_cannot_compute():
    with pytest.raises(UserError, match="cannot take n_kv_heads=2"):
        make_lm(layer_architecture="torch-transformer", n_kv_heads=2)
    with pytest.raises(UserError, match="rotates queries and keys"):
        make_lm(layer_architecture="torch-transformer", pos_encoding="rotary")
