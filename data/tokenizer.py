"""Tokenizers share one small interface so the LM, data and explorer never care which one it is.

A tokenizer turns text into ids that start with BOS (so a model can predict the first real
token, and `sample(pref="")` has something to condition on). Datasets append EOS themselves.
Every tokenizer serialises to one JSON dict (`to_json`) with a `kind` key, and
`data.tokenizer_kinds.tokenizer_from_json` restores it exactly; `save`/`load_tokenizer` put that
in a file.

Add a new kind by subclassing `Tokenizer` and decorating it with `@register_tokenizer`, in a
module `data/tokenizer_kinds.py` imports (so every kind is registered before one is loaded).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

from core.moved import moved

TOKENIZER_KINDS: dict[str, type["Tokenizer"]] = {}


def register_tokenizer(cls: type["Tokenizer"]) -> type["Tokenizer"]:
    TOKENIZER_KINDS[cls.kind] = cls
    return cls


class Tokenizer:
    """Base interface. Subclasses implement `_encode`, `_decode_one`, `n_tokens`, JSON I/O."""

    kind: str = "base"
    bos_id: int
    eos_id: int
    pad_id: int

    # --- to implement -------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        raise NotImplementedError

    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Override when the backend batches faster (HF fast tokenizers do)."""
        return [self._encode(t) for t in texts]

    def token_str(self, i: int) -> str:
        """How one id is shown on plot axes and in debugging."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Tokenizer":
        raise NotImplementedError

    # --- shared behaviour ---------------------------------------------------------------
    @property
    def special_ids(self) -> set[int]:
        return {self.bos_id, self.eos_id, self.pad_id}

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = False) -> list[int]:
        return self._wrap(self._encode(text), add_bos, add_eos)

    def encode_batch(self, texts: Sequence[str], add_bos: bool = True, add_eos: bool = False) -> list[list[int]]:
        return [self._wrap(ids, add_bos, add_eos) for ids in self._encode_many(list(texts))]

    def _wrap(self, ids: list[int], add_bos: bool, add_eos: bool) -> list[int]:
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def __call__(self, text: str | Sequence[str], add_bos: bool = True, add_eos: bool = False):
        """`tok("hi")` → ids; `tok(["hi", "there"])` → list of id lists (the seed's usage)."""
        if isinstance(text, str):
            return self.encode(text, add_bos, add_eos)
        return self.encode_batch(text, add_bos, add_eos)

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            ids = [i for i in ids if i not in self.special_ids]
        return self._decode_ids(ids)

    def _decode_ids(self, ids: list[int]) -> str:
        return "".join(self.token_str(i) for i in ids)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False))


@register_tokenizer
class CharTokenizer(Tokenizer):
    """One id per character; ids 0..2 are PAD, BOS, EOS."""

    kind = "char"
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, chars: Iterable[str]):
        self.chars = sorted(set(chars))
        self.itos = list(self.SPECIALS) + self.chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        return cls(chars)

    @property
    def n_tokens(self) -> int:
        return len(self.itos)

    def _encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in this char tokenizer's vocabulary") from None

    def token_str(self, i: int) -> str:
        return self.itos[i]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CharTokenizer":
        return cls(d["chars"])


__getattr__ = moved(__name__, {"load_tokenizer": "data.tokenizer_kinds", "tokenizer_from_json": "data.tokenizer_kinds"})  # old homes of names that moved (no import cycle), answered in one line
