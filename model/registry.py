"""Registries of model components: block, attention, mlp, norm, pos_encoding.

Registering is the only step that makes a component selectable: decorate the class with
`@block("name")` (or `@attention`, `@mlp`, `@norm`, `@pos_encoding`) anywhere under `model/`,
and `ModelParams` accepts the name (`layer_architecture`, `attention`, `mlp`, `norm`,
`pos_encoding`), config errors suggest the closest registered name, and `main.py --help` and
`describe()` list it with the first line of the class docstring.

Torch-free on purpose (config parsing, `--help` and `--dry-run` never import torch): the names
are found by reading the decorators in `model/**/*.py` with `ast`, and a component's module is
imported only when a model is built (`get`). Components registered at run time (a notebook, a
test) are found as well.
"""
from __future__ import annotations

import ast
import difflib
import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from core.errors import UserError

KINDS = ("block", "attention", "mlp", "norm", "pos_encoding")
MODEL_DIR = Path(__file__).resolve().parent

_runtime: dict[str, dict[str, Any]] = {k: {} for k in KINDS}  # kind -> name -> class (filled by the decorators)


def register(kind: str, name: str) -> Callable[[Any], Any]:
    """Class decorator: make `cls` selectable as `name` for `kind` (one of `KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")

    def wrap(cls: Any) -> Any:
        old = _runtime[kind].get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"{kind} {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        _runtime[kind][name] = cls
        cls.registered_name = name
        return cls

    return wrap


def block(name: str) -> Callable[[Any], Any]:
    """`@block("name")`: a transformer block (subclass `model.transformer.block.Block`)."""
    return register("block", name)


def attention(name: str) -> Callable[[Any], Any]:
    return register("attention", name)


def mlp(name: str) -> Callable[[Any], Any]:
    return register("mlp", name)


def norm(name: str) -> Callable[[Any], Any]:
    return register("norm", name)


def pos_encoding(name: str) -> Callable[[Any], Any]:
    return register("pos_encoding", name)


@lru_cache(maxsize=None)
def _declared() -> dict[str, dict[str, tuple[str, str]]]:
    """kind -> name -> (module, first docstring line), read from the decorators in model/**/*.py."""
    found: dict[str, dict[str, tuple[str, str]]] = {k: {} for k in KINDS}
    for path in sorted(MODEL_DIR.rglob("*.py")):
        text = path.read_text()
        if not any(f"@{k}(" in text or f"register(\"{k}\"" in text for k in KINDS):
            continue
        module = ".".join(path.relative_to(MODEL_DIR.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef):
                continue
            for dec in node.decorator_list:
                kind_name = _decorator(dec)
                if kind_name:
                    doc = (ast.get_docstring(node) or "").strip().split("\n")[0]
                    found[kind_name[0]][kind_name[1]] = (module, doc)
    return found


def _decorator(dec: ast.expr) -> tuple[str, str] | None:
    if not isinstance(dec, ast.Call) or not dec.args:
        return None
    fn = dec.func.attr if isinstance(dec.func, ast.Attribute) else getattr(dec.func, "id", None)
    args = [a.value for a in dec.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if fn in KINDS and len(args) >= 1:
        return fn, args[0]
    if fn == "register" and len(args) >= 2 and args[0] in KINDS:
        return args[0], args[1]
    return None


def names(kind: str) -> list[str]:
    """Every registered name of `kind`, sorted (declared in files or registered at run time)."""
    return sorted({*_declared()[kind], *_runtime[kind]})


def describe(kind: str) -> list[tuple[str, str]]:
    """(name, first docstring line) for each registered component of `kind`."""
    out = []
    for n in names(kind):
        cls = _runtime[kind].get(n)
        doc = ((cls.__doc__ or "").strip().split("\n")[0]) if cls is not None else _declared()[kind][n][1]
        out.append((n, doc))
    return out


def unknown_message(kind: str, name: Any, field: str | None = None) -> str:
    """One line: the unknown name, the closest registered ones, and how to add one."""
    close = difflib.get_close_matches(str(name), names(kind), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    return (f"unknown {field or kind} {name!r}; {hint}registered: {', '.join(map(repr, names(kind)))} "
            f"(add one with @{kind}(\"name\") under model/, see model/registry.py)")


def get(kind: str, name: str) -> Any:
    """The class registered as `name` (imports its module on first use); unknown names raise UserError."""
    if name not in _runtime[kind] and name in _declared()[kind]:
        importlib.import_module(_declared()[kind][name][0])
    if name not in _runtime[kind]:
        raise UserError(unknown_message(kind, name))
    return _runtime[kind][name]


def registered(kind: str) -> dict[str, Any]:
    """name -> class for every component of `kind` (imports them all)."""
    return {n: get(kind, n) for n in names(kind)}


class Choices:
    """The allowed values of a `ModelParams` field: the registry's names (plus None, 'the block's default')."""

    def __init__(self, kind: str, allow_none: bool = False):
        self.kind, self.allow_none = kind, allow_none

    def __contains__(self, value: Any) -> bool:
        return (value is None and self.allow_none) or value in names(self.kind)

    def __iter__(self) -> Iterator[Any]:
        yield from ([None] if self.allow_none else []) + names(self.kind)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def explain(self, field: str, value: Any) -> str:
        return unknown_message(self.kind, value, field)

    def __repr__(self) -> str:
        return f"Choices({self.kind!r})"
