"""Hugging Face causal LMs as our `LM`: one converter per `model_type`, no copy of their model code.

Each converter turns an HF config into our `ModelParams` (registered components: GPT-2 = the
default block with learned positions and tanh GELU; GPT-NeoX = the default block with
`parallel_residual` and partial `rotary`; Llama = the `llama` block: RMSNorm, SwiGLU, rotary,
grouped-query attention) and renames the weights into ours, so sampling (KV cache),
perplexities, hooks and attention plots run through the same code as our own runs. A config our
components don't compute (another activation, rope scaling, an MLP width SwiGLU can't express)
is refused by name. Our rotary rotates (even, odd) pairs of dimensions where HF rotates
(i, i + half), so the q and k rows are permuted once here (`rotary_rows`): scores and logits are
unchanged, `hook_q`/`hook_k` hold the same numbers in our dimension order.

Loading (hub, cache, tokenizer) is not here: `train/hf_models.py` joins this with `core/hub.py`
and the tokenizer from `data/`. Add a family: one `@converter("model_type", "Label")` function.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from core.errors import UserError
from model.lm import LM
from model.model_params import ModelParams
from model.positional import rotary_dims

if TYPE_CHECKING:
    from data.tokenizer import Tokenizer

StateDict = dict[str, Tensor]
Convert = Callable[[Any, StateDict, str], tuple[ModelParams, StateDict]]  # (HF config, HF weights, name) → ours


@dataclass(frozen=True)
class Family:
    label: str  # for messages: "GPT-NeoX"
    convert: Convert


FAMILIES: dict[str, Family] = {}  # config.json model_type → converter
HF_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def converter(model_type: str, label: str) -> Callable[[Convert], Convert]:
    """Register the converter of an HF `model_type`."""
    def add(fn: Convert) -> Convert:
        FAMILIES[model_type] = Family(label, fn)
        return fn
    return add


def family(name: str, model_type: str) -> Family:
    """The registered family of `model_type`, or one line naming the supported ones."""
    if model_type not in FAMILIES:
        raise UserError(f"{name!r}: model_type {model_type!r} is not supported yet; supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[model_type]


def lm_from_hf(hf: Any, tokenizer: "Tokenizer", name: str = "") -> LM:
    """Our `LM` (eval mode) with the weights of a loaded HF causal LM and `tokenizer`."""
    config = hf.config
    mp, sd = family(name or config.model_type, config.model_type).convert(config, hf.state_dict(), name or config.model_type)
    vocab_size = config.vocab_size
    if tokenizer.n_tokens > vocab_size:
        raise UserError(f"{name}: tokenizer has {tokenizer.n_tokens} tokens but the model's vocab_size is {vocab_size}; load both from the same folder")
    lm = LM(mp, tokenizer)
    if vocab_size != lm.n_tokens:  # HF pads the embedding past the tokenizer (Pythia: 50304 rows for 50277 tokens)
        sd = {k: (v[: lm.n_tokens] if k in ("embed.weight", "out.weight") else v) for k, v in sd.items()}
    lm.load_state_dict(sd, strict=True)
    return lm.eval()


def _refuse(name: str, problems: list[tuple[bool, str]], what: str = "not supported by our components") -> None:
    bad = [why for cond, why in problems if cond]
    if bad:
        raise UserError(f"{name}: {what}: {', '.join(bad)}")


def _rope(config: Any) -> tuple[str, float, float]:
    """(rope type, rotated fraction of a head, base) across transformers versions."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    frac = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", getattr(config, "rotary_pct", 1.0)))
    base = rope.get("rope_theta", getattr(config, "rope_theta", getattr(config, "rotary_emb_base", 10000.0)))
    return kind, float(frac), float(base)


def rotary_rows(w: Tensor, n_heads: int, head_dim: int, rot_dim: int) -> Tensor:
    """Rows of a q or k projection (n_heads·head_dim, ...) from HF's rotate-half order to our pairs:
    our dims (2i, 2i+1) are HF's (i, i + rot_dim/2); dims past rot_dim stay."""
    half = rot_dim // 2
    perm = torch.cat([torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten(), torch.arange(rot_dim, head_dim)])
    return w.reshape(n_heads, head_dim, *w.shape[1:])[:, perm].reshape(w.shape)


