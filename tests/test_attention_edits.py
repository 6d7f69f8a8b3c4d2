"""Every edit takes effect: the seed README's edit examples, applied as a researcher would (here by
monkeypatch), change training loss, logits, perplexities, sampling (with and without the KV cache)
and the plotted pattern, which all agree; the unedited attention stays fused and equals the
explicit math; an edit to the file itself is detected."""
from __future__ import annotations

import importlib.util
import sys

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F

import model.transformer.torch_f_multi_head_attention_forward as attn_math
import model_explorer
from data.dataloader import mycollate
from data.tokenizer import CharTokenizer
from model import registry
from model.lm import LM
from model.model_params import ModelParams
from model.transformer.transformerencoderlayer import TransformerEncoderLayer
from tests.attention_edits import force_explicit, scaled_pattern

pytestmark = pytest.mark.usefixtures("one_thread")

TOK = CharTokenizer("abcdefgh>")  # ids 0..11: token id 10 exists, for the attn_requests example
WITH_10 = [TOK.bos_id, 10, 4, 5, 10, 6, 7, 4]
WITHOUT_10 = [TOK.bos_id, 4, 5, 6, 7, 8, 4, 5]
BLOCKS = [dict(layer_architecture="custom-transformer"), dict(layer_architecture="llama", pos_encoding="rotary", n_kv_heads=2)]


def make_lm(**kw) -> LM:
    torch.manual_seed(0)
    lm = LM(ModelParams(**{**dict(dim=32, n_heads=4, n_layers=2, max_seq_len=24), **kw}), TOK)
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3)  # sharp attention and next-token choices, so edits show
    return lm.eval()


def square_ff(self, x, hook=attn_math.NO_HOOK):
    """The seed's square_ff edit of `_ff_block`."""
    x = self.mlp(x, hook)
    res = self.dropout_ff(x)
    return torch.pow(res, 2)


def attn_requests_from_token_10(monkeypatch):
    """The seed's `attn_requests = 10 in x` line in LM.forward, looking at every token under a KV cache."""
    original = LM.forward

    def forward(self, x, **kw):
        cache = kw.get("kv_cache")
        seen = self.as_batch(x) if cache is None else torch.cat([t for t in (cache.ids, self.as_batch(x)) if t is not None], dim=1)
        kw["attn_requests"] = bool((seen == 10).any())
        return original(self, x, **kw)

    monkeypatch.setattr(LM, "forward", forward)


def apply_edit(edit: str, monkeypatch) -> None:
    if edit == "attn_scalar":
        monkeypatch.setattr(attn_math, "attention_pattern", scaled_pattern(3.0))
    elif edit == "attn_requests":
        monkeypatch.setattr(attn_math, "attention_pattern", scaled_pattern(3.0, condition=bool))
        attn_requests_from_token_10(monkeypatch)
    elif edit == "square_ff":
        monkeypatch.setattr(TransformerEncoderLayer, "_ff_block", square_ff)


