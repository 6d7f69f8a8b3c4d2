"""The input interface of tasks whose positions are vectors, not tokens (e.g. `tart`).

The harness hands every LM a tokenizer, saves it with the run and restores it on load. Vector
tasks keep that contract with `VectorTokenizer`: it has no vocabulary, only the width of each
input vector and the name of the objective that reads them (model/objectives.py). Building an
`LM` with it swaps the token embedding for a linear read-in and the vocabulary head for the
objective's head; saving and loading the run need nothing else.

Torch-free.
"""
from __future__ import annotations

from typing import Any

from data.tokenizer import Tokenizer, register_tokenizer


@register_tokenizer
class VectorTokenizer(Tokenizer):
    """`input_dim` floats per position; `objective` names the model/objectives.py entry to use."""

    kind = "vectors"

    def __init__(self, input_dim: int, objective: str):
        self.input_dim = int(input_dim)
        self.objective = objective
        self.pad_id, self.bos_id, self.eos_id = 0, 0, 0  # unused: vector batches carry their own masks

    @property
    def n_tokens(self) -> int:
        return 1

    def _encode(self, text: str) -> list[int]:
        raise ValueError(f"a vector task ({self.objective}) has no text to encode; pass (batch, seq, {self.input_dim}) float tensors")

    def token_str(self, i: int) -> str:
        return "<vec>"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "input_dim": self.input_dim, "objective": self.objective}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "VectorTokenizer":
        return cls(d["input_dim"], d["objective"])
