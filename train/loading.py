"""Loading weights: a saved run (checked file by file), one of its checkpoints over training, a
LoRA run merged onto its source, or a Hugging Face model.

`load_lm` / `load_run` read a run folder written by `train/saving.py` (the format lives there);
`load_source` is what `TrainParams.init_from` names (`train/init_from.py`): a saved run's folder
or timestamp, `RUN@N` for the checkpoint after N training samples, or a hub name or local HF
folder (`NAME@REV` for a hub revision). A LoRA run holds only its adapter: loading it loads its
source the same way, checks the source's sha256 and merges the adapter. Loading a run and
loading a source call each other, so they live in one module.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.errors import UserError
from data.data_params import DataParams
from data.saved_datamodule import SavedRunDataModule
from data.tokenizer import Tokenizer
from data.tokenizer_kinds import load_tokenizer
from model.lm import LM
from model.lora import load_adapter, merge
from model.model_params import ModelParams
from train.config import check_run_values
from train.hf_models import get_hf_model
from train.integrity import expect, read_json_dict
from train.saving import ADAPTER, RECORD, WEIGHTS, params_from, find_run_dirs, load_params, load_train_stats, verify_manifest
from train.snapshots import checkpoint_file
from train.train_params import TrainParams

FINAL = "final"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}--\d{2}-\d{2}-\d{2}")


# --- saved runs -----------------------------------------------------------------------------
def _fits(path: Path, what: str, e: BaseException) -> UserError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return UserError(f"{path} {what} ({type(e).__name__}: {first}); copy the run again or retrain it")


def load_lm(run_dir: str | Path, verify: bool = True) -> tuple[Any, dict[str, Any]]:
    """→ lm (eval mode), params of a saved run, without its data. A LoRA run comes back merged.

    Every file is checked against the manifest first, then for content that can't make a model
    (a params.json that fails the config checks, a tokenizer that doesn't fit the weights...):
    each problem is one `UserError` naming the file.
    """
    from safetensors.torch import load_model

    run_dir = Path(run_dir)
    if verify:
        verify_manifest(run_dir)
    params = load_params(run_dir)
    ppath, tpath, wpath = run_dir / "params.json", run_dir / "tokenizer.json", run_dir / WEIGHTS
    try:
        dp = params_from(DataParams, params["data"])
        mp = params_from(ModelParams, params["model"])
        tp = params_from(TrainParams, params["train"])
    except TypeError as e:
        raise _fits(ppath, "does not hold valid parameters", e) from None
    check_run_values(dp, tp, mp, where=str(ppath), for_training=False)
    seed = params.get("seed", 0)
    expect(isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32, ppath, "a valid seed", "copy the run again or retrain it")
    read_json_dict(tpath, "copy the run again or retrain it")
    try:
        tokenizer = load_tokenizer(tpath)
    except Exception as e:  # each tokenizer kind fails in its own way on a malformed dict
        raise _fits(tpath, "is not a tokenizer this harness can load", e) from None
    try:
        lm = LM(mp, tokenizer)
    except (ValueError, TypeError, KeyError, RuntimeError, AssertionError) as e:
        raise _fits(ppath, "does not describe a model this code can build", e) from None
    if (run_dir / ADAPTER).is_file():
        return load_lora_run(run_dir, lm), params
    try:
        load_model(lm, str(wpath), strict=True)
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise _fits(wpath, "does not fit the model that params.json and tokenizer.json describe", e) from None
    return lm.eval(), params


def load_run(run_dir: str | Path, verify: bool = True):
    """→ lm, dataset, train_stats, params (`RunParams`: the dict in params.json); checked as in `load_lm`.

    Reads only the run folder: `dataset` (an `LMDataModule`) rebuilds the task's data the first
    time it is used, so a run loads anywhere, even where its training data is gone.
    """
    run_dir = Path(run_dir)
    lm, params = load_lm(run_dir, verify)
    dp = params_from(DataParams, params["data"])
    tp = params_from(TrainParams, params["train"])
    dataset = SavedRunDataModule(dp, lm.tokenizer, seed=params.get("seed", 0), batch_size=tp.batch_size, run_dir=run_dir)
    train_stats = load_train_stats(run_dir / "train_stats.json")
    return lm, dataset, train_stats, params


# --- sources of weights (TrainParams.init_from) -----------------------------------------
@dataclass
class Source:
    """Weights to start from, with the architecture and tokenizer they belong to."""

    spec: str  # as given in init_from
    kind: str  # "run" or "hf"
    location: str  # resolved: an absolute folder, or a hub name
    checkpoint: str  # "final", a sample count (runs) or a hub revision
    model_params: ModelParams
    tokenizer: Tokenizer
    tokenizer_name: str  # the DataParams.tokenizer value that names it
    state_dict: dict[str, Tensor]
    weights_sha256: str = ""

    def __post_init__(self) -> None:
        self.weights_sha256 = self.weights_sha256 or weights_sha256(self.state_dict)

    def record(self) -> dict[str, Any]:
        return {"init_from": self.spec, "kind": self.kind, "location": self.location, "checkpoint": self.checkpoint,
                "weights_sha256": self.weights_sha256, "tokenizer": self.tokenizer_name}


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) in name order: independent of the file format."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def split_spec(spec: str) -> tuple[str, str]:
    """'WHERE@CHECKPOINT' → (WHERE, CHECKPOINT); no '@' means the final weights."""
    where, sep, checkpoint = spec.rpartition("@")
    if not sep:
        return spec, FINAL
    if not where or not checkpoint:
        raise UserError(f"init_from={spec!r}: write SOURCE or SOURCE@CHECKPOINT (e.g. RUN@final, RUN@1024, NAME@step1000)")
    return where, checkpoint


def load_source(spec: str, save_dir: str | Path | None = None) -> Source:
    """The weights, architecture and tokenizer `spec` names (see the module docstring)."""
    where, checkpoint = split_spec(spec)
    path = Path(where).expanduser()
    if path.is_dir():
        if (path / "params.json").is_file():
            return _run_source(spec, path, checkpoint)
        if (path / "config.json").is_file():
            return _hf_source(spec, str(path.resolve()), checkpoint, local=True)
        raise UserError(f"init_from={spec!r}: {path} is neither a saved run (no params.json) nor a Hugging Face model folder (no config.json)")
    if TIMESTAMP.match(where):
        return _run_source(spec, find_saved_run(where, save_dir), checkpoint)
    return _hf_source(spec, where, checkpoint, local=False)


def find_saved_run(timestamp: str, save_dir: str | Path | None) -> Path:
    """The saved run named `timestamp` (or the only one starting with it) under `save_dir`."""
    root = Path(save_dir) if save_dir is not None else Path("../saved-models")
    runs = find_run_dirs(root) if root.is_dir() else []
    hits = [p for p in runs if p.name == timestamp] or [p for p in runs if p.name.startswith(timestamp)]
    if len(hits) == 1:
        return hits[0].resolve()
    if hits:
        raise UserError(f"init_from: timestamp {timestamp!r} matches {len(hits)} runs under {root}; give the run's folder instead")
    raise UserError(f"init_from: no saved run {timestamp!r} under {root}; give the run's folder, or the --save-dir it was saved in")


def checkpoint_weights(run_dir: Path, checkpoint: str) -> Path | None:
    """The weights file of `checkpoint` in a saved run: None for the final weights (model.safetensors
    or a LoRA adapter, see `load_lm`); N = the checkpoint after N training samples,
    from the run's checkpoints over training (`train/snapshots.py`)."""
    if checkpoint == FINAL:
        return None
    if not checkpoint.isdigit():
        raise UserError(f"init_from: checkpoint {checkpoint!r} of {run_dir} must be 'final' or a number of training samples")
    return checkpoint_file(run_dir, int(checkpoint))


def _run_source(spec: str, run_dir: Path, checkpoint: str) -> Source:
    from safetensors.torch import load_model

    weights = checkpoint_weights(run_dir, checkpoint)
    lm, params = load_lm(run_dir)
    if weights is not None:
        load_model(lm, str(weights), strict=True)
    return Source(spec, "run", str(run_dir.resolve()), checkpoint, lm.model_params, lm.tokenizer,
                  params["data"]["tokenizer"], {k: v.detach().clone() for k, v in lm.state_dict().items()})


def _hf_source(spec: str, name: str, checkpoint: str, local: bool) -> Source:
    revision = None if checkpoint == FINAL else checkpoint
    if local and revision is not None:
        raise UserError(f"init_from={spec!r}: a local folder has no revisions; drop '@{checkpoint}'")
    lm = get_hf_model(name, revision)
    return Source(spec, "hf", name, checkpoint, lm.model_params, lm.tokenizer, name, {k: v.detach().clone() for k, v in lm.state_dict().items()})


# --- a LoRA run -----------------------------------------------------------------------------
def _moved_source(run_dir: Path, location: Path, rec: dict[str, Any]) -> Path:
    """The source run of a LoRA run whose save dir was copied or moved: the same config/task/values/timestamp
    path under the LoRA run's save root, else the one other run with the source's timestamp there."""
    root = run_dir.parents[3] if len(run_dir.parents) > 3 else run_dir.parent  # <root>/<config>/<task>/<values>/<timestamp>
    same_place = root.joinpath(*location.parts[-4:])
    if same_place.is_dir() and same_place.resolve() != run_dir.resolve():
        return same_place
    others = [p for p in (find_run_dirs(root) if root.is_dir() else []) if p.name == location.name and p.resolve() != run_dir.resolve()]
    if len(others) == 1:
        return others[0]
    raise UserError(f"{run_dir} is a LoRA run on {location}, which is gone; put that run back (sha256 {rec['weights_sha256'][:12]}...)")


def load_lora_run(run_dir: Path, lm: LM) -> LM:
    """Fill `lm` (built from the run's params) with the source's weights plus the saved adapter, merged."""
    from safetensors.torch import load_file

    rec = json.loads((run_dir / RECORD).read_text())
    location = rec["location"]
    if rec["kind"] == "run" and not Path(location).is_dir():  # a copied or moved save dir: the same run under its root
        location = str(_moved_source(run_dir, Path(location), rec))
    where = location + ("" if rec["checkpoint"] == FINAL else f"@{rec['checkpoint']}")
    source = load_source(where)
    if source.weights_sha256 != rec["weights_sha256"]:
        raise UserError(f"{run_dir} is a LoRA run on {where}, whose weights changed since (sha256 differs); restore the weights it was trained from")
    lm.load_state_dict(source.state_dict, strict=True)
    load_adapter(lm, load_file(str(run_dir / ADAPTER)), rec["lora"]["alpha"])
    return merge(lm).eval()
