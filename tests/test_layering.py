"""Imports point one way: core ← data, model ← train ← the top-level scripts; no cycles.

`core/` (errors, parameter machinery, batch format) imports nothing of the harness; `data/` and
`model/` import only `core/` and themselves (a type-only import under `if TYPE_CHECKING:` is
fine); `train/` imports no top-level script. Every import counts, function-level ones too, and
importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`. Among the harness modules the
imports form no cycle, and a function-level import of a harness module says why it is not at
the top (a comment on its line, or a comment line just above it inside the function: usually
"torch-free --help" or "numpy-free --dry-run")."""
from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO, Workspace

LAYERS = ("core", "data", "model", "train")
SCRIPTS = {"main", "model_explorer", "dynamics", "pretrained", "gpt2", "bench"}
SCRIPT_FILES = ("main.py", "model_explorer.py", "dynamics.py", "pretrained.py", "gpt2.py")  # top-level scripts (bench/ is a package)
HARNESS = set(LAYERS) | SCRIPTS
FORBIDDEN = {
    "core": HARNESS - {"core"},
    "data": {"model", "train"} | SCRIPTS,
    "model": {"data", "train"} | SCRIPTS,
    "train": SCRIPTS,
}
# "file": {packages it may import against the rule}, each with why. Keep it short.
ALLOWED: dict[str, set[str]] = {}


@dataclass(frozen=True)
class Import:
    targets: tuple[str, ...]  # dotted names it may load: `from a.b import c` → a.b and a.b.c
    line: int
    end_line: int
    function_line: int | None  # the `def` line of the function it sits in; None at module level


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def imports(source: str, module: str = "", is_package: bool = False) -> list[Import]:
    """Every import that runs, skipping `if TYPE_CHECKING:` blocks; relative ones resolved against
    `module` (skipped when it is not given)."""
    found: list[Import] = []
    package = module.split(".") if is_package else module.split(".")[:-1]

    def visit(node: ast.AST, function_line: int | None) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child, function_line)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function_line = node.lineno
        if isinstance(node, ast.Import):
            found.append(Import(tuple(a.name for a in node.names), node.lineno, node.end_lineno or node.lineno, function_line))
        elif isinstance(node, ast.ImportFrom) and (module or not node.level):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            base = ".".join(p for p in (base, node.module or "") if p)
            targets = (base, *(f"{base}.{a.name}" for a in node.names if a.name != "*"))
            found.append(Import(tuple(t for t in targets if t), node.lineno, node.end_lineno or node.lineno, function_line))
        for child in ast.iter_child_nodes(node):
            visit(child, function_line)

    visit(ast.parse(source), None)
    return found


def imported_packages(source: str) -> set[str]:
    """Top-level package names a module imports anywhere (absolute imports), skipping `if TYPE_CHECKING:` blocks."""
    return {i.targets[0].split(".")[0] for i in imports(source)}


# --- the layers ---------------------------------------------------------------------------------
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


