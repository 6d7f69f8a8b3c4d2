"""Start a run from existing weights: `TrainParams.init_from` (fine-tuning), with freezing and LoRA.

`init_from` names the source:

- a saved run: its folder, or its timestamp under the save dir; `RUN@final` (the default) takes
  its final weights, `RUN@N` the checkpoint after N training samples (`checkpoint_weights`);
- a Hugging Face model: `"gpt2"` (or any hub name) or a folder written by `save_pretrained`;
  `NAME@REV` loads hub revision REV (e.g. Pythia's `step1000`).

The run trains on its own task with the source's tokenizer and the source's architecture. A
config line that contradicts the source (a different `dim`, `n_layers`, `tokenizer`, ...) stops
before training with one line naming the key; `FREE_MODEL_KEYS` may differ (dropout). The
saved run holds `init_from.json`: the source as given and as resolved, the checkpoint, the sha256 of the weights it started from (`weights_sha256`, over the tensors, so
any file format hashes alike), the val loss of those weights on this task before training, and
what was frozen or LoRA-adapted. A LoRA run saves only `adapter.safetensors`; loading it
(`train.saving.load_lm`, hence `model_explorer`) rebuilds the source, checks its sha256 and
merges the adapter into plain weights.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from data.tokenizer import Tokenizer
from model.lm import LM
from model.model_params import ModelParams
from train.config import RunConfig
from core.errors import UserError
from train.freeze import aliases, freeze, select
from train.hf_models import get_hf_model

RECORD = "init_from.json"
FINAL = "final"
FREE_MODEL_KEYS = ("dropout",)  # may differ from the source: same weights, same computation
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}--\d{2}-\d{2}-\d{2}")


# --- sources ------------------------------------------------------------------------------
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
    from train.report import find_run_dirs

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
    or a LoRA adapter, see `train.saving.load_lm`); N = the checkpoint after N training samples,
    from the run's checkpoints over training (`train/snapshots.py`, issue 20) when this build has them."""
    if checkpoint == FINAL:
        return None
    if not checkpoint.isdigit():
        raise UserError(f"init_from: checkpoint {checkpoint!r} of {run_dir} must be 'final' or a number of training samples")
    try:
        from train.snapshots import checkpoint_file
    except ImportError:
        raise UserError(f"init_from: {run_dir} has no checkpoint after {checkpoint} samples; this build saves only the final weights (use @final)") from None
    return checkpoint_file(run_dir, int(checkpoint))


def _run_source(spec: str, run_dir: Path, checkpoint: str) -> Source:
    from safetensors.torch import load_model

    from train.saving import load_lm

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


# --- the run's config against its source ----------------------------------------------------
def explicit_keys(rc: RunConfig) -> dict[str, set[str]]:
    """Keys the config sets: the lines of its file, plus any value that differs from the default."""
    out = {"ModelParams": {f.name for f in dataclasses.fields(ModelParams) if getattr(rc.model, f.name) != f.default},
           "DataParams": {"tokenizer"} if rc.data.tokenizer != "char" else set()}
    if rc.source and Path(rc.source).is_file():
        from train.config import parse_config_file

        try:
            parsed = parse_config_file(Path(rc.source))
        except UserError:
            parsed = {}
        out["ModelParams"] |= set(parsed.get("ModelParams", {}))
        out["DataParams"] |= set(parsed.get("DataParams", {})) & {"tokenizer"}
    return out


