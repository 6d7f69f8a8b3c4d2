"""Names that moved to another module, answered with where they live now.

Importing a module's old name back would bring back the import cycle the move removed, so an old
`from train.saving import load_lm` gets one line naming the new home instead of Python's bare
"cannot import name". A module opts in with `__getattr__ = moved(__name__, {name: new module})`.
"""
from __future__ import annotations

from typing import Any, Callable


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) for the names in `names` (old name → module that has it now)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            raise ImportError(f"{module}.{name} moved to {names[name]}: use `from {names[name]} import {name}`", name=name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