# --- no cycles ----------------------------------------------------------------------------------
def harness_sources() -> dict[str, tuple[str, bool]]:
    """Dotted module name → (source, is a package) for every module of core/, data/, model/, train/."""
    out = {}
    for layer in LAYERS:
        for path in sorted((REPO / layer).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_package else parts)] = (path.read_text(), is_package)
    return out


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module → the modules among `sources` that importing it runs directly (its own packages' `__init__` too)."""
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        edges = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}  # a.b.c runs a, a.b first
        for imp in imports(source, module, is_package):
            for target in imp.targets:
                while target and target not in sources:
                    target = target.rpartition(".")[0]
                if target:
                    edges.add(target)
        graph[module] = (edges & set(sources)) - {module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path) per back edge a depth-first search meets; [] when the graph is acyclic."""
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(import_graph(harness_sources()))
    assert not cycles, "import cycles (every import counts; move the shared piece down or the joining piece up): " + "; ".join(" → ".join(c) for c in cycles)


def test_the_cycle_check_sees_function_level_and_package_cycles():
    """Can fail: a cycle through a function-level import, or through a package's `__init__`, is found;
    a TYPE_CHECKING import and an acyclic chain are not cycles."""
    def graph(**modules: str) -> dict[str, set[str]]:
        return import_graph({name.replace("_", "."): (src, name == "p") for name, src in modules.items()})

    chain = dict(p="", p_a="def f():\n    import p.b\n", p_b="from p.c import x\n", p_c="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.a\n")
    assert find_cycles(graph(**chain)) == []
    looped = {**chain, "p_c": "def g():\n    from p import a\n"}
    assert find_cycles(graph(**looped)) == [["p.a", "p.b", "p.c", "p.a"]]
    assert find_cycles(graph(p="from . import a\n", p_a="")) == [["p", "p.a", "p"]], "p.a runs p/__init__ first"
    assert find_cycles({"x": {"y"}, "y": {"x"}, "z": {"x"}}) == [["x", "y", "x"]]


# --- function-level imports say why -------------------------------------------------------------
def unexplained_imports(source: str, packages: frozenset[str] = frozenset(LAYERS)) -> list[int]:
    """Lines of function-level imports of `packages` with no comment on them or on a comment line
    directly above them (above their group of consecutive imports) inside the same function."""
    comments: dict[int, bool] = {}  # line → the line is nothing but a comment
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = not tok.line[: tok.start[1]].strip()
    found = imports(source)
    import_lines = {n for i in found for n in range(i.line, i.end_line + 1)}
    bad = []
    for imp in found:
        if imp.function_line is None or not {t.split(".")[0] for t in imp.targets} & packages:
            continue
        if any(n in comments for n in range(imp.line, imp.end_line + 1)):
            continue
        above = imp.line - 1
        while above in import_lines:
            above -= 1
        if not (above > imp.function_line and comments.get(above)):
            bad.append(imp.line)
    return bad


def checked_for_why() -> list[Path]:
    """The files whose function-level harness imports must say why: the layers, the top-level scripts and bench/."""
    return [p for layer in LAYERS for p in sorted((REPO / layer).rglob("*.py"))] + [REPO / f for f in SCRIPT_FILES] + sorted((REPO / "bench").glob("*.py"))


def test_function_level_harness_imports_say_why():
    bad = {}
    for path in checked_for_why():
        lines = path.read_text().splitlines()
        for n in unexplained_imports(path.read_text(), frozenset(HARNESS)):  # a script importing a script counts too
            bad[f"{path.relative_to(REPO)}:{n}"] = lines[n - 1].strip()
    assert not bad, f"move these to the top of their module, or say why they can't be (a comment on the line or just above): {bad}"


def test_the_why_check_sees_a_bare_function_level_import():
    """Can fail: only `h`'s and `k`'s imports are unexplained (k's comment is outside the function);
    with the scripts counted as the harness, `m`'s import of another script is too."""
    src = (
        "import core.errors\n"
        "def f():\n    import data.x  # torch-free --help\n"
        "def g():\n    x = 1\n    # numpy-free --dry-run\n    from data import y\n    from data.z import (\n        w,\n    )\n"
        "def h():\n    import json  # not the harness: needs no reason\n    from train.run import run_one\n"
        "# a comment outside\ndef k():\n    import model.lm\n"
        "def m():\n    from dynamics import Table\n"
    )
    assert unexplained_imports(src) == [13, 16]
    assert unexplained_imports(src, frozenset(HARNESS)) == [13, 16, 18]


def test_the_why_check_covers_the_top_level_scripts():
    """Can fail: each top-level script exists and is among the files checked."""
    checked = set(checked_for_why())
    for name in SCRIPT_FILES:
        assert (REPO / name).is_file() and REPO / name in checked, name
    assert {Path(f).stem for f in SCRIPT_FILES} == SCRIPTS - {"bench"}, "a new top-level script: add it to SCRIPT_FILES"
    assert REPO / "bench" / "throughput.py" in checked


# --- what the function-level imports buy -------------------------------------------------------
HEAVY = ("torch", "lightning", "numpy", "transformers", "datasets")


def test_help_dry_run_and_the_light_scripts_load_no_heavy_library(ws: Workspace):
    """Can fail: `main.py --help` and `--dry-run`, `import model_explorer`, `gpt2` and `pretrained`
    load none of HEAVY (their function-level imports keep it so); `import dynamics` in the same
    process does (it loads checkpoints), which shows the probe sees them."""
    ws.write_config("t")
    probe = (
        "import sys, main, model_explorer, gpt2, pretrained\n"
        "main.build_parser().format_help()\n"
        f"rc = main.main({ws.args('--config=t', '--dry-run', '--no-wandb')!r})\n"
        f"loaded = lambda: ','.join(m for m in {HEAVY!r} if m in sys.modules)\n"
        "light = loaded()\n"
        "import dynamics\n"
        "print(rc, light, loaded(), sep='|')\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    rc, light, heavy = proc.stdout.strip().splitlines()[-1].split("|")
    assert (rc, light) == ("0", ""), f"a top-level import pulls in a heavy library: {light} ({proc.stderr[-300:]})"
    assert {"torch", "lightning"} <= set(heavy.split(","))
