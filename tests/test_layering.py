"""Imports point one way: core ← data, model ← train ← the top-level scripts.

`core/` (errors, parameter machinery, batch format) imports nothing of the harness; `data/` and
`model/` import only `core/` and themselves (a type-only import under `if TYPE_CHECKING:` is
fine); `train/` imports no top-level script. Every import counts, function-level ones too."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

SCRIPTS = {"main", "model_explorer", "dynamics", "pretrained", "gpt2", "bench"}
HARNESS = {"core", "data", "model", "train"} | SCRIPTS
FORBIDDEN = {
    "core": HARNESS - {"core"},
    "data": {"model", "train"} | SCRIPTS,
    "model": {"data", "train"} | SCRIPTS,
    "train": SCRIPTS,
}
# "file": {packages it may import against the rule}, each with why. Keep it short.
ALLOWED: dict[str, set[str]] = {}


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imported_packages(source: str) -> set[str]:
    """Top-level package names a module imports anywhere, skipping `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def violations() -> dict[str, set[str]]:
    out = {}
    for layer, banned in FORBIDDEN.items():
        for path in sorted((REPO / layer).rglob("*.py")):
            name = path.relative_to(REPO).as_posix()
            bad = (imported_packages(path.read_text()) & banned) - ALLOWED.get(name, set())
            if bad:
                out[name] = bad
    return out


def test_imports_point_one_way():
    assert not violations(), f"these import a layer above (or beside) their own; see {Path(__file__).name}: {violations()}"


def test_allowed_exceptions_are_still_needed():
    stale = {f: pkgs for f, pkgs in ALLOWED.items() if not pkgs & imported_packages((REPO / f).read_text())}
    assert not stale, f"no longer imported: drop from ALLOWED: {stale}"


def test_the_check_sees_an_upward_import():
    """Can fail: a function-level import of train/ is seen; a TYPE_CHECKING-only one is not."""
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from data.tokenizer import Tokenizer\ndef f():\n    from train.run import run_one\n"
    assert imported_packages(src) == {"typing", "train"}
