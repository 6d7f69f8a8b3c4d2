"""Shared machinery for the three parameter dataclasses (torch-free: `main.py --help` stays fast).

Every field is declared with `param(default, "one-line help", choices=..., min=..., max=...)`:
its type (the annotation), default, allowed values, range and help live there and nowhere else,
so the config parser (`train/config.py`, `train/validate.py`), `main.py --help` and the docs all
read the same source of truth.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable

INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1  # numpy's limit
FLOAT_MAX = 1e9

Choices = typing.Union[tuple, Callable[[], typing.Iterable], None]  # a callable: read from a registry when asked


@dataclass(frozen=True)
class Range:
    """Allowed numeric values: lo..hi (each end open or closed), plus `also` (e.g. -1 = "off")."""

    lo: float = -math.inf
    hi: float = math.inf
    open_lo: bool = False  # lo itself excluded
    open_hi: bool = False
    also: tuple = ()

    def contains(self, v: float) -> bool:
        if v in self.also:
            return True
        above = v > self.lo if self.open_lo else v >= self.lo
        below = v < self.hi if self.open_hi else v <= self.hi
        return above and below

    def within(self, outer: Range) -> Range:
        """This range with a missing end (infinite) taken from `outer` (e.g. the generic int ceiling)."""
        lo_open = (self.lo, self.open_lo) if self.lo != -math.inf else (outer.lo, outer.open_lo)
        hi_open = (self.hi, self.open_hi) if self.hi != math.inf else (outer.hi, outer.open_hi)
        return Range(lo_open[0], hi_open[0], lo_open[1], hi_open[1], self.also)

    def describe(self, kind: str) -> str:
        parts = []
        if self.lo != -math.inf:
            parts.append(f"> {_num(self.lo)}" if self.open_lo else f">= {_num(self.lo)}")
        if self.hi != math.inf:
            parts.append(f"< {_num(self.hi)}" if self.open_hi else f"<= {_num(self.hi)}")
        extra = "".join(f" or {a}" for a in self.also)
        return f"{kind} {' and '.join(parts)}{extra}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def param(
    default: Any,
    help: str,
    choices: Choices = None,
    *,
    min: float | None = None,
    max: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    also: tuple = (),
) -> Any:
    """A dataclass field: default, one-line help, allowed values (`choices`: a tuple, or a callable
    reading a registry) and range (`min`/`max` inclusive, `gt`/`lt` exclusive, `also` extra values).

    Numbers without a range, or an end of one, get the generic bounds of `train/validate.py`.
    """
    rng = None
    if (min, max, gt, lt) != (None,) * 4:
        lo, hi = (gt if gt is not None else min), (lt if lt is not None else max)
        rng = Range(-math.inf if lo is None else lo, math.inf if hi is None else hi, gt is not None, lt is not None, tuple(also))
    meta = {"help": help, "choices": choices, "range": rng}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_choices(cls: type) -> dict[str, tuple | None]:
    """Allowed values per field (None: any value of the type); callables are asked now."""
    out = {}
    for f in dataclasses.fields(cls):
        c = f.metadata.get("choices")
        out[f.name] = tuple(c()) if callable(c) else c
    return out


def field_range(cls: type, name: str) -> Range | None:
    return next((f.metadata.get("range") for f in dataclasses.fields(cls) if f.name == name), None)


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    """Readable name of a type hint, for error messages ('int', 'float or None', ...)."""
    origin = typing.get_origin(tp)
    if _is_union(origin):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or str(origin) == "<class 'types.UnionType'>"


def value_matches(value: Any, tp: Any) -> bool:
    """Whether a parsed literal fits a field's type (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if _is_union(origin):
        return any(value_matches(value, a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return isinstance(value, (list, tuple)) and (not args or all(value_matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return _scalar_matches(value, tp)


def _scalar_matches(value: Any, tp: Any) -> bool:
    if tp is type(None):
        return value is None
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp) if isinstance(tp, type) else True


def coerce(value: Any, tp: Any) -> Any:
    """Turn ints into floats for float fields so saved configs are typed consistently."""
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def as_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
