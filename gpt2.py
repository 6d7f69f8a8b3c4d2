"""GPT-2 in the same interface as the models trained here: `lm_gpt2 = gpt2.get_gpt2()`.

The weights are loaded with `transformers` (`GPT2LMHeadModel.from_pretrained`) and copied into
our own `LM` with the `custom-transformer` layer: GPT-2 is a pre-LN transformer with learned
positions, tied embeddings and a final LayerNorm, which is exactly that architecture with the
tanh-approximated GELU. So calling it, `sample` (beam search, KV cache), `perplexities`,
`get_embeddings=True`, `run_with_cache`/`run_with_hooks` and `model_explorer.show_lm_attns`
all run through the same code as for our models; a test holds its logits equal to HF's.
The tokenizer is `data.hf_tokenizers.PretrainedTokenizer` (`<|endoftext|>` is BOS, EOS and PAD).
"""
from __future__ import annotations

from typing import Any

from train.errors import UserError

HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def get_gpt2(name_or_path: str = "gpt2", device: str | None = None, revision: str | None = None) -> Any:
    """GPT-2 (any size, or a folder written by `save_pretrained`) as an `LM`, in eval mode."""
    hf = load_hf_gpt2(name_or_path, revision)
    from data.hf_tokenizers import PretrainedTokenizer

    lm = lm_from_hf(hf, PretrainedTokenizer.load(name_or_path))
    return lm.to(device) if device else lm


def load_hf_gpt2(name_or_path: str, revision: str | None = None) -> Any:
    from transformers import GPT2LMHeadModel

    from pretrained import load_hf

    return load_hf(GPT2LMHeadModel, name_or_path, revision, what="GPT-2")


def model_params_from_hf(config: Any) -> Any:
    """Our `ModelParams` for a `GPT2Config`; refuses variants our layer does not compute."""
    from model.model_params import ModelParams

    act = HF_ACTIVATIONS.get(config.activation_function)
    n_inner = config.n_inner or 4 * config.n_embd
    problems = [
        (act is None, f"activation {config.activation_function!r}"),
        (n_inner % config.n_embd != 0, f"n_inner={n_inner} not a multiple of n_embd={config.n_embd}"),
        (not config.scale_attn_weights, "scale_attn_weights=False"),
        (config.scale_attn_by_inverse_layer_idx, "scale_attn_by_inverse_layer_idx=True"),
        (getattr(config, "add_cross_attention", False), "cross-attention"),
    ]
    bad = [what for cond, what in problems if cond]
    if bad:
        raise UserError(f"this GPT-2 variant is not supported by our layer: {', '.join(bad)}")
    return ModelParams(
        layer_architecture="custom-transformer",
        dim=config.n_embd,
        n_layers=config.n_layer,
        n_heads=config.n_head,
        dim_ff_factor=n_inner // config.n_embd,
        dropout=config.resid_pdrop,
        activation=act,
        norm_first=True,
        layer_norm_eps=config.layer_norm_epsilon,
        pos_encoding="learned",
        max_seq_len=config.n_positions,
        tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
    )


def state_dict_from_hf(hf_sd: dict[str, Any], n_layers: int) -> dict[str, Any]:
    """Rename HF GPT-2 weights to ours. HF's `Conv1D` stores (in, out): transpose to Linear's (out, in)."""
    t = lambda name: hf_sd[name].t().contiguous()  # noqa: E731
    sd = {
        "embed.weight": hf_sd["transformer.wte.weight"],
        "pos_enc.embedding.weight": hf_sd["transformer.wpe.weight"],
        "decoder.norm.weight": hf_sd["transformer.ln_f.weight"],
        "decoder.norm.bias": hf_sd["transformer.ln_f.bias"],
        "out.weight": hf_sd.get("lm_head.weight", hf_sd["transformer.wte.weight"]),
    }
    for i in range(n_layers):
        h, ours = f"transformer.h.{i}.", f"decoder.layers.{i}."
        sd.update({
            ours + "norm1.weight": hf_sd[h + "ln_1.weight"],
            ours + "norm1.bias": hf_sd[h + "ln_1.bias"],
            ours + "self_attn.in_proj_weight": t(h + "attn.c_attn.weight"),
            ours + "self_attn.in_proj_bias": hf_sd[h + "attn.c_attn.bias"],
            ours + "self_attn.out_proj.weight": t(h + "attn.c_proj.weight"),
            ours + "self_attn.out_proj.bias": hf_sd[h + "attn.c_proj.bias"],
            ours + "norm2.weight": hf_sd[h + "ln_2.weight"],
            ours + "norm2.bias": hf_sd[h + "ln_2.bias"],
            ours + "mlp.linear1.weight": t(h + "mlp.c_fc.weight"),
            ours + "mlp.linear1.bias": hf_sd[h + "mlp.c_fc.bias"],
            ours + "mlp.linear2.weight": t(h + "mlp.c_proj.weight"),
            ours + "mlp.linear2.bias": hf_sd[h + "mlp.c_proj.bias"],
        })
    return sd


def lm_from_hf(hf: Any, tokenizer: Any) -> Any:
    """Copy a loaded `GPT2LMHeadModel` into our `LM` with `tokenizer` (our interface)."""
    from model.lm import LM

    mp = model_params_from_hf(hf.config)
    if tokenizer.n_tokens != hf.config.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.n_tokens} tokens but the model's vocab_size is {hf.config.vocab_size}; load both from the same folder")
    lm = LM(mp, tokenizer)
    lm.load_state_dict(state_dict_from_hf(hf.state_dict(), mp.n_layers), strict=True)
    return lm.eval()