def observe(lm: LM, ids: list[int]) -> dict:
    """Everything a researcher looks at, computed through each public route."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = lm(x)
        cached_logits, cache = lm.run_with_cache(x)
        plotted_out, plotted = model_explorer.show_lm_attns(lm, ids, show=False)
        mean_ce, *_ = lm.perplexities([ids], before_exp=True)
    lm.train()
    loss = lm.get_losses(mycollate([ids, ids], pad_id=TOK.pad_id))[0]["main"].item()  # what training minimises
    lm.eval()
    prompts = [ids[:3], ids[:4]]
    return dict(
        logits=logits, cached_logits=cached_logits, plotted_out=plotted_out, pattern=plotted, cache=cache, mean_ce=mean_ce, loss=loss,
        sample=lm.sample(prompts, max_seq_len=20, temperature=0, as_str=False),
        sample_no_cache=lm.sample(prompts, max_seq_len=20, temperature=0, as_str=False, use_cache=False),
    )


def assert_consistent(lm: LM, seen: dict, ids: list[int], scalar: float) -> None:
    """Logits, cache, plot, perplexity, training loss and both sampling routes agree with each other."""
    assert torch.allclose(seen["logits"], seen["cached_logits"], atol=1e-5) and torch.allclose(seen["logits"], seen["plotted_out"], atol=1e-5)
    ce = F.cross_entropy(seen["logits"][0, :-1], torch.tensor(ids[1:])).item()
    assert abs(ce - seen["mean_ce"]) < 1e-4 and abs(ce - seen["loss"]) < 1e-4
    assert seen["sample"] == seen["sample_no_cache"]
    for i in range(len(lm.decoder.layers)):  # the plotted pattern is the one the (edited) scores give
        c = seen["cache"]
        q, k = c[f"blocks.{i}.attn.hook_q"].transpose(1, 2), c[f"blocks.{i}.attn.hook_k"].transpose(1, 2)
        if lm.model_params.pos_encoding == "rotary":
            q, k = lm.decoder.layers[i].self_attn.rotary(q, k, None)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        s = q.shape[-2]
        scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
        assert torch.allclose((scores * scalar).softmax(-1), seen["pattern"][:, i], atol=1e-5)


@pytest.mark.parametrize("kw", BLOCKS, ids=lambda kw: kw["layer_architecture"])
@pytest.mark.parametrize("edit", ["attn_scalar", "attn_requests", "square_ff"])
def test_seed_edit_examples_take_effect_everywhere(edit, kw, monkeypatch):
    lm = make_lm(**kw)
    before = observe(lm, WITH_10)
    assert_consistent(lm, before, WITH_10, 1.0)
    untouched = observe(lm, WITHOUT_10)
    apply_edit(edit, monkeypatch)
    after = observe(lm, WITH_10)
    scalar = 1.0 if edit == "square_ff" else 3.0
    assert_consistent(lm, after, WITH_10, scalar)
    assert (after["logits"] - before["logits"]).abs().max() > 1e-2
    assert abs(after["loss"] - before["loss"]) > 1e-3 and abs(after["mean_ce"] - before["mean_ce"]) > 1e-3
    assert (after["pattern"] - before["pattern"]).abs().max() > 1e-2
    assert after["sample"] != before["sample"]
    if edit == "attn_requests":  # the condition holds only when token 10 is in the input
        same = observe(lm, WITHOUT_10)
        assert torch.allclose(same["logits"], untouched["logits"], atol=1e-5)  # (its samples may generate a 10 themselves)
    expected = "attention: fused SDPA (unedited)" if edit == "square_ff" else "attention: explicit (edited: attention_pattern)"
    assert lm.attention_path() == expected


@pytest.mark.parametrize("kw", [*BLOCKS, dict(layer_architecture="custom-transformer", pos_encoding="rotary", rotary_frac=0.5, norm_first=False)],
                         ids=["custom", "llama", "rotary-half-postnorm"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_unedited_attention_is_fused_and_equals_the_explicit_math(kw, mode, monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: (calls.append(1), sdpa(*a, **k))[1])
    assert attn_math.edited_pieces() == [] and make_lm().attention_path() == "attention: fused SDPA (unedited)"
    lm = make_lm(**kw, dropout=0.0)
    getattr(lm, mode)()
    x = torch.randint(0, TOK.n_tokens, (3, 20))
    with torch.no_grad():
        fused = lm(x)
        fused_steps = lm.sample(["abc", "h>"], max_seq_len=16, temperature=0, as_str=False)
    n_fused = len(calls)
    assert n_fused > 0, "the unedited model runs the fused kernel"
    force_explicit(monkeypatch)  # same math, so only the path changes
    assert lm.attention_path() == "attention: explicit (edited: attention_pattern)"
    with torch.no_grad():
        explicit = lm(x)
        explicit_steps = lm.sample(["abc", "h>"], max_seq_len=16, temperature=0, as_str=False)
    assert len(calls) == n_fused, "an edited attention never calls the fused kernel"
    assert (fused - explicit).abs().max() <= 1e-5 and fused_steps == explicit_steps


def test_hooks_on_the_pattern_force_the_explicit_path(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: (calls.append(1), sdpa(*a, **k))[1])
    lm = make_lm(n_layers=1)
    with torch.no_grad():
        lm.run_with_cache("abc", names_filter=lambda n: n.endswith("hook_pattern"))
        assert calls == []
        lm.run_with_cache("abc", names_filter=lambda n: n.endswith("hook_z"))
        assert calls == [1]


def test_the_shipped_pieces_match_their_recorded_fingerprint():
    assert {n: attn_math.fingerprint(getattr(attn_math, n)) for n in attn_math.EDITABLE} == attn_math.UNEDITED_FINGERPRINT


def test_an_edit_to_the_file_itself_switches_to_the_explicit_path(tmp_path, monkeypatch):
    """The seed's instruction: insert the scaling line right before the softmax in the attention file."""
    src = open(attn_math.__file__).read()
    softmax_line = "    attn_output_weights = softmax(attn_output_weights, dim=-1)\n"
    assert src.count(softmax_line) == 1, "the seed's anchor line is in the file"
    edited = src.replace(softmax_line, "    attn_output_weights = attn_output_weights * model_params.attn_scalar\n" + softmax_line)
    comment_only = src.replace(softmax_line, softmax_line + "    # a comment changes nothing\n")
    monkeypatch.setitem(registry._runtime["attention"], "mha", registry._runtime["attention"]["mha"])  # keep the real class registered
    for name, text, expected in [("edited_attn", edited, ["attention_pattern"]), ("comment_attn", comment_only, [])]:
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        assert module.edited_pieces() == expected
    assert module.attention_path() == "attention: fused SDPA (unedited)"


def test_every_run_prints_its_attention_path(ws, capsys):
    ws.write_config("tiny", n_train_samples="64")
    assert ws.main("--config=tiny", "--no-wandb") == 0
    assert "attention: fused SDPA (unedited)" in capsys.readouterr().out.splitlines()


def test_patching_a_name_the_pieces_use_is_noticed(monkeypatch):
    lm = make_lm(n_layers=1)
    x = torch.tensor([TOK("abc>ab")])
    with torch.no_grad():
        before = lm(x)
        monkeypatch.setattr(attn_math, "softmax", lambda t, dim: F.softmax(2 * t, dim=dim))
        assert lm.attention_path() == "attention: explicit (edited: softmax)"
        assert (lm(x) - before).abs().max() > 1e-2
