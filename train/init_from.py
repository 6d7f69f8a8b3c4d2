"""Start a run from existing weights: `TrainParams.init_from` (fine-tuning), with freezing and LoRA.

`init_from` names the source:

- a saved run: its folder, or its timestamp under the save dir; `RUN@final` (the default) takes
  its final weights, `RUN@N` the checkpoint after N training samples;
- a Hugging Face model: `"gpt2"` (or any hub name) or a folder written by `save_pretrained`;
  `NAME@REV` loads hub revision REV (e.g. Pythia's `step1000`).

`train/loading.py` loads it (`load_source`); this module fits the run to it.

The run trains on its own task with the source's tokenizer and the source's architecture. A
config line that contradicts the source (a different `dim`, `n_layers`, `tokenizer`, ...) stops
before training with one line naming the key; `FREE_MODEL_KEYS` may differ (dropout). The
saved run holds `init_from.json`: the source as given and as resolved, the checkpoint, the sha256 of the weights it started from (`weights_sha256`, over the tensors, so
any file format hashes alike), the val loss of those weights on this task before training, and
what was frozen or LoRA-adapted. A LoRA run saves only `adapter.safetensors`; loading it
(`train.loading.load_lm`, hence `model_explorer`) rebuilds the source, checks its sha256 and
merges the adapter into plain weights.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from core.errors import UserError
from core.moved import moved
from data.tokenizer import Tokenizer
from model.lm import LM
from model.lora import adapted, adapter_state_dict, add_lora, merge
from model.model_params import ModelParams
from train.config import RunConfig, parse_config_file
from train.evaluate import evaluate
from train.freeze import aliases, freeze, select
from train.loading import Source, load_source
from train.validate import run_problem

FREE_MODEL_KEYS = ("dropout",)  # may differ from the source: same weights, same computation


# --- the run's config against its source ----------------------------------------------------
def explicit_keys(rc: RunConfig) -> dict[str, set[str]]:
    """Keys the config sets: the lines of its file, plus any value that differs from the default."""
    out = {"ModelParams": {f.name for f in dataclasses.fields(ModelParams) if getattr(rc.model, f.name) != f.default},
           "DataParams": {"tokenizer"} if rc.data.tokenizer != "char" else set()}
    if rc.source and Path(rc.source).is_file():
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
            self.lora_names = [n for n, _ in adapted(lm)]
        return lm

    def measure_before(self, module: Any, val_batches: Any) -> float:
        """Val loss of the source weights on this task, logged at step 0 (so curves start there)."""
        self.val_loss_before = evaluate(module.model, val_batches)["loss:main"]
        module.log_stat("stat/val_loss:main", self.val_loss_before)
        module.flush_stats()
        print(f"init_from {self.source.spec}: val loss {self.val_loss_before:.4f} before training", flush=True)
        return self.val_loss_before

    def finish(self, lm: LM) -> LM:
        """After training: a LoRA run keeps its adapter (to save) and merges it (to evaluate and use)."""
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


__getattr__ = moved(__name__, {n: "train.loading" for n in ("FINAL", "TIMESTAMP", "checkpoint_weights", "find_saved_run", "load_lora_run", "split_spec", "weights_sha256")})  # old homes of names that moved (no import cycle), answered in one line
