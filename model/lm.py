"""LM: token embedding + positional encoding + transformer + output head, plus the calls a
researcher makes on a trained model (forward on text, losses, sampling).

`LM(x)` accepts a string, a list of ids, a 1-D tensor or a (batch, seq) tensor and returns
logits (batch, seq, vocab). `LM(x, get_embeddings=True)` / `get_attns=True` return a dict with
`logits` plus `embeddings` (batch × layers × seq × dim) / `attns` (batch × layers × heads × seq × seq).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.tokenizer import Tokenizer
from model.model_params import ModelParams
from model.positional import make_pos_encoding
from model.sampling import check_sampling_args, choose_next
from model.transformer.transformer import Transformer


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
        self.apply(self._init_weights)
        if mp.tie_embeddings:
            self.out.weight = self.embed.weight

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 init, applied identically to both architectures (their parameter names match)."""
        std = 0.02
        resid_std = std / (2 * self.model_params.n_layers) ** 0.5
        for name, p in module.named_parameters(recurse=False):
            if name == "bias" or name.endswith("_bias"):
                nn.init.zeros_(p)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, std)
        for name, sub in module.named_children():
            if name in ("out_proj", "linear2") and isinstance(sub, nn.Linear):
                nn.init.normal_(sub.weight, 0.0, resid_std)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # --- inputs -------------------------------------------------------------------------
    def as_batch(self, x: str | Sequence[int] | Tensor) -> Tensor:
        """String / list of ids / 1-D tensor / (batch, seq) tensor → (batch, seq) long tensor on device."""
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
        self, x: Any, get_embeddings: bool = False, get_attns: bool = False, attn_requests: Any = None
    ) -> Tensor | dict[str, Tensor]:
        x = self.as_batch(x)
        cond = x.shape[1] <= self.model_params.max_seq_len
        msg = f"sequence of {x.shape[1]} tokens is longer than the model's max_seq_len={self.model_params.max_seq_len}"
        assert cond, msg
        positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0).expand_as(x)
        h = self.drop(self.embed(x) + self.pos_enc(positions))
        res = self.decoder(h, get_attns=get_attns, get_embeddings=get_embeddings, attn_requests=attn_requests)
        logits = self.out(res["out"])
        if not (get_embeddings or get_attns):
            return logits
        out: dict[str, Tensor] = {"logits": logits}
        if get_embeddings:
            out["embeddings"] = torch.stack(res["embeddings"], dim=1)
        if get_attns:
            out["attns"] = torch.stack(res["attns"], dim=1)
        return out

    # --- losses -------------------------------------------------------------------------
    def get_batch_xyz(
        self, batch: dict[str, Tensor], loss_requests: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Inputs x, targets y, logits z and the target mask (True where a real token is predicted)."""
        ids = batch["x_indices"].to(self.device)
        mask = batch["mask"].to(self.device)
        x, y, target_mask = ids[:, :-1], ids[:, 1:], mask[:, 1:]
        if None is not loss_requests:
            x = loss_requests(x)  # e.g. corrupt the input but not the target
        z = self(x)
        return x, y, z, target_mask

    def token_losses(self, batch: dict[str, Tensor], loss_requests: Callable | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Per-position cross-entropy (batch, seq-1), the target mask, and the logits."""
        _, y, z, target_mask = self.get_batch_xyz(batch, loss_requests)
        losses = F.cross_entropy(z.flatten(0, 1).float(), y.flatten(), reduction="none").view_as(y)
        return losses * target_mask, target_mask, z

    def get_losses(
        self, batch: dict[str, Tensor], train_params: Any = None, loss_requests: Callable | None = None
    ) -> tuple[dict[str, Tensor], int]:
        """`({"main": mean token loss}, n_samples)`; the trainer minimises `main` and logs every entry."""
        losses, target_mask, _ = self.token_losses(batch, loss_requests)
        main = losses.sum() / target_mask.sum().clamp(min=1)
        return {"main": main}, batch["x_indices"].shape[0]

    def eval_sums(self, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """Evaluation statistics as (sum, count) pairs so they average exactly over any batching.

        `loss:main` is the token-mean cross-entropy; with an `answer_mask` (tasks with an answer
        separator) also `acc:answer` (teacher-forced answer-token accuracy) and `exact:answer`
        (samples whose whole answer is right). Override to add your own.
        """
        losses, target_mask, z = self.token_losses(batch)
        out = {"loss:main": (losses.sum(), target_mask.sum())}
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
        pref: str | Sequence[int] = "",
        max_seq_len: int = 100,
        temperature: float = 1,
        nucleus: float | None = None,
        top_k: int | None = None,
        as_str: bool = True,
        generator: torch.Generator | None = None,
    ) -> str | list[int]:
        """Continue `pref` until EOS or `max_seq_len` tokens (prefix included)."""
        check_sampling_args(temperature, nucleus, top_k)
        was_training = self.training
        self.eval()
        ids = self.tokenizer(pref) if isinstance(pref, str) else list(pref)
        if not ids:
            ids = [self.tokenizer.bos_id]
        limit = min(max_seq_len, self.model_params.max_seq_len)
        while len(ids) < limit:
            logits = self(torch.tensor([ids], device=self.device))[:, -1]
            nxt = int(choose_next(logits, temperature, nucleus, top_k, generator)[0])
            ids.append(nxt)
            if nxt == self.tokenizer.eos_id:
                break
        self.train(was_training)
        return self.tokenizer.decode(ids) if as_str else ids
