"""Range checks on parameter values, so absurd configs stop with one line before anything trains.

Torch-free (runs on `--dry-run` and before `import torch`). Two levels:

* `field_problem(section, key, value)` — one value on its own, checked while parsing (so the error
  names the config line): positive sizes, probabilities in [0, 1], finite floats, seeds that fit
  numpy. The range is the field's own (`param(..., min=, max=)` in the dataclass); fields
  without one get a generic bound (ints 0..2**31-1, seeds 0..2**32-1, floats finite with
  |x| <= 1e9, names like `p_*`, `*_frac`, `*_p` in [0, 1]).
* `run_problem(data, train, model)` — relations between values (n_heads divides dim, the model's
  positional table covers the data's sequences, min_len <= max_len) and a rough memory estimate:
  a run needing more than `MAX_TRAIN_BYTES` (1 TiB) is surely a typo such as dim=10**6, and a run
  needing more than this machine's physical memory (`machine_memory_bytes`) would only fail in
  the allocator (or swap for hours), so it stops here with the estimate.

Give `param(...)` a `min=`/`max=` when you add a numeric parameter with tighter limits.
"""
from __future__ import annotations

import math
import os
from typing import Any

from data.data_params import DataParams
from model.model_params import ModelParams
from core.params_base import FLOAT_MAX, INT_MAX, SEED_MAX, Range, field_range
from train.train_params import TrainParams

SECTIONS: dict[str, type] = {"DataParams": DataParams, "TrainParams": TrainParams, "ModelParams": ModelParams}
MAX_TRAIN_BYTES = 2**40  # 1 TiB: no single machine trains this; the config surely has a typo
# val_check_interval is a fraction of an epoch (float) or a number of batches (int)
VAL_CHECK_FLOAT = Range(0, 1, open_lo=True)
VAL_CHECK_INT = Range(1, INT_MAX)

_PROBABILITY_SUFFIXES = ("_frac", "_fraction", "_prob", "_p")


def _default_range(key: str, is_int: bool) -> Range:
    if is_int:
        return Range(0, SEED_MAX) if "seed" in key else Range(0, INT_MAX)
    if key.startswith("p_") or key.endswith(_PROBABILITY_SUFFIXES):
        return Range(0, 1)
    return Range(-FLOAT_MAX, FLOAT_MAX)


def field_problem(section: str, key: str, value: Any) -> str | None:
    """Why `section.key = value` is out of range, or None. Only numbers are checked here."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    is_int = isinstance(value, int)
    kind = "an int" if is_int else "a number"
    if not is_int and not math.isfinite(value):
        return f"{key}={value!r} is not a finite number"
    if key == "val_check_interval" and section == "TrainParams":
        rng = VAL_CHECK_INT if is_int else VAL_CHECK_FLOAT
        kind = "a whole number of batches" if is_int else "a fraction of an epoch"
    else:
        own, generic = field_range(SECTIONS[section], key), _default_range(key, is_int)
        rng = generic if own is None else own.within(generic)
    if rng.contains(value):
        return None
    shown = value if abs(value) < 1e15 else f"{value:.3g}"
    return f"{key}={shown} is out of range; expected {rng.describe(kind)}"


def _vocab_guess(data: Any) -> int:
    if getattr(data, "tokenizer", "char") == "char":
        return 1024
    return max(int(getattr(data, "bpe_vocab_size", 0) or 0), 100_000)


def estimate_train_bytes(data: Any, train: Any, model: Any) -> tuple[int, int]:
    """(rough bytes to train one step in fp32 with AdamW, parameter count). Errs on the high side."""
    d, L = model.dim, model.n_layers
    ff = getattr(model, "ff_dim", None) or model.dim_ff_factor * model.dim
    V, T, B = _vocab_guess(data), data.max_seq_len, train.batch_size
    n_params = V * d * (1 if model.tie_embeddings else 2) + model.max_seq_len * d + L * (4 * d * d + 2 * d * ff + 9 * d + ff)
    weights = 16 * n_params  # weights, gradients, AdamW's two moments
    acts = 4 * B * T * L * (8 * d + 2 * ff) + 8 * B * model.n_heads * T * T * L + 8 * B * T * V
    samples = getattr(data, "n_train_samples", 0) + getattr(data, "n_val_samples", 0) + getattr(data, "n_test_samples", 0)
    data_bytes = 8 * samples * T
    return weights + acts + data_bytes, n_params


CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")  # v2, v1


def machine_memory_bytes() -> int | None:
    """Memory this process may use: physical memory (MemTotal), or a container's cgroup limit when lower.

    None where the OS won't say (the check is then skipped).
    """
    try:
        total: int | None = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = None
    for path in CGROUP_LIMIT_FILES:
        try:
            limit = int(open(path).read().strip())  # "max" (no limit) fails here
        except (OSError, ValueError):
            continue
        total = limit if total is None else min(total, limit)
    return total


def _size(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def fine_tune_problem(train: Any) -> str | None:
    """Why the freeze / LoRA settings can't train (docs/finetune.md), or None."""
    if train.lora_rank and not train.init_from:
        return "TrainParams.lora_rank needs init_from (LoRA adapts existing weights); set init_from or lora_rank=0"
    if (train.lora_rank or train.freeze) and train.strategy == "fsdp":
        return "TrainParams.lora_rank / freeze do not run under strategy='fsdp' yet (sharded parameters lose their names); use strategy='ddp'"
    if train.lora_rank and train.freeze:
        return "TrainParams.freeze has no effect with lora_rank > 0 (LoRA trains only its adapters); drop one of them"
    return None


