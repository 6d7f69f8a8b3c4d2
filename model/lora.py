"""LoRA: train a low-rank update `W + (alpha / rank) * B @ A` of chosen weight matrices, the rest frozen.

Written as a `torch.nn.utils.parametrize` parametrization, so it adapts any 2-D weight: an
`nn.Linear`'s `weight` and also the raw `in_proj_weight` parameter our attention (and torch's
`nn.MultiheadAttention`) holds for q, k and v. `peft` was tried first: it wraps `nn.Linear`
modules well, but its `target_parameters` wrapper for raw parameters breaks torch's
`TransformerEncoderLayer` (attribute lookups on the wrapped attention fail) and its
`merge_and_unload` left nested wrappers unmerged in our layer, so q/k/v could not be adapted.

B starts at zero, so a freshly adapted model computes exactly the source model. `merge` folds
each update into its weight (same parameter names as before), which is how a LoRA run is
loaded for the explorer. The adapter (A and B only) is what a LoRA run saves.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


class LoRA(nn.Module):
    """The parametrization W ↦ W + scale · B A with A: (rank, in), B: (out, rank)."""

    def __init__(self, weight: Tensor, rank: int, alpha: float):
        super().__init__()
        out_f, in_f = weight.shape
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_f, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(out_f, rank, dtype=weight.dtype, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A

    def forward(self, weight: Tensor) -> Tensor:
        return weight + self.scale * (self.lora_B @ self.lora_A)


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, tensor_name = name.rpartition(".")
    return model.get_submodule(module_name), tensor_name


def add_lora(model: nn.Module, names: list[str], rank: int, alpha: float) -> None:
    """Adapt the 2-D weights `names` (parameter names of `model`) and freeze every other parameter."""
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        module, tensor_name = _owner(model, name)
        weight = getattr(module, tensor_name)
        if weight.dim() != 2:
            raise ValueError(f"LoRA adapts 2-D weights; {name} has shape {tuple(weight.shape)}")
        parametrize.register_parametrization(module, tensor_name, LoRA(weight.detach(), rank, alpha))


def adapted(model: nn.Module) -> list[tuple[str, LoRA]]:
    """(weight name, its LoRA) for every adapted weight, in module order."""
    out = []
    for module_name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            for tensor_name, plist in module.parametrizations.items():
                for p in plist:
                    if isinstance(p, LoRA):
                        out.append((f"{module_name}.{tensor_name}" if module_name else tensor_name, p))
    return out


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """`{weight name}.lora_A` / `.lora_B` for every adapted weight: all a LoRA run needs to save."""
    sd: dict[str, Tensor] = {}
    for name, lora in adapted(model):
        sd[f"{name}.lora_A"] = lora.lora_A.detach().clone()
        sd[f"{name}.lora_B"] = lora.lora_B.detach().clone()
    return sd


def load_adapter(model: nn.Module, sd: dict[str, Tensor], alpha: float) -> None:
    """Adapt the weights named in `sd` (as written by `adapter_state_dict`) and load its values."""
    names = sorted({k.rsplit(".", 1)[0] for k in sd})
    ranks = {sd[f"{n}.lora_A"].shape[0] for n in names}
    if len(ranks) != 1:
        raise ValueError(f"adapter mixes LoRA ranks {sorted(ranks)}")
    add_lora(model, names, ranks.pop(), alpha)
    for name, lora in adapted(model):
        lora.lora_A.data.copy_(sd[f"{name}.lora_A"])
        lora.lora_B.data.copy_(sd[f"{name}.lora_B"])


def merge(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight, in place: plain parameters under their usual names."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for tensor_name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, tensor_name, leave_parametrized=True)
    for p in model.parameters():
        p.requires_grad_(True)
    return model
