"""Let `python3 main.py ...` work as the README types it, whichever `python3` comes first on PATH.

`make demo` / `make test` install everything into `.venv`. A newcomer then types the README's
commands with the system `python3`, which has no torch. Instead of a ModuleNotFoundError, the
command is re-executed once, unchanged, with `.venv/bin/python` (it says so on stderr).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"  # not resolved: the venv's own symlink is what finds its packages
GUARD = "HARNESS_REEXECED"  # set in the re-executed process, so a broken .venv cannot loop


def ensure_venv_python(module: str = "torch") -> None:
    """Re-exec this command under `.venv/bin/python` when `module` is missing here; exit 2 with a fix when that can't help."""
    if importlib.util.find_spec(module) is not None:
        return
    if VENV_PYTHON.exists() and not os.environ.get(GUARD) and Path(sys.executable).absolute() != VENV_PYTHON:
        print(f"note: {sys.executable} has no {module}; running this command with {VENV_PYTHON} (or `source .venv/bin/activate` first)", file=sys.stderr, flush=True)
        os.environ[GUARD] = "1"
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), *sys.orig_argv[1:]])
    where = f"{VENV_PYTHON} lacks it too" if VENV_PYTHON.exists() else "there is no .venv yet"
    print(f"error: {module} is not installed for {sys.executable} and {where}; run `make demo` (creates .venv and installs requirements.txt)", file=sys.stderr)
    sys.exit(2)
