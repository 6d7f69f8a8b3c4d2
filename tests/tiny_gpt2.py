"""A tiny GPT-2 written with `save_pretrained` into a folder: no hub needed.

The same loading code as for "gpt2" reads it (`gpt2.get_gpt2(folder)`). Weights are drawn with
a large std so logits are far from zero and comparisons mean something.
"""
from __future__ import annotations

from pathlib import Path

TEXTS = [
    "hello world, the weather is nice today",
    "as business managers know, the weather for the whole area will change",
    "well the weather for the whole area will be fine",
    "the quick brown fox jumps over the lazy dog",
    "hi there",
]


def make_tiny_gpt2(folder: Path, n_layer: int = 2, n_head: int = 4, n_embd: int = 32, seed: int = 0, vocab_size: int | None = None,
                   logit_offset: float = 0.0) -> Path:
    """`vocab_size` (e.g. GPT-2's 50257) pads the trained vocabulary with unused tokens, so ids
    written for the real GPT-2 (the seed README's `[50256, 4053, 262, 6193]`) are valid.
    `logit_offset` shifts every logit by about that much (through the final norm's bias and a
    shared component of the tied embeddings), as real GPT-2's logits sit far below zero: float
    comparisons with a relative tolerance (the seed's `torch.isclose`) then behave as on GPT-2."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    folder = Path(folder)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(TEXTS * 20, trainer=trainer)
    if vocab_size is not None:
        backend = _padded(backend, vocab_size)
    eot = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_object=backend, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(folder)
    eot_id = backend.token_to_id(eot)
    config = GPT2Config(
        vocab_size=backend.get_vocab_size(), n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
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
