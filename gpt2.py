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

from pathlib import Path
from typing import Any

from core.errors import UserError
from core.hub import from_pretrained


def get_gpt2(name_or_path: str | None = None, device: str | None = None, offline_fallback: bool = False, revision: str | None = None) -> Any:
    """GPT-2 (any size, or a folder written by `save_pretrained`) as an `LM`, in eval mode.

    `name_or_path` defaults to `$HARNESS_GPT2`, else "gpt2" (GPT-2 small from the hub or the HF cache).
    `offline_fallback=True` (the notebook): when it can't be loaded, say so and return a tiny random
    GPT-2 built in a temp folder instead, so the calls still run (its text is noise). `revision`: a hub revision."""
    import os

    name_or_path = name_or_path or os.environ.get("HARNESS_GPT2") or "gpt2"
    try:
        hf = load_hf_gpt2(name_or_path, revision)
    except UserError as e:
        if not offline_fallback:
            raise
        import tempfile

        print(f"note: {e}. Using a tiny random GPT-2 built locally instead: same code path, meaningless text", flush=True)
        name_or_path = str(make_tiny_gpt2(Path(tempfile.mkdtemp(prefix="tiny-gpt2-"))))
        hf = load_hf_gpt2(name_or_path)
    from data.hf_tokenizers import PretrainedTokenizer  # numpy: on first use

    lm = lm_from_hf(hf, PretrainedTokenizer.load(name_or_path))
    return lm.to(device) if device else lm


def load_hf_gpt2(name_or_path: str, revision: str | None = None) -> Any:
    from transformers import GPT2LMHeadModel

    return from_pretrained(GPT2LMHeadModel, name_or_path, revision, what="GPT-2")


def model_params_from_hf(config: Any) -> Any:
    """Our `ModelParams` for a `GPT2Config` (model/from_hf.py); refuses variants our layer does not compute."""
    from model.from_hf import gpt2_model_params  # torch: on first use

    return gpt2_model_params(config)


def lm_from_hf(hf: Any, tokenizer: Any) -> Any:
    """Copy a loaded `GPT2LMHeadModel` into our `LM` with `tokenizer` (our interface)."""
    from model.from_hf import lm_from_hf as convert  # torch: on first use

    return convert(hf, tokenizer, "GPT-2")


TINY_TEXTS = [
    "hello world, the weather is nice today",
    "as business managers know, the weather for the whole area will change",
    "well the weather for the whole area will be fine",
    "the quick brown fox jumps over the lazy dog",
    "hi there",
]


def make_tiny_gpt2(folder: Path, n_layer: int = 2, n_head: int = 4, n_embd: int = 32, seed: int = 0, vocab_size: int | None = None,
                   logit_offset: float = 0.0) -> Path:
    """A tiny random GPT-2 and its BPE tokenizer written with `save_pretrained` into `folder` (no hub);
    `get_gpt2(folder)` loads it through the same code as "gpt2". Weights are drawn with a large std.

    `vocab_size` (e.g. GPT-2's 50257) pads the trained vocabulary with unused tokens, so ids
    written for the real GPT-2 (the seed README's `[50256, 4053, 262, 6193]`) are valid.
    `logit_offset` shifts every logit by about that much (through the final norm's bias and a
    shared component of the tied embeddings), as real GPT-2's logits sit far below zero: float
    comparisons with a relative tolerance (the seed's `torch.isclose`) then behave as on GPT-2."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    n_vocab, eot_id = make_tiny_tokenizer(folder, vocab_size)
    config = GPT2Config(
        vocab_size=n_vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=eot_id, eos_token_id=eot_id, initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    if logit_offset:
        with torch.no_grad():
            model.transformer.wte.weight[:, 0] += 1.0
            model.transformer.ln_f.bias[0] = logit_offset
    model.save_pretrained(folder)
    return folder


def make_tiny_tokenizer(folder: Path, vocab_size: int | None = None) -> tuple[int, int]:
    """A GPT-2-style byte-level BPE trained on TINY_TEXTS, saved into `folder` → (vocab size, id of
    `<|endoftext|>`, which is BOS/EOS). Tiny models of other families use it too (tests/tiny_hf.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(TINY_TEXTS * 20, trainer=trainer)
    if vocab_size is not None:
        backend = _padded(backend, vocab_size)
    eot = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_object=backend, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(Path(folder))
    return backend.get_vocab_size(), backend.token_to_id(eot)


WHOLE_WORDS = ("hello", "hi")  # one token each, as in GPT-2, so the seed's batch of the two is rectangular


def _padded(backend, vocab_size: int):
    """The same BPE with merges that make WHOLE_WORDS single tokens, and filler tokens up to `vocab_size`."""
    import json

    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    as_pair = (lambda a, b: [a, b]) if merges and isinstance(merges[0], list) else (lambda a, b: f"{a} {b}")
    first = []
    for word in WHOLE_WORDS:
        for k in range(2, len(word) + 1):
            first.append(as_pair(word[: k - 1], word[k - 1]))
            vocab.setdefault(word[:k], len(vocab))
    spec["model"]["merges"] = first + merges
    for i in range(len(vocab), vocab_size):
        vocab[f"unused{i}"] = i
    return Tokenizer.from_str(json.dumps(spec))