def run_problem(data: Any, train: Any, model: Any, check_memory: bool = True) -> str | None:
    """Why this combination of parameters can't train, or None.

    `check_memory=False` when the parameters only describe a saved model to load (no training).
    """
    return shape_problem(data, train, model) or (memory_problem(data, train, model) if check_memory else None)


def shape_problem(data: Any, train: Any, model: Any) -> str | None:
    """Sizes and settings that contradict each other."""
    if model.dim % model.n_heads:
        return f"ModelParams.n_heads={model.n_heads} must divide dim={model.dim}"
    n_kv = getattr(model, "n_kv_heads", None)
    if n_kv is not None and (n_kv < 1 or model.n_heads % n_kv):
        return f"ModelParams.n_kv_heads={n_kv} must divide n_heads={model.n_heads} (each key/value head serves a group of query heads)"
    if model.max_seq_len < data.max_seq_len:
        return f"ModelParams.max_seq_len={model.max_seq_len} is shorter than DataParams.max_seq_len={data.max_seq_len}; raise the model's"
    if fine_tune_problem(train):
        return fine_tune_problem(train)
    if data.min_len > data.max_len:
        return f"DataParams.min_len={data.min_len} is larger than max_len={data.max_len}"
    snapshots = train.snapshot_every_n_steps or train.snapshot_every_n_samples or train.snapshot_log_spaced
    if snapshots and train.strategy == "fsdp":
        return "checkpoints over training (TrainParams.snapshot_*) are not supported with strategy='fsdp' yet (sharded weights); use ddp or turn them off"
    if not getattr(data, "alphabet", "x"):
        return 'DataParams.alphabet="" is empty; synthetic inputs are drawn from it: give some symbols, e.g. alphabet="abcd"'
    if train.early_stop_stat is not None and not train.early_stop_stat.startswith("stat/val_"):
        return f"TrainParams.early_stop_stat={train.early_stop_stat!r} is not a validation stat; use one logged at validation, e.g. 'stat/val_loss:main'"
    return None


def memory_problem(data: Any, train: Any, model: Any) -> str | None:
    """The run's estimated training memory against a hard cap and this machine's memory."""
    need, n_params = estimate_train_bytes(data, train, model)
    if need > MAX_TRAIN_BYTES:
        return (
            f"this run would need about {need / 2**30:,.0f} GiB to train ({n_params:,} parameters, batch_size={train.batch_size}, "
            f"max_seq_len={data.max_seq_len}); the limit is {MAX_TRAIN_BYTES // 2**30} GiB — check dim, n_layers, batch_size and the sample counts"
        )
    have = machine_memory_bytes()
    if have is not None and need > have:
        return (
            f"this run would need about {_size(need)} to train (estimate: {n_params:,} parameters x 16 bytes for weights, gradients and "
            f"AdamW state, plus activations for batch_size={train.batch_size} x max_seq_len={data.max_seq_len}, plus the data), but this "
            f"machine has {_size(have)} of memory; lower dim, n_layers, batch_size or max_seq_len"
        )
    return None
