"""Shared machinery for the three parameter dataclasses (torch-free: `main.py --help` stays fast).

Every field is declared with `param(default, "one-line help")`, so the config parser, `--help`
and the docs all read the same source of truth.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any


def param(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field with a default, a one-line help string and optionally its allowed values."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_choices(cls: type) -> dict[str, tuple | None]:
    return {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls)}


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    """Readable name of a type hint, for error messages ('int', 'float or None', ...)."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def value_matches(value: Any, tp: Any) -> bool:
    """Whether a parsed literal fits a field's type (ints are accepted where floats are)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(value_matches(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            return False
        return not args or all(value_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def coerce(value: Any, tp: Any) -> Any:
    """Turn ints into floats for float fields so saved configs are typed consistently."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
