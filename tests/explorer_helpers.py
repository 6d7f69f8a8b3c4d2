"""A trained tiny run for the explorer/sampling/hooks/report/notebook tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_config, torch_threads

TINY_RUN = tiny_config(
    n_val_samples=40, n_test_samples=40, max_len=6, epochs=2, hyperparams_log_freq=2, n_print_samples=0,
    layer_architecture='"custom-transformer"', n_layers=2,
)


def train_tiny_run(root: Path, name: str = "tiny", text: str = TINY_RUN) -> Path:
    """Train and save one tiny run under root/saved-models; returns its folder."""
    import main

    root = Path(root)
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "configs" / f"{name}.txt").write_text(text)
    args = [f"--config={name}", f"--configs-dir={root / 'configs'}", f"--save-dir={root / 'saved-models'}", f"--log-dir={root / 'logs'}", "--no-wandb", "--save"]
    with pytest.MonkeyPatch.context() as mp, torch_threads(1):
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("HOME", str(root / "home"))
        assert main.main(args) == 0
    (run,) = sorted(p.parent for p in (root / "saved-models").rglob("manifest.json") if name in p.parts)
    return run
