"""LM: token embedding + positional encoding + transformer + output head, plus the calls a
researcher makes on a trained model (forward on text, losses, sampling).

`LM(x)` accepts a string, a list of ids, a 1-D tensor or a (batch, seq) tensor and returns
logits (batch, seq, vocab). `LM(x, get_embeddings=True)` / `get_attns=True` return a dict with
`logits` plus `embeddings` (batch × layers × seq × dim) / `attns` (batch × layers × heads × seq × seq).
Both are read from the activation cache (`run_with_cache`, hook names in docs/hooks.md).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook, HookFn, Hooks, NamesFilter
from model.kv_cache import KVCache
from model.model_params import ModelParams
from model.objectives import objective_for
from model.perplexity import perplexities as perplexities_of
from model.positional import make_pos_encoding
from model.sampling import beam_search, check_sampling_args, generate, is_batch_of_prefixes, prefix_ids
from model.transformer.components import init_gpt2
from model.transformer.transformer import Transformer

if TYPE_CHECKING:  # a type only: model/ does not import data/ (tests/test_layering.py)
    from data.tokenizer import Tokenizer

warnings.filterwarnings("ignore", message="Initializing zero-element tensors is a no-op")  # dim_ff_factor=0: attention-only


class LM(nn.Module):
    def __init__(self, model_params: ModelParams, tokenizer: Tokenizer):
        super().__init__()
        mp = self.model_params = model_params
        if mp.dim % mp.n_heads:
            raise ValueError(f"dim={mp.dim} is not divisible by n_heads={mp.n_heads}")
        self.tokenizer = tokenizer
        self.n_tokens = tokenizer.n_tokens
        self.embed = nn.Embedding(self.n_tokens, mp.dim)
        self.pos_enc = make_pos_encoding(mp)
        self.drop = nn.Dropout(mp.dropout)
        self.decoder = Transformer(mp)
        self.out = nn.Linear(mp.dim, self.n_tokens, bias=False)
        init_gpt2(self, mp.n_layers)  # components own their init (model/transformer/components.py)
        if mp.tie_embeddings:
            self.out.weight = self.embed.weight
        self.objective = objective_for(tokenizer)  # non-token tasks (model/objectives.py); None = next token
        if self.objective is not None:
            self.objective.build(self)  # its own read-in and head

    def attention_path(self) -> str:
        """The line every run prints: which attention computation the blocks run (fused, explicit and why)."""
        return "; ".join(self.decoder.attention_paths()) or "attention: none (no attention blocks)"

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # --- inputs -------------------------------------------------------------------------
    def as_batch(self, x: str | Sequence[int] | Tensor) -> Tensor:
        """String / list of ids / 1-D tensor / (batch, seq) tensor → (batch, seq) long tensor on device."""
        if self.objective is not None:
            return self.objective.as_batch(self, x)
        if isinstance(x, str):
            x = self.tokenizer(x)
        if not isinstance(x, Tensor):
            x = torch.tensor(list(x), dtype=torch.long)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ValueError(f"LM input must be a string, ids, a 1-D or a (batch, seq) tensor; got shape {tuple(x.shape)}")
        return x.to(device=self.device, dtype=torch.long)

    # --- forward ------------------------------------------------------------------------
    def forward(
        self, x: Any, get_embeddings: bool = False, get_attns: bool = False, attn_requests: Any = None,
        kv_cache: KVCache | None = None, hook: Hook | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """`kv_cache`: x holds only tokens after the cached ones (incremental decoding).
        `hook`: a `model.hooks.Hooks` for this call (prefer `run_with_cache`/`run_with_hooks`)."""
        x = self.as_batch(x)
        past = kv_cache.length if kv_cache is not None else 0
        cond = past + x.shape[1] <= self.model_params.max_seq_len
        msg = f"sequence of {past + x.shape[1]} tokens is longer than the model's max_seq_len={self.model_params.max_seq_len}"
        assert cond, msg
        if kv_cache is not None:  # x is only the new tokens; kv_cache.ids holds every token so far. An edit that
            kv_cache.add_ids(x)   # depends on the input (the seed's `attn_requests = 10 in x`) must test kv_cache.ids then
        hook = hook if hook is not None else self._output_hook(get_embeddings, get_attns)
        positions = torch.arange(past, past + x.shape[1], device=x.device).unsqueeze(0).expand(x.shape[0], -1)
        h = self.drop(hook("hook_embed", self.embed(x)) + hook("hook_pos_embed", self.pos_enc(positions)))
        h = self.decoder(h, attn_requests=attn_requests, hook=hook, kv_cache=kv_cache, positions=positions)
        logits = self.out(h)
        if kv_cache is not None:
            kv_cache.advance(x.shape[1])
        if not (get_embeddings or get_attns):
            return logits
        return self._with_outputs(logits, hook, get_embeddings, get_attns)

    @staticmethod
    def _output_hook(get_embeddings: bool, get_attns: bool) -> Any:
        """The hook that caches what `get_embeddings` / `get_attns` ask for (a no-op when neither)."""
        if not (get_embeddings or get_attns):
            return NO_HOOK
        return Hooks(cache_filter=lambda n: (get_attns and n.endswith(".attn.hook_pattern")) or (get_embeddings and n.endswith(".hook_resid_post")), detach=False)

    def _with_outputs(self, logits: Tensor, hook: Any, get_embeddings: bool, get_attns: bool) -> dict[str, Tensor]:
        """forward's dict: the logits with every block's residual stream and/or attention pattern stacked on dim 1."""
        out: dict[str, Tensor] = {"logits": logits}
        blocks = range(len(self.decoder.layers))
        if get_embeddings:
            out["embeddings"] = torch.stack([hook.cache[f"blocks.{i}.hook_resid_post"] for i in blocks], dim=1)
        if get_attns:
            out["attns"] = torch.stack([hook.cache[n] for i in blocks if (n := f"blocks.{i}.attn.hook_pattern") in hook.cache], dim=1)
        return out

    # --- looking inside: activation cache and hooks (model/hooks.py, docs/hooks.md) -------
    def run_with_cache(self, x: Any, names_filter: NamesFilter = None, detach: bool = True, **kwargs: Any) -> tuple[Tensor, "ActivationCache"]:
        """→ (logits, cache): every activation whose name passes `names_filter` (all by default)."""
        hooks = Hooks(kwargs.pop("fwd_hooks", ()), cache_filter=names_filter, detach=detach)
        logits = self(x, hook=hooks, **kwargs)
        return logits, ActivationCache(hooks.cache)

    def run_with_hooks(self, x: Any, fwd_hooks: list[tuple[str | Callable[[str], bool], HookFn]] = (), **kwargs: Any) -> Tensor:
        """Forward with `fn(activation, hook)` applied at each named point, for this call only.

        `fn` returns a replacement or None (keep it, maybe edited in place). Nothing is attached
        to the model, so nothing outlives the call, even when it raises.
        """
        self.check_hook_names([n for n, _ in fwd_hooks if isinstance(n, str)])
        return self(x, hook=Hooks(fwd_hooks), **kwargs)

    def hook_names(self) -> list[str]:
        """Every hook point of this model, in forward order (from a one-token forward)."""
        probe = Hooks(cache_filter=None)
        with torch.no_grad():
            self(torch.tensor([[self.tokenizer.bos_id]], device=self.device), hook=probe)
        return list(dict.fromkeys(probe.seen))

    def check_hook_names(self, names: list[str]) -> None:
        if not names:
            return
        known = self.hook_names()
        for n in names:
            if n not in known:
                import difflib

                close = difflib.get_close_matches(n, known, n=3, cutoff=0.6)
                raise ValueError(f"no hook point {n!r} in this model; {'did you mean ' + ', '.join(close) + '? ' if close else ''}see lm.hook_names() or docs/hooks.md")

    # --- losses -------------------------------------------------------------------------
    def get_batch_xyz(
        self, batch: dict[str, Tensor], loss_requests: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Inputs x, targets y, logits z and the target mask (True where a real token is predicted).

        The mask is None when every target is real (a batch without `mask` or `loss_mask`: packed
        text windows, equal-length samples), so the loss needs no masking.
        """
        ids = batch["x_indices"].to(self.device)
        mask = batch.get("loss_mask", batch.get("mask"))  # loss_mask: e.g. the answer only
        x, y = ids[:, :-1], ids[:, 1:]
        target_mask = None if mask is None else mask.to(self.device)[:, 1:]
        if None is not loss_requests:
            x = loss_requests(x)  # e.g. corrupt the input but not the target
        z = self(x)
        return x, y, z, target_mask

    @staticmethod
    def cross_entropy(z: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
        """Next-token cross-entropy of logits z (batch, seq, vocab) against targets y (batch, seq)."""
        out = F.cross_entropy(z.flatten(0, 1).float(), y.flatten(), reduction=reduction)
        return out.view_as(y) if reduction == "none" else out

    def token_losses(self, batch: dict[str, Tensor], loss_requests: Callable | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-position cross-entropy (batch, seq-1) (0 where masked), the target mask (all True
        when nothing is masked), and the logits."""
        _, y, z, target_mask = self.get_batch_xyz(batch, loss_requests)
        losses = self.cross_entropy(z, y, "none")
        if target_mask is None:
            return losses, torch.ones_like(y, dtype=torch.bool), z
        return losses * target_mask, target_mask, z

    def get_losses(
        self, batch: dict[str, Tensor], train_params: Any = None, loss_requests: Callable | None = None
    ) -> tuple[dict[str, Tensor], int]:
        """`({"main": mean token loss}, n_samples)`; the trainer minimises `main` and logs every entry.

        Without a target mask this is a plain mean cross-entropy (one fused call); with one, the
        mean over the real targets only.
        """
        if self.objective is not None:
            return self.objective.get_losses(self, batch)
        _, y, z, target_mask = self.get_batch_xyz(batch, loss_requests)
        if target_mask is None:
            main = self.cross_entropy(z, y)
        else:
            main = (self.cross_entropy(z, y, "none") * target_mask).sum() / target_mask.sum().clamp(min=1)
        return {"main": main}, batch["x_indices"].shape[0]

    def eval_sums(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Evaluation statistics as (sum, count) pairs so they average exactly over any batching.

        `loss:main` is the token-mean cross-entropy; with an `answer_mask` (tasks with an answer
        separator) also `acc:answer` (teacher-forced answer-token accuracy) and `exact:answer`
        (samples whose whole answer is right). Override to add your own.
        """
        if self.objective is not None:
            return self.objective.eval_sums(self, batch)
        _, y, z, target_mask = self.get_batch_xyz(batch)
        if target_mask is None:  # every target is real: one summed cross-entropy, exact count
            out = {"loss:main": (self.cross_entropy(z, y, "sum"), torch.tensor(y.numel(), device=y.device))}
        else:
            out = {"loss:main": ((self.cross_entropy(z, y, "none") * target_mask).sum(), target_mask.sum())}
        if "answer_mask" in batch:
            answer = batch["answer_mask"].to(self.device)[:, 1:]
            right = (z.argmax(dim=-1) == batch["x_indices"].to(self.device)[:, 1:]) & answer
            has_answer = answer.any(dim=1)
            exact = (right.sum(dim=1) == answer.sum(dim=1)) & has_answer
            out["acc:answer"] = (right.sum(), answer.sum())
            out["exact:answer"] = (exact.sum(), has_answer.sum())
        return out

    # --- sampling -----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        pref: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]] = "",
        max_seq_len: int = 100,
        temperature: float = 1,
        nucleus: float | None = None,
        top_k: int | None = None,
        as_str: bool = True,
        generator: torch.Generator | None = None,
        beam_size: int | None = None,
        use_cache: bool = True,
    ) -> Any:
        """Continue `pref` until EOS or `max_seq_len` tokens (prefix included).

        `pref` may also be a list of prefixes (strings or id lists): returns a list, one per
        prefix, sampled in batches. `beam_size=k` runs beam search instead and returns the k
        best `(sequence, log-prob)` pairs, best first. `use_cache` decodes incrementally with a
        KV cache (same result as recomputing the prefix every step, much faster).
        """
        check_sampling_args(temperature, nucleus, top_k)
        self._refuse_without_tokens("sample")
        was_training = self.training
        self.eval()
        many = is_batch_of_prefixes(pref)
        prefixes = [prefix_ids(self, p) for p in pref] if many else [prefix_ids(self, pref)]
        limit = min(max_seq_len, self.model_params.max_seq_len)
        fmt = self.tokenizer.decode if as_str else (lambda ids: ids)
        try:
            if beam_size is not None:
                res: list = [[(fmt(s), score) for s, score in beam_search(self, p, limit, beam_size, use_cache)] for p in prefixes]
            else:
                res = [fmt(s) for s in generate(self, prefixes, limit, temperature, nucleus, top_k, generator, use_cache)]
        finally:
            self.train(was_training)
        return res if many else res[0]

    def _refuse_without_tokens(self, what: str) -> None:
        if self.objective is not None:
            raise ValueError(
                f"{what}: this model reads vectors and predicts with the {self.objective.name!r} objective (model/objectives.py), not tokens; "
                "measure it with train.evaluate.evaluate(lm, dataset.val_dataloader())"
            )

    def perplexities(
        self, samples_or_dataloader: Any, per_token: bool = False, before_exp: bool = False, dummy_res: float = -1, batch_size: int = 32
    ) -> tuple[float, float, float, int, Tensor | list]:
        """→ mean, max, min, total_tokens, per_token_res (see model/perplexity.py)."""
        self._refuse_without_tokens("perplexities")
        return perplexities_of(self, samples_or_dataloader, per_token, before_exp, dummy_res, batch_size)


class ActivationCache(dict):
    """name → activation. `cache["pattern", 0]` is short for `cache["blocks.0.attn.hook_pattern"]`."""

    def __getitem__(self, key: str | tuple[str, int]) -> Tensor:
        if isinstance(key, tuple):
            short, layer = key
            short = short if short.startswith("hook_") else f"hook_{short}"
            matches = [n for n in self if n.startswith(f"blocks.{layer}.") and n.endswith(f".{short}") or n == f"blocks.{layer}.{short}"]
            if len(matches) != 1:
                raise KeyError(f"{key!r} matches {matches or 'no'} cached names")
            key = matches[0]
        if key not in self:
            import difflib

            close = difflib.get_close_matches(str(key), list(self), n=3, cutoff=0.6)
            raise KeyError(f"{key!r} is not in the cache{'; did you mean ' + ', '.join(close) + '?' if close else ''} (names: docs/hooks.md)")
        return super().__getitem__(key)
