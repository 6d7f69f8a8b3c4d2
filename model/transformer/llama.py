"""`llama`: a Llama-style block — RMSNorm, SwiGLU MLP, rotary positions, grouped-query attention
(`ModelParams.n_kv_heads`), no biases — as one registration on top of the default block.

It only chooses components; the structure (`_sa_block`, `_ff_block`, residuals), the attention
(fused while unedited, `torch_f_multi_head_attention_forward.py`), hooks, the KV cache,
sampling and saving all come from the harness, which is what "add a block" looks like:

    @block("my-block")
    class MyBlock(TransformerEncoderLayer):      # or subclass model.transformer.block.Block
        default_mlp = "swiglu"                    # any registered component
"""
from __future__ import annotations

from core.errors import UserError
from model.model_params import ModelParams
from model.registry import block
from model.transformer.transformerencoderlayer import TransformerEncoderLayer


@block("llama")
class LlamaBlock(TransformerEncoderLayer):
    """Llama: pre-RMSNorm, grouped-query attention with rotary q/k, SwiGLU MLP, no biases (needs pos_encoding='rotary')."""

    default_attention = "mha"
    default_mlp = "swiglu"
    default_norm = "rmsnorm"
    default_bias = False

    def __init__(self, mp: ModelParams):
        if mp.pos_encoding != "rotary":
            raise UserError(f"layer_architecture='llama' uses rotary positions; set pos_encoding='rotary' (got {mp.pos_encoding!r})")
        super().__init__(mp)
