"""Every tokenizer kind, registered, and restoring a tokenizer from its JSON dict.

The kinds live beside their libraries (`data/tokenizer.py`: `char`; `data/hf_tokenizers.py`:
`bpe`, pretrained; `data/vector_input.py`: vector inputs) and register themselves with
`@register_tokenizer` when imported. This module imports them all, so it sits above them and
the base class never has to import its subclasses. A new kind's module goes in the imports here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import data.hf_tokenizers  # noqa: F401  (registers bpe, pretrained)
import data.vector_input  # noqa: F401  (registers vectors)
from data.tokenizer import TOKENIZER_KINDS, Tokenizer


def tokenizer_from_json(d: dict[str, Any]) -> Tokenizer:
    kind = d.get("kind")
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {sorted(TOKENIZER_KINDS)}")
    return TOKENIZER_KINDS[kind].from_json(d)


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_json(json.loads(Path(path).read_text()))