# --- GPT-2 --------------------------------------------------------------------------------------
def gpt2_model_params(config: Any) -> ModelParams:
    """Our `ModelParams` for a `GPT2Config`; refuses variants our layer does not compute."""
    act = HF_ACTIVATIONS.get(config.activation_function)
    n_inner = config.n_inner or 4 * config.n_embd
    _refuse("this GPT-2 variant", [
        (act is None, f"activation {config.activation_function!r}"),
        (not config.scale_attn_weights, "scale_attn_weights=False"),
        (config.scale_attn_by_inverse_layer_idx, "scale_attn_by_inverse_layer_idx=True"),
        (getattr(config, "add_cross_attention", False), "cross-attention"),
    ], "not supported by our layer")
    width = {"dim_ff_factor": n_inner // config.n_embd} if n_inner % config.n_embd == 0 else {"ff_dim": n_inner}
    return ModelParams(layer_architecture="custom-transformer", dim=config.n_embd, n_layers=config.n_layer, n_heads=config.n_head,
                       **width, dropout=config.resid_pdrop, activation=act, norm_first=True,
                       layer_norm_eps=config.layer_norm_epsilon, pos_encoding="learned", max_seq_len=config.n_positions,
                       tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)))


# (our name, HF GPT-2's name; {} = weight or bias, whether HF stores the weight as Conv1D's (in, out))
GPT2_LAYER = (
    ("norm1.{}", "ln_1.{}", False),
    ("self_attn.in_proj_{}", "attn.c_attn.{}", True),
    ("self_attn.out_proj.{}", "attn.c_proj.{}", True),
    ("norm2.{}", "ln_2.{}", False),
    ("mlp.linear1.{}", "mlp.c_fc.{}", True),
    ("mlp.linear2.{}", "mlp.c_proj.{}", True),
)


def gpt2_state_dict(hf_sd: StateDict, n_layers: int) -> StateDict:
    """Rename HF GPT-2 weights to ours. HF's `Conv1D` stores (in, out): transpose to Linear's (out, in)."""
    sd = {
        "embed.weight": hf_sd["transformer.wte.weight"],
        "pos_enc.embedding.weight": hf_sd["transformer.wpe.weight"],
        "decoder.norm.weight": hf_sd["transformer.ln_f.weight"],
        "decoder.norm.bias": hf_sd["transformer.ln_f.bias"],
        "out.weight": hf_sd.get("lm_head.weight", hf_sd["transformer.wte.weight"]),
    }
    for i in range(n_layers):
        for ours, theirs, conv1d in GPT2_LAYER:
            for kind in ("weight", "bias"):
                v = hf_sd[f"transformer.h.{i}." + theirs.format(kind)]
                sd[f"decoder.layers.{i}." + ours.format(kind)] = v.t().contiguous() if conv1d and kind == "weight" else v
    return sd


@converter("gpt2", "GPT-2")
def _gpt2(config: Any, hf_sd: StateDict, name: str) -> tuple[ModelParams, StateDict]:
    """GPT-2: pre-LN, learned positions, tied embeddings, tanh GELU."""
    mp = gpt2_model_params(config)
    return mp, gpt2_state_dict(hf_sd, mp.n_layers)


