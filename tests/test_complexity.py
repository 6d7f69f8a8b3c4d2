"""Short functions on the run path: no function over MAX_COMPLEXITY (radon's cyclomatic complexity)
or MAX_LINES lines. Known offenders are listed in KNOWN (with their size when listed, for scale);
a new offender fails the test, and so does a listed one that no longer offends (drop it)."""
from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Class

from tests.conftest import REPO

MAX_COMPLEXITY = 15
MAX_LINES = 60
RUN_PATH = ("main.py", "train", "data", "model")

# "file:function": (complexity, lines) today. Empty: keep it so; split a function rather than list it.
KNOWN: dict[str, tuple[int, int]] = {}


def _functions(blocks):
    for b in blocks:
        if isinstance(b, Class):
            yield from _functions(b.methods)
            yield from _functions(b.inner_classes)
        else:
            yield b
            yield from _functions(b.closures)


def measure() -> dict[str, tuple[int, int]]:
    """'file:function' → (cyclomatic complexity, lines) for every function on the run path."""
    files = [p for part in RUN_PATH for p in ([REPO / part] if part.endswith(".py") else sorted((REPO / part).rglob("*.py")))]
    out = {}
    for path in files:
        for fn in _functions(cc_visit(path.read_text())):
            out[f"{path.relative_to(REPO).as_posix()}:{fn.fullname}"] = (fn.complexity, fn.endline - fn.lineno + 1)
    return out


def test_no_new_long_or_complex_function():
    sizes = measure()
    too_big = {name: s for name, s in sizes.items() if s[0] > MAX_COMPLEXITY or s[1] > MAX_LINES}
    new = {n: s for n, s in too_big.items() if n not in KNOWN}
    assert not new, f"split these (complexity, lines) to <= ({MAX_COMPLEXITY}, {MAX_LINES}): {new}"


def test_known_offenders_list_is_current():
    sizes = measure()
    fixed = [n for n in KNOWN if n not in sizes or (sizes[n][0] <= MAX_COMPLEXITY and sizes[n][1] <= MAX_LINES)]
    assert not fixed, f"no longer long/complex (or gone): remove from KNOWN in {Path(__file__).name}: {fixed}"


def test_the_measure_sees_a_complex_function():
    """The check can fail: a function with 16 branches is reported."""
    body = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(16))
    blocks = cc_visit(f"def f(x):\n{body}\n    return -1\n")
    (fn,) = list(_functions(blocks))
    assert fn.complexity > MAX_COMPLEXITY
