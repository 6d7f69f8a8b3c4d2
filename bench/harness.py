"""Running the harness exactly as `main.py` does (`train.run.run_one`), with a bench callback added.

`run_one` builds its own `lightning.Trainer`; `extra_callbacks` swaps in a subclass for the
duration of the call that appends our callbacks to the ones run_one passes. Everything else
(data module, LMTrainer, loggers, checkpoint callbacks, guards, evaluation) is the real path.
"""
from __future__ import annotations

import argparse
import datetime
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.settings import BenchSettings, ModelSize
import main
from data.data_params import DataParams
from model.model_params import ModelParams
from train.config import RunConfig
from train.run import RunOptions, run_one
from train.train_params import TrainParams


@contextmanager
def extra_callbacks(*callbacks: Any) -> Iterator[None]:
    import lightning as L

    original = L.Trainer

    class BenchTrainer(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, callbacks: list | None = None, **kwargs: Any):
            super().__init__(*args, callbacks=[*(callbacks or []), *extra], **kwargs)

    extra = list(callbacks)
    L.Trainer = BenchTrainer
    try:
        yield
    finally:
        L.Trainer = original


def accelerator(s: BenchSettings) -> str:
    return "gpu" if s.device == "cuda" else "cpu"


def run_config(s: BenchSettings, size: ModelSize, arch: str, task: str, n_train: int, n_val: int, max_steps: int,
               data: dict[str, Any] | None = None, model: dict[str, Any] | None = None, **train: Any):
    """The RunConfig a user would write for this size (same keys as a configs/*.txt file);
    `data`/`model` override DataParams/ModelParams keys."""
    data_params = DataParams(task=task, tokenizer="char", max_seq_len=size.seq_len + 1, n_train_samples=n_train,
                             n_val_samples=n_val, n_test_samples=1, token_cache=False)
    for k, v in (data or {}).items():
        setattr(data_params, k, v)
    tp = dict(epochs=1, max_steps=max_steps, batch_size=size.batch_size, lr=1e-3, warmup_steps=100, min_lr_frac=0.1,
              weight_decay=0.1, beta2=0.99, grad_clip=1.0, n_print_samples=0, precision=s.precision,
              accelerator=accelerator(s), devices=1)
    tp.update(train)
    model_params = ModelParams(layer_architecture=arch, dim=size.dim, n_layers=size.n_layers, n_heads=size.n_heads,
                               max_seq_len=size.seq_len, dropout=0.0, activation="gelu", norm_first=True,
                               pos_encoding="learned", tie_embeddings=True)
    for k, v in (model or {}).items():
        setattr(model_params, k, v)
    return RunConfig(config_name="bench", data=data_params, train=TrainParams(**tp), model=model_params, varying={"bench": arch})


def run_harness(rc: Any, callbacks: list, log_dir: Path | None = None) -> Any:
    """`run_one(rc)` without saving or wandb (CSV logs in a temp dir), plus `callbacks`."""
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        opts = RunOptions(save=False, log_dir=Path(log_dir or tmp), use_wandb=False, seed=0)
        args = argparse.Namespace(config="bench", wandb_proj_name=None)
        namer = main.Namer(rc, args, datetime.datetime.now().strftime("%Y-%m-%d--%H-%M-%S"))
        with extra_callbacks(*callbacks):
            return run_one(rc, opts, namer)
