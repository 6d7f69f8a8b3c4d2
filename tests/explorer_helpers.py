"""Fixtures shared by the explorer/sampling/hooks/report/notebook tests (import them by name)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch


@contextmanager
def few_threads():
    """Tiny models run fastest on one thread, and a busy machine's cores aren't fought over."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def one_thread():
    with few_threads():
        yield


TINY_RUN = """
DataParams
task="copy"
n_train_samples=256
n_val_samples=40
n_test_samples=40
min_len=2
max_len=6
alphabet="abcd"
max_seq_len=16

TrainParams
epochs=2
batch_size=32
lr=3e-3
warmup_steps=2
hyperparams_log_freq=2
n_print_samples=0

ModelParams
layer_architecture="custom-transformer"
dim=16
n_layers=2
n_heads=2
max_seq_len=16
"""


def train_tiny_run(root: Path, name: str = "tiny", text: str = TINY_RUN) -> Path:
    """Train and save one tiny run under root/saved-models; returns its folder."""
    import main

    root = Path(root)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / f"{name}.txt").write_text(text)
    args = [f"--config={name}", f"--configs-dir={root / 'configs'}", f"--save-dir={root / 'saved-models'}", f"--log-dir={root / 'logs'}", "--no-wandb", "--save"]
    with pytest.MonkeyPatch.context() as mp, few_threads():
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("HOME", str(root / "home"))
        assert main.main(args) == 0
    (run,) = sorted(p.parent for p in (root / "saved-models").rglob("manifest.json") if name in p.parts)
    return run
