"""One tiny saved run per task kind (copy, hmm, arith, tart, a data-folder text task), for tests
that must hold for every kind. Each trains in a few seconds on one thread."""
from __future__ import annotations

from pathlib import Path

from tests.explorer_helpers import train_tiny_run

TRAIN = """
TrainParams
epochs=1
batch_size=16
lr=3e-3
warmup_steps=2
hyperparams_log_freq=2
n_print_samples=0
"""

MODEL = """
ModelParams
layer_architecture="custom-transformer"
dim=16
n_layers=1
n_heads=2
max_seq_len={seq}
"""

DATA = {
    "copy": ('task="copy"\nmin_len=2\nmax_len=5\nalphabet="abcd"', 16),
    "hmm": ('task="hmm"\nmin_len=6\nmax_len=8', 16),
    "arith": ('task="arith"\nmax_num=5\nmax_ents=2\np_paren=0.0', 48),
    "tart": ('task="tart"\nn_positions=4\nn_dims=2', 8),
    "text": ('task="mytext"\npack=False', 40),  # lines of data.txt under the data folder
}
SIZES = "n_train_samples=64\nn_val_samples=16\nn_test_samples=16\n"
TEXT_LINES = ["as business managers know", "the weather is nice today", "hello world", "hi there", "well the weather will be fine"]

KINDS = tuple(DATA)


def write_text_task(data_folder: Path, name: str = "mytext", n: int = 60) -> Path:
    """`{data_folder}/{name}/data.txt`: short lines of plain text."""
    d = Path(data_folder) / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "data.txt").write_text("\n".join(f"{TEXT_LINES[i % len(TEXT_LINES)]} {i}" for i in range(n)) + "\n")
    return d


def config_text(kind: str, data_key: str = "task") -> str:
    data, seq = DATA[kind]
    data = data.replace("task=", f"{data_key}=", 1)
    return f"DataParams\n{data}\n{SIZES}max_seq_len={seq}\n{TRAIN}{MODEL.format(seq=seq)}"


def train_kind(root: Path, kind: str, monkeypatch) -> Path:
    """Train and save the tiny run of `kind` under root; the text kind's data lives in root/data."""
    if kind == "text":
        write_text_task(root / "data")
        monkeypatch.setenv("HARNESS_DATA_PATH", str(root / "data"))
    return train_tiny_run(root, name=f"k{kind}", text=config_text(kind))
