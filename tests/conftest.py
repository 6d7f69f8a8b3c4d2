"""Shared fixtures: every test runs with HOME and wandb pointed at a temp dir, and can write
tiny config files (`tiny_config`) and call `main.main` in-process or as a subprocess; `one_thread`
(or `torch_threads`) runs tiny models on one thread."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TINY = """
DataParams
task="copy"
n_train_samples=256
n_val_samples=32
n_test_samples=32
min_len=2
max_len=5
alphabet="abcd"
max_seq_len=16

TrainParams
epochs=1
batch_size=32
lr=3e-3
warmup_steps=2
hyperparams_log_freq=4
n_print_samples=1
print_sample_len=8

ModelParams
dim=16
n_layers=1
n_heads=2
max_seq_len=16
"""




def set_values(text: str, **values: object) -> str:
    """`text` (a config) with each `key=value` line replaced, or added under the section owning the key.

    Values are written as given (`lr="[1e-3,3e-3]"` sweeps); a key in two sections (`max_seq_len`)
    is set in both; a key no dataclass knows (a task file's own setting) goes under DataParams.
    """
    from train.config import SECTIONS
    from core.params_base import field_types

    lines = text.strip().splitlines()
    for key, value in values.items():
        hits = [i for i, line in enumerate(lines) if "=" in line and line.split("=", 1)[0].strip() == key]
        for i in hits:
            lines[i] = f"{key}={value}"
        if not hits:
            section = next((s for s, cls in SECTIONS.items() if key in field_types(cls)), "DataParams")
            at = lines.index(section) + 1
            lines.insert(at, f"{key}={value}")
    return "\n".join(lines) + "\n"


def tiny_config(**values: object) -> str:
    """The tiny copy-task config (dim 16, 1 layer, 256 samples) with `values` set: the one template for tests."""
    return set_values(TINY, **values)


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Tiny models run fastest on one thread, and a busy machine's cores aren't fought over."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Request it (or `pytestmark = pytest.mark.usefixtures("one_thread")`) to train on one thread."""
    with torch_threads(1):
        yield


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(home / "wandb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HARNESS_DATA_CACHE", str(home / "data-cache"))
    yield


class Workspace:
    """A temp folder with configs/, saved-models/ and logs/, and ways to run main.py on it."""

    def __init__(self, root: Path):
        self.root = root
        self.configs = root / "configs"
        self.saves = root / "saved-models"
        self.logs = root / "logs"
        self.configs.mkdir()

    def write_config(self, name: str, text: str = TINY, **overrides: object) -> Path:
        """Write configs/{name}.txt: `text` with `overrides` set (see `set_values`)."""
        path = self.configs / f"{name}.txt"
        path.write_text(set_values(text, **overrides))
        return path

    def args(self, *extra: str) -> list[str]:
        return [f"--configs-dir={self.configs}", f"--save-dir={self.saves}", f"--log-dir={self.logs}", *extra]

    def main(self, *extra: str) -> int:
        import main

        return main.main(self.args(*extra))

    def subprocess(self, *extra: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "main.py"), *self.args(*extra)],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})},
        )

    def run_dirs(self) -> list[Path]:
        return sorted(p.parent for p in self.saves.rglob("manifest.json"))


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path)
