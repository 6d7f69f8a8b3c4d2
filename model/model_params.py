"""ModelParams: the architecture (the `ModelParams` config section). Add your own switches here."""
from __future__ import annotations

from dataclasses import dataclass

from train.params_base import param


@dataclass
class ModelParams:
    layer_architecture: str = param("torch-transformer", "'torch-transformer' (torch's own layer) or 'custom-transformer' (our editable copy)", choices=("torch-transformer", "custom-transformer"))
    dim: int = param(64, "model (residual stream) width", min=1, max=2**16)
    n_layers: int = param(2, "number of transformer layers", min=1, max=4096)
    n_heads: int = param(4, "attention heads per layer; must divide dim", min=1, max=4096)
    dim_ff_factor: int = param(4, "feed-forward hidden width = dim_ff_factor * dim", min=1, max=1024)
    dropout: float = param(0.0, "dropout inside the layers and on the embeddings", min=0, lt=1)
    activation: str = param("gelu", "feed-forward activation: 'gelu', 'relu' or 'gelu_tanh' (GPT-2's tanh approximation)", choices=("gelu", "relu", "gelu_tanh"))
    norm_first: bool = param(True, "pre-LayerNorm blocks (GPT-2 style) if True, post-LN if False")
    layer_norm_eps: float = param(1e-5, "LayerNorm epsilon", gt=0, max=1)
    pos_encoding: str = param("learned", "positional encoding: 'learned', 'sinusoidal', 'random' (sinusoidal at random sorted positions < max_posencs), 'rotary' (RoPE; custom-transformer only) or 'none'", choices=("learned", "sinusoidal", "random", "rotary", "none"))
    max_posencs: int = param(1024, "pos_encoding='random': positions are drawn from 0..max_posencs-1 (>= max_seq_len)", min=1, max=2**24)
    max_seq_len: int = param(512, "longest sequence the model can read (size of the positional table)", min=1, max=2**24)
    tie_embeddings: bool = param(True, "share the token embedding with the output head")
    attn_fast_path: bool = param(True, "custom-transformer: use F.scaled_dot_product_attention when no one asks for weights; set False once you edit the attention math")
