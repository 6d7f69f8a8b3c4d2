"""model/lora.py and train/freeze.py on a tiny LM: LoRA is exact at start, trains only adapters, merges exactly."""
from __future__ import annotations

import pytest
import torch

from data.tokenizer import CharTokenizer
from model.lm import LM
from model.lora import adapter_state_dict, add_lora, load_adapter, merge
from model.model_params import ModelParams
from core.errors import UserError
from train.freeze import aliases, freeze, param_summary, select


def tiny_lm(arch: str, seed: int = 0) -> LM:
    torch.manual_seed(seed)
    return LM(ModelParams(layer_architecture=arch, dim=16, n_layers=2, n_heads=2, max_seq_len=16), CharTokenizer("abcd")).eval()


def block_weights(lm: LM) -> list[str]:
    return [n for n, p in lm.named_parameters() if p.dim() == 2 and n.startswith("decoder.layers.")]


X = torch.tensor([[1, 3, 4, 5, 6, 3, 4], [1, 6, 5, 4, 3, 3, 2]])


@pytest.mark.parametrize("arch", ["custom-transformer", "torch-transformer"])
def test_lora_is_exact_at_start_and_merges_into_plain_weights(arch):
    lm = tiny_lm(arch)
    names = block_weights(lm)
    assert any(n.endswith("self_attn.in_proj_weight") for n in names)  # a raw parameter, not an nn.Linear
    before_names = [n for n, _ in lm.named_parameters()]
    with torch.no_grad():
        base = lm(X)
    add_lora(lm, names, rank=2, alpha=4.0)
    with torch.no_grad():
        assert torch.equal(lm(X), base), "B starts at zero: the adapted model is the source model"
    trainable = [n for n, p in lm.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * len(names)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in lm.named_parameters():
            if n.endswith("lora_B"):
                p.normal_()
        adapted_out = lm(X)
    assert (adapted_out - base).abs().max() > 1e-2, "every adapted weight takes part in the forward pass"
    adapter = adapter_state_dict(lm)
    assert sorted(adapter) == sorted(f"{n}.lora_{ab}" for n in names for ab in "AB")

    merge(lm)
    assert sorted(n for n, _ in lm.named_parameters()) == sorted(before_names)
    with torch.no_grad():
        assert torch.allclose(lm(X), adapted_out, atol=1e-5)
    # the saved adapter applied to a fresh copy of the source gives the same merged weights
    fresh = tiny_lm(arch)
    load_adapter(fresh, adapter, alpha=4.0)
    merge(fresh)
    theirs = fresh.state_dict()
    for n, a in lm.state_dict().items():
        assert torch.equal(a, theirs[n]), n


def test_lora_trains_only_the_adapters():
    lm = tiny_lm("custom-transformer").train()
    source = {k: v.clone() for k, v in lm.state_dict().items()}
    add_lora(lm, block_weights(lm), rank=2, alpha=2.0)
    opt = torch.optim.SGD([p for p in lm.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        loss = lm.get_losses({"x_indices": X, "mask": torch.ones_like(X, dtype=torch.bool)})[0]["main"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    adapter = adapter_state_dict(lm)
    assert all(adapter[k].abs().sum() > 0 for k in adapter if k.endswith("lora_B")), "B moved away from zero"
    merge(lm)
    changed = {k for k, v in lm.state_dict().items() if not torch.equal(v, source[k])}
    assert changed == set(block_weights(lm)), "only the adapted matrices change"


def test_freeze_patterns_use_hook_style_names_and_count_frozen():
    lm = tiny_lm("custom-transformer")
    assert aliases("decoder.layers.1.linear1.weight") == ("decoder.layers.1.linear1.weight", "blocks.1.linear1.weight")
    total = sum(p.numel() for p in lm.parameters())
    assert param_summary(lm) == f"{total:,} parameters"
    chosen = freeze(lm, ["blocks.0.*", "out"])  # 'out' is tied to 'embed': one tensor, both frozen
    assert "decoder.layers.0.self_attn.in_proj_weight" in chosen and "out.weight" in chosen
    assert not lm.embed.weight.requires_grad
    assert all(p.requires_grad for n, p in lm.named_parameters() if n.startswith("decoder.layers.1."))
    frozen = sum(p.numel() for p in lm.parameters() if not p.requires_grad)
    assert param_summary(lm) == f"{total:,} parameters ({total - frozen:,} trainable / {frozen:,} frozen)"
    with pytest.raises(UserError, match=r"TrainParams.freeze: pattern 'blocks.9.\*' matches no parameter"):
        freeze(lm, ["blocks.9.*"])
    assert select(["embed.weight", "pos_enc.embedding.weight"], ["embed"], "k") == ["embed.weight"]  # whole names only
