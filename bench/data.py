"""A random-token corpus for throughput, registered as a harness task so `run_one` reads it.

Throughput does not depend on what the tokens say, so the training text is uniform random
characters from an alphabet sized to give the wanted vocabulary (the char tokenizer adds PAD,
BOS, EOS). It is packed like a real corpus: windows of `max_seq_len` tokens that share one token with
the next (`data.dataloader.packed_stride`), no padding; each split is sized to a whole number of
windows, so every contender trains on exactly batch × seq_len tokens per step. Needs no network.
"""
from __future__ import annotations

import numpy as np

from data.data_params import DataParams
from data.dataloader import packed_stride
from data.tasks import TEXT_SOURCES, TaskData, text_source

N_SPECIALS = 3  # CharTokenizer: PAD, BOS, EOS


def alphabet(vocab_size: int) -> str:
    """`vocab_size - 3` distinct characters (supplementary-plane code points: never surrogates)."""
    n = vocab_size - N_SPECIALS
    if n < 2:
        raise ValueError(f"vocab_size must be at least {N_SPECIALS + 2}, got {vocab_size}")
    return "".join(chr(0x10000 + i) for i in range(n))


def task_name(vocab_size: int) -> str:
    return f"bench-random-{vocab_size}"


def random_text(chars: str, n: int, seed: int, complete: bool = False) -> str:
    """`n` random characters of `chars`; `complete` puts every character in (so the vocabulary is whole)."""
    rng = np.random.default_rng(seed)
    head = np.arange(len(chars)) if complete else np.arange(0)
    idx = np.concatenate([head, rng.integers(0, len(chars), max(0, n - len(head)))])
    table = np.array(list(chars))
    return "".join(table[idx].tolist())


def register(vocab_size: int) -> str:
    """Register `bench-random-{vocab_size}` (sizes from DataParams: n_*_samples windows of max_seq_len)."""
    name = task_name(vocab_size)
    if name in TEXT_SOURCES:
        return name
    chars = alphabet(vocab_size)

    @text_source(name)
    def _source(dp: DataParams, seed: int) -> TaskData:
        sizes = {"train": dp.n_train_samples, "val": dp.n_val_samples, "test": dp.n_test_samples}
        # n windows of a stream of n·stride + 1 tokens (the text and its EOS);
        # train holds the whole alphabet, so the char tokenizer (built over all splits) has vocab_size tokens
        stride = packed_stride(dp)
        splits = {s: [random_text(chars, n * stride, seed + i, complete=s == "train")] for i, (s, n) in enumerate(sizes.items())}
        return TaskData(splits, pack=True, extras={"source": name})

    return name
