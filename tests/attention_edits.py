"""Test helpers: edit the attention as a researcher would, by monkeypatching one editable piece."""
from __future__ import annotations

from typing import Any, Callable

import model.transformer.torch_f_multi_head_attention_forward as attn_math

SHIPPED_PATTERN = attn_math.attention_pattern


def scaled_pattern(scalar: float, condition: Callable[[Any], bool] = lambda requests: True) -> Callable:
    """The seed's `attn_scalar` edit (scores × scalar before the softmax), optionally only when `condition(attn_requests)`."""

    def attention_pattern(attn_output_weights, model_params, attn_requests=None):
        if condition(attn_requests):
            attn_output_weights = attn_output_weights * scalar
        return SHIPPED_PATTERN(attn_output_weights, model_params, attn_requests)

    return attention_pattern


def same_math(fn: Callable) -> Callable:
    """A wrapper that computes exactly what `fn` does: forces the explicit path without changing the result."""
    return lambda *args, **kw: fn(*args, **kw)


def force_explicit(monkeypatch: Any) -> None:
    monkeypatch.setattr(attn_math, "attention_pattern", same_math(SHIPPED_PATTERN))
