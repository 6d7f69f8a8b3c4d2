"""Activation hooks: one per-call mechanism behind `run_with_cache`, `run_with_hooks`,
`get_attns=True`, `get_embeddings=True` and `model_explorer.show_lm_attns`.

The model calls `hook(name, tensor)` at every named point of its forward pass (names are listed
in docs/hooks.md, TransformerLens style: `blocks.{i}.attn.hook_pattern`, ...). Without hooks
the callable is `NO_HOOK`, which returns the tensor untouched, so training pays nothing.
A `Hooks` object lives for exactly one forward call: it records the activations its filter
asks for and lets user functions read or replace them. Nothing is registered on the modules,
so there is nothing to remove afterwards, even when the call raises.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable, Union

from torch import Tensor

NamesFilter = Union[None, str, Iterable[str], Callable[[str], bool]]


@dataclass(frozen=True)
class HookPoint:
    """What a hook function receives besides the activation (TransformerLens passes the same)."""

    name: str

    @property
    def layer(self) -> int | None:
        m = re.match(r"blocks\.(\d+)\.", self.name)
        return int(m.group(1)) if m else None


HookFn = Callable[[Tensor, HookPoint], Union[Tensor, None]]


class NoHook:
    """The default: every hook point is the identity and nothing is wanted."""

    def __call__(self, name: str, x: Tensor) -> Tensor:
        return x

    def wants(self, name: str) -> bool:
        return False

    def scoped(self, prefix: str) -> "NoHook":
        return self

    def __bool__(self) -> bool:
        return False


NO_HOOK = NoHook()


def as_filter(names: NamesFilter) -> Callable[[str], bool]:
    """None = everything; a string or list of names = those names; a callable is used as is."""
    if names is None:
        return lambda name: True
    if callable(names):
        return names
    if isinstance(names, str):
        names = [names]
    wanted = set(names)
    return wanted.__contains__


class Hooks:
    """Hook functions and an activation cache for one forward call.

    `fwd_hooks`: (name, fn) pairs; `name` may also be a callable filter on names. `fn(x, hook)`
    returns a replacement tensor or None (keep x, possibly edited in place).
    `cache_filter`: which activations to record in `self.cache` (after the hook functions ran,
    i.e. what the rest of the model sees). `detach` stores them without autograd history.
    """

    def __init__(self, fwd_hooks: Iterable[tuple[str | Callable[[str], bool], HookFn]] = (), cache_filter: NamesFilter | bool = False, detach: bool = True):
        self.named: dict[str, list[HookFn]] = {}
        self.filtered: list[tuple[Callable[[str], bool], HookFn]] = []
        for name, fn in fwd_hooks:
            if callable(name):
                self.filtered.append((name, fn))
            else:
                self.named.setdefault(name, []).append(fn)
        self.record: Callable[[str], bool] = (lambda name: False) if cache_filter is False else as_filter(cache_filter)
        self.detach = detach
        self.cache: dict[str, Tensor] = {}
        self.seen: list[str] = []  # every hook point the call passed, in order

    def functions(self, name: str) -> list[HookFn]:
        return self.named.get(name, []) + [fn for f, fn in self.filtered if f(name)]

    def wants(self, name: str) -> bool:
        """Whether anything is interested in `name` (the attention skips its fused path for the pattern)."""
        return bool(self.functions(name)) or self.record(name)

    def __call__(self, name: str, x: Tensor) -> Tensor:
        self.seen.append(name)
        for fn in self.functions(name):
            out = fn(x, HookPoint(name))
            if out is not None:
                if out.shape != x.shape:
                    raise ValueError(f"hook on {name} returned shape {tuple(out.shape)}, expected {tuple(x.shape)}")
                x = out
        if self.record(name):
            self.cache[name] = x.detach() if self.detach else x
        return x

    def scoped(self, prefix: str) -> "ScopedHooks":
        return ScopedHooks(self, prefix)

    def __bool__(self) -> bool:
        return True


class ScopedHooks:
    """The same hooks seen from inside a sub-module: local names get `prefix` prepended."""

    def __init__(self, root: Hooks, prefix: str):
        self.root, self.prefix = root, prefix

    def __call__(self, name: str, x: Tensor) -> Tensor:
        return self.root(self.prefix + name, x)

    def wants(self, name: str) -> bool:
        return self.root.wants(self.prefix + name)

    def scoped(self, prefix: str) -> "ScopedHooks":
        return ScopedHooks(self.root, self.prefix + prefix)

    def __bool__(self) -> bool:
        return True


Hook = Union[NoHook, Hooks, ScopedHooks]