# --- GPT-NeoX / Pythia --------------------------------------------------------------------------
@converter("gpt_neox", "GPT-NeoX")
def _gpt_neox(c: Any, hf_sd: StateDict, name: str) -> tuple[ModelParams, StateDict]:
    """GPT-NeoX / Pythia: LayerNorm, parallel attention and MLP, partial rotary, untied head."""
    kind, frac, base = _rope(c)
    _refuse(name, [
        (c.hidden_act not in ("gelu", "relu"), f"activation {c.hidden_act!r}"),
        (kind != "default", f"rope type {kind!r}"),
        (not getattr(c, "attention_bias", True), "attention_bias=False"),
    ])
    n_heads, dim = c.num_attention_heads, c.hidden_size
    hd = dim // n_heads
    mp = ModelParams(layer_architecture="custom-transformer", dim=dim, n_layers=c.num_hidden_layers, n_heads=n_heads,
                     ff_dim=c.intermediate_size, activation=c.hidden_act, norm_first=True,
                     parallel_residual=bool(c.use_parallel_residual), layer_norm_eps=c.layer_norm_eps, pos_encoding="rotary",
                     rotary_frac=frac, rotary_base=base, max_seq_len=c.max_position_embeddings,
                     tie_embeddings=bool(getattr(c, "tie_word_embeddings", False)), dropout=0.0)
    rot = rotary_dims(hd, frac)
    head = next((hf_sd[k] for k in ("embed_out.weight", "lm_head.weight") if k in hf_sd), hf_sd["gpt_neox.embed_in.weight"])  # renamed in transformers 5
    sd = {"embed.weight": hf_sd["gpt_neox.embed_in.weight"], "out.weight": head,
          "decoder.norm.weight": hf_sd["gpt_neox.final_layer_norm.weight"], "decoder.norm.bias": hf_sd["gpt_neox.final_layer_norm.bias"]}
    for i in range(mp.n_layers):
        h, ours = f"gpt_neox.layers.{i}.", f"decoder.layers.{i}."
        qkv_w = hf_sd[h + "attention.query_key_value.weight"].reshape(n_heads, 3, hd, dim)
        qkv_b = hf_sd[h + "attention.query_key_value.bias"].reshape(n_heads, 3, hd)
        q_w, k_w, v_w = (qkv_w[:, j].reshape(dim, dim) for j in range(3))
        q_b, k_b, v_b = (qkv_b[:, j].reshape(dim) for j in range(3))
        sd.update({
            ours + "self_attn.in_proj_weight": torch.cat([rotary_rows(q_w, n_heads, hd, rot), rotary_rows(k_w, n_heads, hd, rot), v_w]),
            ours + "self_attn.in_proj_bias": torch.cat([rotary_rows(q_b, n_heads, hd, rot), rotary_rows(k_b, n_heads, hd, rot), v_b]),
            ours + "self_attn.out_proj.weight": hf_sd[h + "attention.dense.weight"],
            ours + "self_attn.out_proj.bias": hf_sd[h + "attention.dense.bias"],
            ours + "mlp.linear1.weight": hf_sd[h + "mlp.dense_h_to_4h.weight"],
            ours + "mlp.linear1.bias": hf_sd[h + "mlp.dense_h_to_4h.bias"],
            ours + "mlp.linear2.weight": hf_sd[h + "mlp.dense_4h_to_h.weight"],
            ours + "mlp.linear2.bias": hf_sd[h + "mlp.dense_4h_to_h.bias"],
        })
        for n in ("weight", "bias"):
            sd[ours + f"norm1.{n}"] = hf_sd[h + f"input_layernorm.{n}"]
            sd[ours + f"norm2.{n}"] = hf_sd[h + f"post_attention_layernorm.{n}"]
    return mp, sd


# --- Llama --------------------------------------------------------------------------------------
@converter("llama", "Llama")
def _llama(c: Any, hf_sd: StateDict, name: str) -> tuple[ModelParams, StateDict]:
    """Llama: RMSNorm, SwiGLU, rotary, grouped-query attention, no biases (the `llama` block)."""
    kind, frac, base = _rope(c)
    n_heads, n_kv, dim = c.num_attention_heads, c.num_key_value_heads, c.hidden_size
    hd = dim // n_heads
    _refuse(name, [
        (c.hidden_act != "silu", f"activation {c.hidden_act!r}"),
        (kind != "default", f"rope type {kind!r}"),
        (getattr(c, "head_dim", hd) != hd, f"head_dim={getattr(c, 'head_dim', hd)} != hidden_size/num_attention_heads"),
        (getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False), "biases"),
    ])
    mp = ModelParams(layer_architecture="llama", dim=dim, n_layers=c.num_hidden_layers, n_heads=n_heads, n_kv_heads=n_kv,
                     ff_dim=c.intermediate_size, norm_first=True, layer_norm_eps=c.rms_norm_eps, pos_encoding="rotary", rotary_frac=frac,
                     rotary_base=base, max_seq_len=c.max_position_embeddings, tie_embeddings=bool(c.tie_word_embeddings), dropout=0.0)
    rot = rotary_dims(hd, frac)
    sd = {"embed.weight": hf_sd["model.embed_tokens.weight"], "out.weight": hf_sd.get("lm_head.weight", hf_sd["model.embed_tokens.weight"]),
          "decoder.norm.weight": hf_sd["model.norm.weight"]}
    for i in range(mp.n_layers):
        h, ours = f"model.layers.{i}.", f"decoder.layers.{i}."
        sd.update({
            ours + "norm1.weight": hf_sd[h + "input_layernorm.weight"],
            ours + "norm2.weight": hf_sd[h + "post_attention_layernorm.weight"],
            ours + "self_attn.in_proj_weight": torch.cat([
                rotary_rows(hf_sd[h + "self_attn.q_proj.weight"], n_heads, hd, rot),
                rotary_rows(hf_sd[h + "self_attn.k_proj.weight"], n_kv, hd, rot),
                hf_sd[h + "self_attn.v_proj.weight"]]),
            ours + "self_attn.out_proj.weight": hf_sd[h + "self_attn.o_proj.weight"],
            ours + "mlp.gate_up.weight": torch.cat([hf_sd[h + "mlp.gate_proj.weight"], hf_sd[h + "mlp.up_proj.weight"]]),
            ours + "mlp.down.weight": hf_sd[h + "mlp.down_proj.weight"],
        })
    return mp, sd
