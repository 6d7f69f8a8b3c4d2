"""Head scores from the activation cache, for any LM (ours, GPT-2): which heads attend to the
previous token, to an earlier copy of the current token, or to the token after that copy.

The standard measurement (Olsson et al. 2022, "In-context Learning and Induction Heads";
Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits"): feed random tokens
r_1..r_T written twice after BOS, `[BOS, r_1..r_T, r_1..r_T]`, and average each head's attention
pattern (`blocks.{l}.attn.hook_pattern`) over the batch and over query positions:

* previous-token score: attention from position i to i - 1, over every i >= 1;
* duplicate-token score: from each position of the second copy to the same token in the first
  copy (i -> i - T);
* induction score: from each position of the second copy to the token just after the same token
  in the first copy (i -> i - T + 1), the attention an induction head uses to copy what came next.

Each score is in [0, 1]; a perfect head of that kind scores 1. A random-token model's heads score
about 1 / (number of positions they can see).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

SCORES = ("previous_token", "duplicate_token", "induction")


def repeated_random_tokens(lm: Any, seq_len: int | None = None, n_seqs: int = 16, seed: int = 0) -> Tensor:
    """(n_seqs, 1 + 2 * seq_len) ids: BOS, then `seq_len` random non-special tokens, written twice.

    `seq_len` defaults to the longest that fits the model (at most 50)."""
    limit = (lm.model_params.max_seq_len - 1) // 2
    seq_len = min(50, limit) if seq_len is None else seq_len
    if not 1 <= seq_len <= limit:
        raise ValueError(f"seq_len={seq_len} does not fit: the model reads at most {lm.model_params.max_seq_len} tokens, so 1 <= seq_len <= {limit}")
    tok = lm.tokenizer
    vocab = torch.tensor(sorted(set(range(tok.n_tokens)) - set(tok.special_ids)))
    g = torch.Generator().manual_seed(seed)
    half = vocab[torch.randint(len(vocab), (n_seqs, seq_len), generator=g)]
    bos = torch.full((n_seqs, 1), tok.bos_id, dtype=torch.long)
    return torch.cat([bos, half, half], dim=1)


def scores_from_patterns(patterns: Tensor, seq_len: int) -> dict[str, Tensor]:
    """Scores from attention patterns (batch × layers × heads × query × key) of `[BOS, r, r]`
    sequences with `len(r) == seq_len` → {name: layers × heads}."""
    n = patterns.shape[-1]
    if n != 1 + 2 * seq_len:
        raise ValueError(f"patterns cover {n} positions, but [BOS, r, r] with seq_len={seq_len} has {1 + 2 * seq_len}")
    p = patterns.float()
    second = torch.arange(seq_len + 1, n)  # query positions of the second copy
    every = torch.arange(1, n)
    return {
        "previous_token": p[..., every, every - 1].mean(dim=(0, -1)),
        "duplicate_token": p[..., second, second - seq_len].mean(dim=(0, -1)),
        "induction": p[..., second, second - seq_len + 1].mean(dim=(0, -1)),
    }


@torch.no_grad()
def head_scores(lm: Any, tokens: Tensor | None = None, seq_len: int | None = None, n_seqs: int = 16, seed: int = 0, fwd_hooks: Any = ()) -> dict[str, Tensor]:
    """{"previous_token", "duplicate_token", "induction"} → (layers × heads) tensors for `lm`.

    `tokens`: your own `[BOS, r, r]` batch (else `repeated_random_tokens(lm, seq_len, n_seqs, seed)`).
    `fwd_hooks` are applied during the pass (e.g. to ablate or patch a head), as in `run_with_hooks`.
    """
    if tokens is None:
        tokens = repeated_random_tokens(lm, seq_len, n_seqs, seed)
    seq_len = (tokens.shape[1] - 1) // 2
    was_training = lm.training
    lm.eval()
    try:
        _, cache = lm.run_with_cache(tokens, names_filter=lambda n: n.endswith("attn.hook_pattern"), fwd_hooks=fwd_hooks)
    finally:
        lm.train(was_training)
    names = [n for n in cache if n.endswith("attn.hook_pattern")]
    if not names:
        raise ValueError("this model has no attention patterns to score (no attention layers)")
    return scores_from_patterns(torch.stack([cache[n] for n in names], dim=1), seq_len)


@torch.no_grad()
def repeated_halves_loss(lm: Any, tokens: Tensor) -> tuple[float, float]:
    """Mean next-token loss (nats) on the first and on the second copy of `[BOS, r, r, ...]` batches.

    Their difference (second - first) is the in-context loss of docs/dynamics.md: how much the
    model gains from having seen the sequence once already (log(vocab) - 0 for a perfect copier).
    """
    T = (tokens.shape[1] - 1) // 2
    was_training = lm.training
    lm.eval()
    try:
        logits = lm(tokens)
    finally:
        lm.train(was_training)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten().to(logits.device), reduction="none")
    loss = loss.view(tokens.shape[0], -1)  # column j predicts position j + 1
    return float(loss[:, :T].mean()), float(loss[:, T : 2 * T].mean())


def best_head(scores: Tensor) -> tuple[float, int, int]:
    """(score, layer, head) of the highest-scoring head in a layers × heads table."""
    i = int(scores.argmax())
    return float(scores.flatten()[i]), i // scores.shape[1], i % scores.shape[1]
