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
]


def make_tiny_tokenizer(folder: Path) -> tuple[int, int]:
    """A byte-level BPE (GPT-2 style, `<|endoftext|>` = BOS/EOS) saved into `folder` → (vocab size, its id)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(TEXTS * 20, trainer=trainer)
    eot = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_object=backend, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(folder)
    return backend.get_vocab_size(), backend.token_to_id(eot)


def make_tiny_gpt2(folder: Path, n_layer: int = 2, n_head: int = 4, n_embd: int = 32, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    vocab, eot_id = make_tiny_tokenizer(folder)
    config = GPT2Config(
        vocab_size=vocab, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        bos_token_id=eot_id, eos_token_id=eot_id, initializer_range=0.2,
    )
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder
