"""`custom-transformer`, the default block: THE place to edit the layer (`_sa_block`, `_ff_block`,
residuals, norms). Other blocks (e.g. `llama.py`) subclass it and only choose their components.

Structure of torch's `nn.TransformerEncoderLayer` (pre- or post-norm), optionally GPT-NeoX's
parallel residual. Components come from the registries (model/registry.py): attention (`mha`,
in `torch_f_multi_head_attention_forward.py`), MLP (`mlp`), norm (`layernorm`), each
replaceable from the config (`attention=`, `mlp=`, `norm=`). Parameter names match torch's
layer (`self_attn.in_proj_weight`, `norm1`, ...; the MLP's under `mlp.`), and torch-named
weights (torch's layer, runs saved before the registries) load through `LEGACY_NAMES`.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.model_params import ModelParams
from model.registry import block, get
from model.transformer.block import Block, BlockContext
from model.transformer.components import ACTIVATIONS, build  # noqa: F401  (ACTIVATIONS: old import path)

# old or torch parameter name (relative to the block) -> ours
LEGACY_NAMES = {"linear1.": "mlp.linear1.", "linear2.": "mlp.linear2."}


@block("custom-transformer")
class TransformerEncoderLayer(Block):
    """Editable GPT-2/torch-style block: LayerNorm, multi-head attention (fused while unedited), GELU MLP, biases."""

    default_attention = "mha"
    default_mlp = "mlp"
    default_norm = "layernorm"
    default_bias = True

    def __init__(self, mp: ModelParams):
        super().__init__()
        self.model_params = mp
        bias = self.default_bias if mp.bias is None else mp.bias
        self.norm_first = mp.norm_first
        self.parallel = mp.parallel_residual
        self.norm1 = build("norm", self.norm_name(mp), mp, bias=bias)
        self.self_attn = build("attention", mp.attention or self.default_attention, mp, bias=bias, rotary=qk_rotation(mp))
        self.norm2 = build("norm", self.norm_name(mp), mp, bias=bias)
        self.mlp = build("mlp", mp.mlp or self.default_mlp, mp, bias=bias)
        self.dropout_sa = nn.Dropout(mp.dropout)
        self.dropout_ff = nn.Dropout(mp.dropout)
        self._register_load_state_dict_pre_hook(_rename_legacy, with_module=True)

    @classmethod
    def norm_name(cls, mp: ModelParams) -> str:
        return mp.norm or cls.default_norm

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        """x: (batch, seq, dim), causal → the new residual stream (hook names in docs/hooks.md)."""
        hook = ctx.hook
        if self.parallel:  # both sub-layers read the block's input (GPT-J, GPT-NeoX)
            attn = hook("hook_attn_out", self._sa_block(self.norm1(x), ctx))
            ff = hook("hook_mlp_out", self._ff_block(self.norm2(x), hook))
            return hook("hook_resid_mid", x + attn) + ff
        if self.norm_first:
            x = hook("hook_resid_mid", x + hook("hook_attn_out", self._sa_block(self.norm1(x), ctx)))
            x = x + hook("hook_mlp_out", self._ff_block(self.norm2(x), hook))
        else:
            x = hook("hook_resid_mid", self.norm1(x + hook("hook_attn_out", self._sa_block(x, ctx))))
            x = self.norm2(x + hook("hook_mlp_out", self._ff_block(x, hook)))
        return x

    def _sa_block(self, x: Tensor, ctx: BlockContext) -> Tensor:
        x = self.self_attn(x, ctx.attn_requests, ctx.hook.scoped("attn."), ctx.kv_cache, ctx.positions)
        return self.dropout_sa(x)

    def _ff_block(self, x: Tensor, hook: Hook = NO_HOOK) -> Tensor:
        x = self.mlp(x, hook)
        return self.dropout_ff(x)


def qk_rotation(mp: ModelParams) -> nn.Module | None:
    """The q/k rotation the positional encoding asks for ('rotary'), or None."""
    return get("pos_encoding", mp.pos_encoding).qk_rotation(mp, mp.dim // mp.n_heads)


def _rename_legacy(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Load torch-named / pre-registry weights (`linear1.weight` → `mlp.linear1.weight`)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rel = key[len(prefix):]
        for old, new in LEGACY_NAMES.items():
            if rel.startswith(old) and prefix + new + rel[len(old):] not in state_dict:
                state_dict[prefix + new + rel[len(old):]] = state_dict.pop(key)
