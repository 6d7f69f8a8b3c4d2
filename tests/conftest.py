"""Shared fixtures: every test runs with HOME and wandb pointed at a temp dir, and can write
tiny config files and call `main.main` in-process or as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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

    def write_config(self, name: str, text: str = TINY, **overrides: str) -> Path:
        """Write configs/{name}.txt; overrides replace or add `key=value` lines in place."""
        lines = text.strip().splitlines()
        for key, value in overrides.items():
            for i, line in enumerate(lines):
                if line.split("=", 1)[0].strip() == key:
                    lines[i] = f"{key}={value}"
                    break
            else:
                raise KeyError(f"{key} not in the template; add it to the text instead")
        path = self.configs / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
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
