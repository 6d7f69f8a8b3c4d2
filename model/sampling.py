"""Turning next-token logits into a choice (temperature, top-k, nucleus), and generation:
batched sampling with a KV cache, and beam search. `LM.sample` is the entry point."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from model.kv_cache import KVCache


def check_sampling_args(temperature: float, nucleus: float | None, top_k: int | None) -> None:
    if nucleus is not None and top_k is not None:
        raise ValueError("sample(): `nucleus` and `top_k` are mutually exclusive; pass only one of them")
    if temperature < 0:
        raise ValueError(f"sample(): temperature must be >= 0, got {temperature}")
    if nucleus is not None and not 0 < nucleus <= 1:
        raise ValueError(f"sample(): nucleus must be in (0, 1], got {nucleus}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"sample(): top_k must be >= 1, got {top_k}")


def choose_next(
    logits: Tensor, temperature: float = 1.0, nucleus: float | None = None, top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """logits: (batch, vocab) → next ids (batch,). temperature 0 means argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if nucleus is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each token
        drop_sorted = before >= nucleus  # keep the minimal prefix reaching `nucleus`
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# --- generation -------------------------------------------------------------------------
# `LM.sample` delegates here. Prefixes of equal length share one batch; every step feeds only
# the newest token when a KV cache is used (greedy output is the same as recomputing the
# whole prefix each step; a test holds them equal).


def is_batch_of_prefixes(pref: Any) -> bool:
    """A list of strings / id lists (or a 2-D tensor) is several prefixes; a str or id list is one."""
    if isinstance(pref, Tensor):
        return pref.dim() == 2
    return isinstance(pref, (list, tuple)) and len(pref) > 0 and not isinstance(pref[0], (int, np.integer)) and not (
        isinstance(pref[0], Tensor) and pref[0].dim() == 0
    )


def prefix_ids(lm: Any, pref: Any) -> list[int]:
    ids = lm.tokenizer(pref) if isinstance(pref, str) else [int(i) for i in pref]
    return ids or [lm.tokenizer.bos_id]


def generate(
    lm: Any, prefixes: list[list[int]], limit: int, temperature: float, nucleus: float | None, top_k: int | None,
    generator: torch.Generator | None = None, use_cache: bool = True,
) -> list[list[int]]:
    """Continue each prefix until EOS or `limit` tokens (prefix included); results in input order."""
    out: list[list[int] | None] = [None] * len(prefixes)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prefixes):
        by_len.setdefault(len(p), []).append(i)
    for idx in by_len.values():
        rows = _generate_batch(lm, torch.tensor([prefixes[i] for i in idx], device=lm.device), limit, temperature, nucleus, top_k, generator, use_cache)
        for i, r in zip(idx, rows):
            out[i] = r
    return out  # type: ignore[return-value]


def _generate_batch(
    lm: Any, ids: Tensor, limit: int, temperature: float, nucleus: float | None, top_k: int | None,
    generator: torch.Generator | None, use_cache: bool,
) -> list[list[int]]:
    eos = lm.tokenizer.eos_id
    n_prefix = ids.shape[1]
    cache = KVCache() if use_cache else None
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = ids
    while ids.shape[1] < limit and not bool(done.all()):
        logits = lm(new if cache is not None else ids, kv_cache=cache)[:, -1]
        nxt = choose_next(logits, temperature, nucleus, top_k, generator)
        nxt = nxt.masked_fill(done, eos)  # finished rows idle on EOS; cut below
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        done |= nxt == eos
        new = nxt[:, None]
    rows = []
    for row in ids.tolist():
        gen = row[n_prefix:]
        rows.append(row[:n_prefix] + (gen[: gen.index(eos) + 1] if eos in gen else gen))
    return rows


