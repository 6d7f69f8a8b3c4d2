"""Pretrained Hugging Face models in our `LM` interface: GPT-2, GPT-NeoX/Pythia, Llama.

    import pretrained
    lm = pretrained.get_hf_model("gpt2")                       # a hub name, or a save_pretrained folder
    lm = pretrained.get_pythia("70m", step=1000)               # EleutherAI/pythia-70m at revision step1000
    for label, lm in pretrained.get_all_checkpoints([folder_a, folder_b]):   # a training trajectory
        ...
    table = pretrained.over_checkpoints([0, 1000, 143000], fn)   # dynamics.Table → plot_over_checkpoints

`get_hf_model` reads the model's `config.json` and hands it to the loader registered for its
`model_type` in `FAMILIES`. Each loader turns the HF config into our `ModelParams` (registered
components: GPT-NeoX = the default block with `parallel_residual` and partial `rotary`; Llama =
the `llama` block: RMSNorm, SwiGLU, rotary, grouped-query attention) and renames the weights
into our `LM` — no copy of the model code — so sampling (KV cache), perplexities, hooks and
attention plots run through the same code as our own runs. A config our components don't
compute (another activation, rope scaling, an MLP width SwiGLU can't express) is refused by
name. Our rotary rotates (even, odd) pairs of dimensions where HF rotates (i, i + half), so the
q and k rows are permuted once at load time (`rotary_rows`): scores and logits are unchanged,
`hook_q`/`hook_k` hold the same numbers in our dimension order.
Offline, a hub name that is not in the local cache stops with one line saying how to supply a
folder instead.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from core.errors import UserError

# model_type (config.json) → loader(name_or_folder, revision) returning our LM in eval mode
FAMILIES: dict[str, Callable[[str, str | None], Any]] = {}

PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")


def family(model_type: str) -> Callable:
    """Register a loader for a `model_type`."""
    def add(fn: Callable) -> Callable:
        FAMILIES[model_type] = fn
        return fn
    return add


@family("gpt2")
def _gpt2(name: str, revision: str | None) -> Any:
    import gpt2

    return gpt2.get_gpt2(name, revision=revision)


def load_hf(cls: Any, name_or_path: str, revision: str | None = None, what: str = "model") -> Any:
    """`cls.from_pretrained` on a folder, the hub, or (offline) the local HF cache; a failure is one line."""
    from data.hf_datasets import hub_offline, hub_reachable

    local = Path(name_or_path).expanduser().is_dir()
    online = local or hub_reachable()
    try:
        with nullcontext() if online else hub_offline():
            return cls.from_pretrained(str(Path(name_or_path).expanduser()) if local else name_or_path, local_files_only=not online, revision=revision)
    except (OSError, ValueError) as e:
        where = "the local folder" if local else ("the Hugging Face hub" if online else "the local HF cache (the hub is unreachable)")
        raise UserError(f"{what} {name_or_path!r}: could not load it from {where} ({type(e).__name__}); pass a hub name or a save_pretrained folder") from None


def _refuse(name: str, problems: list[tuple[bool, str]]) -> None:
    bad = [what for cond, what in problems if cond]
    if bad:
        raise UserError(f"{name}: not supported by our components: {', '.join(bad)}")


def _rope(config: Any) -> tuple[str, float, float]:
    """(rope type, rotated fraction of a head, base) across transformers versions."""
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    frac = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", getattr(config, "rotary_pct", 1.0)))
    base = rope.get("rope_theta", getattr(config, "rope_theta", getattr(config, "rotary_emb_base", 10000.0)))
    return kind, float(frac), float(base)


def rotary_rows(w: Any, n_heads: int, head_dim: int, rot_dim: int) -> Any:
    """Rows of a q or k projection (n_heads·head_dim, ...) from HF's rotate-half order to our pairs:
    our dims (2i, 2i+1) are HF's (i, i + rot_dim/2); dims past rot_dim stay."""
    import torch

    half = rot_dim // 2
    perm = torch.cat([torch.stack([torch.arange(half), torch.arange(half) + half], dim=1).flatten(), torch.arange(rot_dim, head_dim)])
    return w.reshape(n_heads, head_dim, *w.shape[1:])[:, perm].reshape(w.shape)


def _lm(mp: Any, state_dict: dict[str, Any], name: str, vocab_size: int) -> Any:
    from data.hf_tokenizers import PretrainedTokenizer
    from model.lm import LM

    tokenizer = PretrainedTokenizer.load(name)
    if tokenizer.n_tokens > vocab_size:
        raise UserError(f"{name}: tokenizer has {tokenizer.n_tokens} tokens but the model's vocab_size is {vocab_size}; load both from the same folder")
    lm = LM(mp, tokenizer)
    if vocab_size != lm.n_tokens:  # HF pads the embedding past the tokenizer (Pythia: 50304 rows for 50277 tokens)
        state_dict = {k: (v[: lm.n_tokens] if k in ("embed.weight", "out.weight") else v) for k, v in state_dict.items()}
    lm.load_state_dict(state_dict, strict=True)
    return lm.eval()


