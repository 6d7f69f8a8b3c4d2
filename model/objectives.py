"""Objectives other than next-token prediction: how an LM reads its input and what it learns.

The LM's own code is the token objective (embedding → transformer → vocabulary head,
cross-entropy on the next token). A task whose positions are not tokens names another
objective through its tokenizer (`data/vector_input.py: VectorTokenizer.objective`); the LM
then builds that objective, which replaces the read-in and the head and answers `as_batch`,
`get_losses` and `eval_sums`. Everything between (positional encodings, both layer
architectures, hooks, the trainer, saving and loading) is shared.

Add an objective by subclassing `Objective` and decorating it with `@objective("name")`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

OBJECTIVES: dict[str, type["Objective"]] = {}


def objective(name: str):
    def wrap(cls: type["Objective"]) -> type["Objective"]:
        OBJECTIVES[name] = cls
        cls.name = name
        return cls

    return wrap


def objective_for(tokenizer: Any) -> "Objective | None":
    """The objective a tokenizer asks for, or None for plain next-token prediction."""
    name = getattr(tokenizer, "objective", None)
    if name is None:
        return None
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](tokenizer)


class Objective:
    name = "base"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def build(self, lm: nn.Module) -> None:
        """Replace `lm.embed` (the read-in) and `lm.out` (the head) as this objective needs."""
        raise NotImplementedError

    def as_batch(self, lm: nn.Module, x: Any) -> Tensor:
        raise NotImplementedError

    def get_losses(self, lm: nn.Module, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
        raise NotImplementedError

    def eval_sums(self, lm: nn.Module, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        raise NotImplementedError


@objective("in_context_bce")
class InContextBCE(Objective):
    """In-context binary classification (TART): the input interleaves x_1, y_1, x_2, y_2, ...
    as vectors; the output at each x_i is a logit for y_i, trained with binary cross-entropy.

    Batches hold `x_vectors` (batch, 2N, input_dim) floats, `y` (batch, N) in {0, 1} and `mask`
    (batch, 2N); see data/tasks/tart.py for the layout of the vectors.
    """

    def build(self, lm: nn.Module) -> None:
        dim = lm.model_params.dim
        lm.embed = nn.Linear(self.tokenizer.input_dim, dim)  # linear read-in instead of a token table
        lm.out = nn.Linear(dim, 1)  # one logit per position (the tie with the embedding is gone)
        for m in (lm.embed, lm.out):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)

    def as_batch(self, lm: nn.Module, x: Any) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[-1] != self.tokenizer.input_dim:
            raise ValueError(f"{self.name}: input must be (batch, seq, {self.tokenizer.input_dim}) vectors; got shape {tuple(x.shape)}")
        return x.to(lm.device)

    def y_logits(self, lm: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(batch, N) logits read at the x positions, and the (batch, N) float labels."""
        z = lm(batch["x_vectors"])[..., 0]
        return z[:, 0::2].float(), batch["y"].to(lm.device).float()

    def get_losses(self, lm: nn.Module, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
        logits, y = self.y_logits(lm, batch)
        return {"main": F.binary_cross_entropy_with_logits(logits, y)}, y.shape[0]

    def eval_sums(self, lm: nn.Module, batch: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor]]:
        """`loss:main` (BCE per y), `acc:y` (all positions) and `acc:y_2nd_half` (more context)."""
        logits, y = self.y_logits(lm, batch)
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        right = ((logits > 0) == (y > 0.5)).float()
        half = y.shape[1] // 2
        n = torch.tensor(float(y.numel()), device=y.device)
        n2 = torch.tensor(float(right[:, half:].numel()), device=y.device)
        return {"loss:main": (bce.sum(), n), "acc:y": (right.sum(), n), "acc:y_2nd_half": (right[:, half:].sum(), n2)}
