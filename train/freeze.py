"""Choosing parameters by name pattern (`TrainParams.freeze`, `lora_targets`) and counting them.

A pattern is matched with `fnmatch` against a parameter's own name (`decoder.layers.0.linear1.weight`)
and against its hook-style alias (`blocks.0.linear1.weight`, as in docs/hooks.md), so
`freeze=["blocks.0.*", "embed"]` reads like the activation names. A pattern without wildcards
also matches everything below it (`embed` matches `embed.weight`). A pattern that matches
nothing is an error: a typo must not silently train everything.
"""
from __future__ import annotations

import fnmatch
import re
from typing import Iterable

from torch import nn

from core.errors import UserError

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.")


def aliases(name: str) -> tuple[str, ...]:
    """The parameter's name and its `blocks.{i}.` alias (the same prefix the hook names use)."""
    alias = _LAYER.sub(r"blocks.\1.", name)
    return (name,) if alias == name else (name, alias)


def matches(name: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) or n.startswith(pattern + ".") for n in aliases(name))


def select(names: Iterable[str], patterns: Iterable[str], key: str) -> list[str]:
    """The names matched by any pattern; `key` (e.g. 'TrainParams.freeze') names the setting in errors."""
    names = list(names)
    chosen: list[str] = []
    for p in patterns:
        hit = [n for n in names if matches(n, p)]
        if not hit:
            shown = ", ".join(aliases(n)[-1] for n in names[:6])
            raise UserError(f"{key}: pattern {p!r} matches no parameter; names look like {shown}, ...")
        chosen += [n for n in hit if n not in chosen]
    return chosen


def freeze(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Set requires_grad=False on every parameter matched by a pattern; returns the matched names.

    Tied weights (the embedding and the output head) are one tensor: freezing either name freezes both.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    chosen = select(params, patterns, "TrainParams.freeze")
    for n in chosen:
        params[n].requires_grad_(False)
    return chosen


def param_summary(model: nn.Module) -> str:
    """'N parameters', plus the trainable / frozen split when some are frozen."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    if trainable == total:
        return f"{total:,} parameters"
    return f"{total:,} parameters ({trainable:,} trainable / {total - trainable:,} frozen)"