def _same_tokenizer(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return a == b or (pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve())


def resolve_config(rc: RunConfig, source: Source) -> RunConfig:
    """`rc` with the source's architecture and tokenizer; a contradicting key is a UserError naming it."""
    from train.validate import run_problem

    spec = source.spec
    explicit = explicit_keys(rc)
    for f in dataclasses.fields(ModelParams):
        mine, theirs = getattr(rc.model, f.name), getattr(source.model_params, f.name)
        if f.name in explicit["ModelParams"] and f.name not in FREE_MODEL_KEYS and mine != theirs:
            raise UserError(f"init_from={spec!r}: ModelParams.{f.name}={mine!r} contradicts the source's {f.name}={theirs!r}; drop the line to use the source's value")
    if "tokenizer" in explicit["DataParams"] and not _same_tokenizer(rc.data.tokenizer, source.tokenizer_name):
        raise UserError(f"init_from={spec!r}: DataParams.tokenizer={rc.data.tokenizer!r} contradicts the source's tokenizer {source.tokenizer_name!r}; drop the line (a run started from weights uses their tokenizer)")
    kept = {k: getattr(rc.model, k) for k in FREE_MODEL_KEYS if k in explicit["ModelParams"]}
    out = dataclasses.replace(rc, model=dataclasses.replace(source.model_params, **kept), data=dataclasses.replace(rc.data, tokenizer=source.tokenizer_name))
    if out.data.max_seq_len > out.model.max_seq_len:
        raise UserError(f"init_from={spec!r}: DataParams.max_seq_len={out.data.max_seq_len} is longer than the source model reads "
                        f"({out.model.max_seq_len} tokens); set DataParams.max_seq_len <= {out.model.max_seq_len}")
    problem = run_problem(out.data, out.train, out.model)
    if problem:
        raise UserError(f"init_from={spec!r}: {problem}")
    return out


# --- building the model ----------------------------------------------------------------------
def lora_target_names(lm: LM, patterns: list[str]) -> list[str]:
    """The block weight matrices `patterns` choose (TrainParams.lora_targets)."""
    weights = [n for n, p in lm.named_parameters() if p.dim() == 2]
    names = select(weights, patterns, "TrainParams.lora_targets")
    outside = [n for n in names if not aliases(n)[-1].startswith("blocks.")]
    if outside:
        raise UserError(f"TrainParams.lora_targets: LoRA adapts weights inside the blocks (blocks.*), not {outside[0]}; narrow the pattern")
    return names


def build_lm(rc: RunConfig, tokenizer: Tokenizer, source: Source | None = None) -> LM:
    """The run's LM: the source's weights if any, then `freeze` and LoRA (TrainParams)."""
    from model.lora import add_lora

    tp = rc.train
    lm = LM(rc.model, tokenizer)
    if source is not None:
        lm.load_state_dict(source.state_dict, strict=True)
    if tp.freeze:
        freeze(lm, tp.freeze)
    if tp.lora_rank:
        add_lora(lm, lora_target_names(lm, tp.lora_targets), tp.lora_rank, tp.lora_alpha)
    return lm


@dataclass
class Start:
    """A run that starts from `source`: its resolved config and what it records and saves."""

    rc: RunConfig
    source: Source
    val_loss_before: float | None = None
    adapter: dict[str, Tensor] | None = None  # set by `finish` on a LoRA run
    lora_names: list[str] = field(default_factory=list)

    def datamodule(self, cls: type, **kwargs: Any) -> Any:
        """The task's data encoded with the source's tokenizer (a char vocabulary may lack characters)."""
        try:
            dm = cls(self.rc.data, tokenizer=self.source.tokenizer, **kwargs)
        except ValueError as e:
            if "tokenizer" not in str(e):
                raise
            raise UserError(f"init_from={self.source.spec!r}: the source's tokenizer can't encode task {self.rc.data.task!r}: {e}; "
                            "fine-tune on text it covers, or start from a source with a subword tokenizer") from None
        if dm.task_data.tokenizer is not None:
            raise UserError(f"init_from={self.source.spec!r}: task {self.rc.data.task!r} is not text (it brings its own inputs); fine-tune on a text task")
        return dm

    def lm(self) -> LM:
        lm = build_lm(self.rc, self.source.tokenizer, self.source)
        if self.rc.train.lora_rank:
            from model.lora import adapted

            self.lora_names = [n for n, _ in adapted(lm)]
        return lm

    def measure_before(self, module: Any, val_batches: Any) -> float:
        """Val loss of the source weights on this task, logged at step 0 (so curves start there)."""
        from train.evaluate import evaluate

        self.val_loss_before = evaluate(module.model, val_batches)["loss:main"]
        module.log_stat("stat/val_loss:main", self.val_loss_before)
        module.flush_stats()
        print(f"init_from {self.source.spec}: val loss {self.val_loss_before:.4f} before training", flush=True)
        return self.val_loss_before

    def finish(self, lm: LM) -> LM:
        """After training: a LoRA run keeps its adapter (to save) and merges it (to evaluate and use)."""
        from model.lora import adapter_state_dict, merge

        if self.rc.train.lora_rank:
            self.adapter = adapter_state_dict(lm)
            merge(lm)
        return lm

    def record(self) -> dict[str, Any]:
        tp = self.rc.train
        lora = {"rank": tp.lora_rank, "alpha": tp.lora_alpha, "targets": self.lora_names} if tp.lora_rank else None
        return {**self.source.record(), "val_loss_before": self.val_loss_before, "freeze": list(tp.freeze), "lora": lora}


def prepare(rc: RunConfig, save_dir: str | Path | None = None) -> Start | None:
    """None for a run from random weights; else the loaded source and the config resolved against it."""
    if not rc.train.init_from:
        return None
    source = load_source(rc.train.init_from, save_dir)
    return Start(resolve_config(rc, source), source)


# --- loading a LoRA run ------------------------------------------------------------------------
def load_lora_run(run_dir: Path, lm: LM) -> LM:
    """Fill `lm` (built from the run's params) with the source's weights plus the saved adapter, merged."""
    from safetensors.torch import load_file

    from model.lora import load_adapter, merge
    from train.saving import ADAPTER

    rec = json.loads((run_dir / RECORD).read_text())
    location = rec["location"]
    if rec["kind"] == "run" and not Path(location).is_dir():  # a copied or moved save dir: the same run by name under its root
        try:
            location = str(find_saved_run(Path(location).name, run_dir.parents[3] if len(run_dir.parents) > 3 else run_dir.parent))
        except UserError:
            raise UserError(f"{run_dir} is a LoRA run on {rec['location']}, which is gone; put that run back (sha256 {rec['weights_sha256'][:12]}...)") from None
    where = location + ("" if rec["checkpoint"] == FINAL else f"@{rec['checkpoint']}")
    source = load_source(where)
    if source.weights_sha256 != rec["weights_sha256"]:
        raise UserError(f"{run_dir} is a LoRA run on {where}, whose weights changed since (sha256 differs); restore the weights it was trained from")
    lm.load_state_dict(source.state_dict, strict=True)
    load_adapter(lm, load_file(str(run_dir / ADAPTER)), rec["lora"]["alpha"])
    return merge(lm).eval()
