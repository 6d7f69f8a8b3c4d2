"""ModelParams: the architecture (the `ModelParams` config section). Add your own switches here.

The component fields (`layer_architecture`, `attention`, `mlp`, `norm`, `pos_encoding`) accept
whatever is registered (model/registry.py); `None` means the block's own choice.
"""
from __future__ import annotations

from dataclasses import dataclass

from model.registry import Choices
from core.params_base import param

# Keys that older configs and saved runs may hold, with what replaced them (one line each).
REMOVED = {
    "attn_fast_path": "attn_fast_path was removed: the attention runs fused only while its editable pieces are unedited, "
    "and any edit switches to the explicit path by itself (see model/transformer/torch_f_multi_head_attention_forward.py)",
}


@dataclass
class ModelParams:
    layer_architecture: str = param("custom-transformer", "the transformer block (registered with @block): 'custom-transformer' (editable, fused attention while unedited), 'llama', 'torch-transformer' (torch's own layer, the reference)", choices=Choices("block"))
    dim: int = param(64, "model (residual stream) width", min=1, max=2**16)
    n_layers: int = param(2, "number of transformer layers", min=1, max=4096)
    n_heads: int = param(4, "attention heads per layer; must divide dim", min=1, max=4096)
    n_kv_heads: int | None = param(None, "key/value heads (grouped-query attention); None = n_heads; must divide n_heads", min=1, max=4096)
    dim_ff_factor: int = param(4, "feed-forward hidden width = dim_ff_factor * dim; 0 = no feed-forward block (attention-only: only its output bias remains)", min=0, max=1024)
    ff_dim: int | None = param(None, "feed-forward hidden width, overriding dim_ff_factor (e.g. a pretrained Llama's intermediate_size); None = from dim_ff_factor", min=1, max=2**20)
    dropout: float = param(0.0, "dropout inside the layers and on the embeddings", min=0, lt=1)
    activation: str = param("gelu", "feed-forward activation: 'gelu', 'relu' or 'gelu_tanh' (GPT-2's tanh approximation)", choices=("gelu", "relu", "gelu_tanh"))
    norm_first: bool = param(True, "pre-norm blocks (GPT-2, Llama) if True, post-norm if False")
    parallel_residual: bool = param(False, "x + attn(norm1(x)) + mlp(norm2(x)) in one step (GPT-J/GPT-NeoX) instead of attention then MLP")
    layer_norm_eps: float = param(1e-5, "norm epsilon (LayerNorm and RMSNorm)", gt=0, max=1)
    attention: str | None = param(None, "attention component (registered with @attention); None = the block's default", choices=Choices("attention", allow_none=True))
    mlp: str | None = param(None, "feed-forward component (registered with @mlp), e.g. 'mlp', 'swiglu'; None = the block's default", choices=Choices("mlp", allow_none=True))
    norm: str | None = param(None, "norm component (registered with @norm), e.g. 'layernorm', 'rmsnorm'; None = the block's default", choices=Choices("norm", allow_none=True))
    bias: bool | None = param(None, "biases in the attention and MLP projections; None = the block's default (custom: yes, llama: no)")
    pos_encoding: str = param("learned", "positional encoding (registered with @pos_encoding): 'learned', 'sinusoidal', 'random', 'rotary' (rotates q and k; not with torch-transformer), 'none'", choices=Choices("pos_encoding"))
    rotary_frac: float = param(1.0, "pos_encoding='rotary': fraction of each head's dimensions that are rotated (GPT-NeoX/Pythia use 0.25)", gt=0, max=1)
    rotary_base: float = param(10000.0, "pos_encoding='rotary': base of the rotation frequencies", gt=1, max=1e9)
    max_posencs: int = param(1024, "pos_encoding='random': positions are drawn from 0..max_posencs-1 (>= max_seq_len)", min=1, max=2**24)
    max_seq_len: int = param(512, "longest sequence the model can read (size of the positional table)", min=1, max=2**24)
    tie_embeddings: bool = param(True, "share the token embedding with the output head")
