"""model/from_hf.py: a new HF family is one registered converter; loading pads, checks and dispatches by model_type."""
from __future__ import annotations

import types

import pytest
import torch

from core.errors import UserError
from data.tokenizer import CharTokenizer
from model.from_hf import FAMILIES, converter, lm_from_hf
from model.lm import LM
from model.model_params import ModelParams

TOY = ModelParams(dim=16, n_layers=1, n_heads=2, max_seq_len=8, dropout=0.0)


@pytest.fixture
def toy_family():
    """A made-up `model_type` whose HF weights are ours under a `toy.` prefix (what a real converter renames)."""
    @converter("toy", "Toy")
    def convert(config, hf_sd, name):
        return TOY, {k.removeprefix("toy."): v for k, v in hf_sd.items()}

    yield convert
    FAMILIES.pop("toy")


def fake_hf(lm: LM, pad_rows: int = 0) -> types.SimpleNamespace:
    """An object shaped like a transformers model: `.config.model_type`, `.config.vocab_size`, `.state_dict()`."""
    sd = {}
    for k, v in lm.state_dict().items():
        if k in ("embed.weight", "out.weight") and pad_rows:  # HF pads the vocabulary past the tokenizer (Pythia)
            v = torch.cat([v, torch.randn(pad_rows, v.shape[1])])
        sd["toy." + k] = v
    config = types.SimpleNamespace(model_type="toy", vocab_size=lm.n_tokens + pad_rows)
    return types.SimpleNamespace(config=config, state_dict=lambda: sd)


def test_a_registered_converter_is_all_a_new_family_needs(toy_family):
    tok = CharTokenizer.from_texts(["abcde"])
    torch.manual_seed(0)
    src = LM(TOY, tok).eval()
    x = torch.tensor([tok.encode("abca")])
    for pad in (0, 5):
        lm = lm_from_hf(fake_hf(src, pad), tok, "toy-model")
        assert not lm.training and lm.n_tokens == src.n_tokens
        with torch.no_grad():
            assert torch.equal(lm(x), src(x)), "same weights, padding rows dropped"


def test_unknown_family_and_a_tokenizer_bigger_than_the_vocab_are_one_line(toy_family):
    tok = CharTokenizer.from_texts(["abcde"])
    hf = fake_hf(LM(TOY, tok))
    hf.config.model_type = "mamba"
    with pytest.raises(UserError, match="model_type 'mamba' is not supported yet; supported: .*toy"):
        lm_from_hf(hf, tok, "m")
    small = fake_hf(LM(TOY, CharTokenizer.from_texts(["ab"])))
    with pytest.raises(UserError, match=r"tokenizer has \d+ tokens but the model's vocab_size is \d+; load both from the same folder"):
        lm_from_hf(small, tok, "m")
