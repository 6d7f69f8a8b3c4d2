"""A tiny GPT-2 written with `save_pretrained` into a folder: no hub needed (the builder lives in gpt2.py)."""
from __future__ import annotations

from gpt2 import TINY_TEXTS as TEXTS, make_tiny_gpt2  # noqa: F401
