"""The LM and its two layer architectures."""
from __future__ import annotations

import pytest
import torch

from data.tokenizer import CharTokenizer
from model.lm import LM
from model.model_params import ModelParams
from tests.attention_edits import force_explicit

TOK = CharTokenizer("abcdefgh>")


def pair(**kw):
    torch.manual_seed(0)
    a = LM(ModelParams(layer_architecture="torch-transformer", dim=32, n_heads=4, n_layers=3, max_seq_len=32, **kw), TOK)
    b = LM(ModelParams(layer_architecture="custom-transformer", dim=32, n_heads=4, n_layers=3, max_seq_len=32, **kw), TOK)
    b.load_state_dict(a.state_dict())  # same parameter names: strict load must succeed
    return a, b


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_architectures_agree_on_equal_weights(mode, norm_first, fast_path, monkeypatch):
    if not fast_path:
        force_explicit(monkeypatch)
    a, b = pair(norm_first=norm_first, activation="relu" if norm_first else "gelu")
    getattr(a, mode)()
    getattr(b, mode)()
    x = torch.randint(0, TOK.n_tokens, (3, 20))
    with torch.no_grad():
        diff = (a(x) - b(x)).abs().max().item()
        attn_diff = (a(x, get_attns=True)["attns"] - b(x, get_attns=True)["attns"]).abs().max().item()
    assert diff <= 1e-5 and attn_diff <= 1e-5


def test_edits_to_weights_change_logits():
    """Guards the equality test above against comparing a model with itself."""
    a, b = pair()
    with torch.no_grad():
        b.decoder.layers[0].mlp.linear1.weight.add_(0.1 * torch.randn_like(b.decoder.layers[0].mlp.linear1.weight))
    x = torch.randint(0, TOK.n_tokens, (2, 10))
    assert (a(x) - b(x)).abs().max() > 1e-3


def test_input_formats_and_shapes():
    a, _ = pair()
    a.eval()
    s = "abc>abc"
    ids = TOK(s)
    with torch.no_grad():
        r = a(s)
        assert r.shape == (1, len(ids), TOK.n_tokens)
        assert torch.equal(r, a(ids))
        assert torch.equal(r, a(torch.tensor(ids)))
        assert torch.equal(r, a(torch.Tensor(ids)))  # float tensors as in the seed's example
        batch = a(torch.tensor([ids, ids]))
        assert torch.allclose(batch[0:1], r, atol=1e-6)
        out = a(torch.tensor([ids, ids]), get_embeddings=True, get_attns=True)
    assert out["embeddings"].shape == (2, 3, len(ids), 32)
    assert out["attns"].shape == (2, 3, 4, len(ids), len(ids))
    assert torch.allclose(out["attns"].sum(-1), torch.ones(2, 3, 4, len(ids)), atol=1e-5)
    assert torch.all(out["attns"].triu(1) == 0)  # causal


def test_causality_future_tokens_do_not_change_past_logits():
    _, b = pair()
    b.eval()
    x = torch.randint(0, TOK.n_tokens, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % TOK.n_tokens
    with torch.no_grad():
        assert torch.allclose(b(x)[0, :8], b(y)[0, :8], atol=1e-6)


def test_too_long_input_is_refused():
    a, _ = pair()
    with pytest.raises(AssertionError, match="max_seq_len"):
        a(torch.zeros(1, 40, dtype=torch.long))


def test_sample_options():
    a, _ = pair()
    g = torch.Generator().manual_seed(0)
    s = a.sample("ab", max_seq_len=10, temperature=0)
    assert isinstance(s, str) and s.startswith("ab")
    ids = a.sample([TOK.bos_id], max_seq_len=10, as_str=False, top_k=3, generator=g)
    assert ids[0] == TOK.bos_id and len(ids) <= 10
    with pytest.raises(ValueError, match="mutually exclusive"):
        a.sample("a", nucleus=0.9, top_k=2)


def test_tied_embeddings_share_storage():
    a, _ = pair()
    assert a.out.weight.data_ptr() == a.embed.weight.data_ptr()
    untied = LM(ModelParams(tie_embeddings=False, dim=16, n_heads=2), TOK)
    assert untied.out.weight.data_ptr() != untied.embed.weight.data_ptr()