def beam_search(lm: Any, prefix: list[int], limit: int, beam_size: int, use_cache: bool = True) -> list[tuple[list[int], float]]:
    """The `beam_size` best continuations of `prefix` found by beam search, best first, each
    with its log-probability (sum over the generated tokens, EOS included).

    Each step ranks every (beam, next token) extension by total log-prob. An EOS among the top
    `beam_size` extensions finishes that hypothesis; the best `beam_size` others stay alive.
    The search stops when `beam_size` finished hypotheses all score at least the best alive one
    (log-probs only fall as a sequence grows) or at `limit` tokens, where alive beams finish
    as they are. With `beam_size=1` this is exactly greedy decoding. Plain beam search can
    prune the greedy path and end up below it (rarely), so the greedy sequence is always kept
    as a candidate: the best result never scores below greedy decoding.
    """
    if beam_size < 1:
        raise ValueError(f"sample(): beam_size must be >= 1, got {beam_size}")
    found = _beam_search(lm, prefix, limit, beam_size, use_cache)
    if beam_size > 1:
        greedy = _beam_search(lm, prefix, limit, 1, use_cache)[0]
        if all(seq != greedy[0] for seq, _ in found):
            found = sorted(found + [greedy], key=lambda f: -f[1])[:beam_size]
    return found


def _beam_search(lm: Any, prefix: list[int], limit: int, beam_size: int, use_cache: bool) -> list[tuple[list[int], float]]:
    eos = lm.tokenizer.eos_id
    beams = torch.tensor([prefix], device=lm.device)
    scores = torch.zeros(1, dtype=torch.float64)  # on the CPU in float64 (not every device has it)
    cache = KVCache() if use_cache else None
    new = beams
    finished: list[tuple[list[int], float]] = []
    while beams.shape[1] < limit:
        logits = lm(new if cache is not None else beams, kv_cache=cache)[:, -1]
        total = (torch.log_softmax(logits.float().cpu().double(), dim=-1) + scores[:, None]).flatten()
        top_scores, top_idx = total.topk(min(2 * beam_size, total.numel()))
        keep = _next_beams(beams, top_scores.tolist(), top_idx.tolist(), logits.shape[-1], eos, beam_size, finished)
        finished.sort(key=lambda f: -f[1])
        if not keep or (len(finished) >= beam_size and finished[beam_size - 1][1] >= keep[0][2]):
            beams = beams[:0]
            break
        parents = torch.tensor([p for p, _, _ in keep], device=lm.device)
        new = torch.tensor([[t] for _, t, _ in keep], device=lm.device)
        beams = torch.cat([beams[parents], new], dim=1)
        scores = torch.tensor([s for _, _, s in keep], dtype=torch.float64)
        if cache is not None:
            cache.reorder(parents)
    finished += [(b, s) for b, s in zip(beams.tolist(), scores.tolist())]  # reached the length limit
    finished.sort(key=lambda f: -f[1])
    return finished[:beam_size]


def _next_beams(beams: Tensor, top_scores: list[float], top_idx: list[int], n_vocab: int, eos: int, beam_size: int,
                finished: list[tuple[list[int], float]]) -> list[tuple[int, int, float]]:
    """The best `beam_size` continuations (parent beam, token, score) that don't end; those that end with
    eos among the top `beam_size` go to `finished`."""
    keep: list[tuple[int, int, float]] = []
    for rank, (s, i) in enumerate(zip(top_scores, top_idx)):
        parent, tok = divmod(i, n_vocab)
        if tok == eos:
            if rank < beam_size:
                finished.append((beams[parent].tolist() + [eos], s))
        elif len(keep) < beam_size:
            keep.append((parent, tok, s))
    return keep


@torch.no_grad()
def sequence_logprob(lm: Any, ids: list[int], n_prefix: int) -> float:
    """log p(ids[n_prefix:] | ids[:n_prefix]) under `lm`: the score beam search ranks by."""
    logp = torch.log_softmax(lm(torch.tensor([ids], device=lm.device))[0, :-1].float().cpu().double(), dim=-1)
    targets = torch.tensor(ids[1:])
    return float(logp.gather(1, targets[:, None]).squeeze(1)[n_prefix - 1 :].sum())