@family("gpt_neox")
def _gpt_neox(name: str, revision: str | None) -> Any:
    """GPT-NeoX / Pythia: LayerNorm, parallel attention and MLP, partial rotary, untied head."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from model.model_params import ModelParams

    hf = load_hf(GPTNeoXForCausalLM, name, revision, "GPT-NeoX")
    c = hf.config
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
    from model.positional import rotary_dims

    rot = rotary_dims(hd, frac)
    hf_sd = hf.state_dict()
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
    return _lm(mp, sd, name, c.vocab_size)


@family("llama")
def _llama(name: str, revision: str | None) -> Any:
    """Llama: RMSNorm, SwiGLU, rotary, grouped-query attention, no biases (the `llama` block)."""
    import torch
    from transformers import LlamaForCausalLM

    from model.model_params import ModelParams

    hf = load_hf(LlamaForCausalLM, name, revision, "Llama")
    c = hf.config
    kind, frac, base = _rope(c)
    n_heads, n_kv, dim = c.num_attention_heads, c.num_key_value_heads, c.hidden_size
    hd = dim // n_heads
    _refuse(name, [
        (c.hidden_act != "silu", f"activation {c.hidden_act!r}"),
        (kind != "default", f"rope type {kind!r}"),
        (getattr(c, "head_dim", hd) != hd, f"head_dim={c.head_dim} != hidden_size/num_attention_heads"),
        (getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False), "biases"),
    ])
    mp = ModelParams(layer_architecture="llama", dim=dim, n_layers=c.num_hidden_layers, n_heads=n_heads, n_kv_heads=n_kv,
                     ff_dim=c.intermediate_size, norm_first=True, layer_norm_eps=c.rms_norm_eps, pos_encoding="rotary", rotary_frac=frac,
                     rotary_base=base, max_seq_len=c.max_position_embeddings, tie_embeddings=bool(c.tie_word_embeddings), dropout=0.0)
    from model.positional import rotary_dims

    rot = rotary_dims(hd, frac)
    hf_sd = hf.state_dict()
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
    return _lm(mp, sd, name, c.vocab_size)


def hf_model_type(name_or_folder: str, revision: str | None = None) -> str:
    """`model_type` from config.json (a local folder, the hub, or the local HF cache when offline)."""
    folder = Path(name_or_folder).expanduser()
    if folder.is_dir():
        if revision is not None:
            raise UserError(f"{name_or_folder!r} is a local folder: it has no revision {revision!r}")
        try:
            return json.loads((folder / "config.json").read_text()).get("model_type", "")
        except (OSError, ValueError):
            raise UserError(f"{folder} has no readable config.json; pass a folder written by save_pretrained") from None
    from transformers import AutoConfig

    from data.hf_datasets import hub_offline, hub_reachable

    online = hub_reachable()
    try:
        with nullcontext() if online else hub_offline():
            return AutoConfig.from_pretrained(name_or_folder, revision=revision, local_files_only=not online).model_type
    except (OSError, ValueError) as e:
        where = "the Hugging Face hub" if online else "the local HF cache (the hub is unreachable)"
        rev = f", revision={revision!r}" if revision else ""
        raise UserError(
            f"{name_or_folder!r}: not a local folder, and it could not be loaded from {where} ({type(e).__name__}); "
            f"on a connected machine save it with AutoModelForCausalLM.from_pretrained({name_or_folder!r}{rev}).save_pretrained(DIR) "
            "and AutoTokenizer likewise, then pass DIR"
        ) from None


def get_hf_model(name_or_folder: str, revision: str | None = None, device: str | None = None) -> Any:
    """A pretrained causal LM (hub name or save_pretrained folder) as our `LM`, in eval mode."""
    model_type = hf_model_type(name_or_folder, revision)
    loader = FAMILIES.get(model_type)
    if loader is None:
        raise UserError(f"{name_or_folder!r}: model_type {model_type!r} is not supported yet; supported: {', '.join(sorted(FAMILIES))}")
    lm = loader(str(Path(name_or_folder).expanduser()) if Path(name_or_folder).expanduser().is_dir() else name_or_folder, revision)
    return lm.to(device) if device else lm


def pythia_name(size: str, deduped: bool = False) -> str:
    if size not in PYTHIA_SIZES:
        raise UserError(f"no Pythia size {size!r}; sizes: {', '.join(PYTHIA_SIZES)}")
    return f"EleutherAI/pythia-{size}{'-deduped' if deduped else ''}"


def get_pythia(size: str = "70m", step: int | None = None, deduped: bool = False, device: str | None = None) -> Any:
    """Pythia at training step `step` (hub revision `step{N}`; None = the final weights)."""
    return get_hf_model(pythia_name(size, deduped), revision=None if step is None else f"step{step}", device=device)


def get_all_checkpoints(sources: Iterable[str | int], size: str = "70m", deduped: bool = False) -> Iterator[tuple[str, Any]]:
    """(label, LM) for each source in order, loaded one at a time: ints are Pythia steps of `size`,
    strings are local folders or hub names. Feed it to the training-dynamics tools."""
    for s in sources:
        if isinstance(s, int):
            yield f"step{s}", get_pythia(size, step=s, deduped=deduped)
        else:
            yield str(s), get_hf_model(str(s))


PYTHIA_BATCH = 1024  # sequences per Pythia optimizer step: step N has seen N * 1024 sequences


def over_checkpoints(sources: Iterable[str | int], fn: Callable[[Any], Any], size: str = "70m", name: str = "value") -> Any:
    """`dynamics.over_checkpoints` for a pretrained trajectory: `fn(lm)` at each source → a `dynamics.Table`
    that `plot_over_checkpoints` draws. Pythia steps give `step` and `n_samples` (step × 1024 sequences);
    folders and hub names are numbered 0, 1, ... in the order given (their `checkpoint` column names them)."""
    from dynamics import Table

    table = Table()
    for i, (label, lm) in enumerate(get_all_checkpoints(sources, size=size)):
        step = int(label[4:]) if label.startswith("step") and label[4:].isdigit() else i
        value = fn(lm)
        row = {"checkpoint": label, "n_samples": step * PYTHIA_BATCH if label.startswith("step") else i, "step": step}
        row.update(value if isinstance(value, dict) else {name: value})
        table.append(row)
    return table
