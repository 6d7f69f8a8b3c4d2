"""Scaling a run out through Lightning: devices, nodes, strategy, precision and torch.compile.

Lightning does all the distribution (strategies, launchers, distributed samplers, process
groups). This module only

* checks a run's TrainParams against the machine before anything is built (`plan_scaling`), so
  an impossible combination is one clear line, not a traceback minutes into a run;
* turns them into Trainer keyword arguments (`ScalePlan.trainer_kwargs`);
* answers "am I rank 0?" before Lightning knows (`env_rank_zero`), so only rank 0 writes files,
  logs and prints;
* holds the few rank-aware helpers the trainer needs (global-mean logging, one stop decision
  for all ranks, a distinct RNG stream per rank, gathering FSDP weights).

Torch-free at import: main.py imports it for every command, `--help` included.
See docs/scaling.md.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from core.errors import UserError
from core.params_base import field_choices
from train.train_params import TrainParams

# Set by the launchers (torchrun, SLURM srun, Lightning's own re-launch of the command line, IBM jsrun).
RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


# --- which process am I -----------------------------------------------------------------------
def env_rank_zero(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0, read from the launcher's environment.

    Valid from the first line of main.py, before Lightning sets up the process group: with
    torchrun and SLURM every rank runs main.py from the start, and Lightning's own launcher
    re-runs the command line for ranks 1.. with LOCAL_RANK set. A plain run has none of these.
    """
    env = os.environ if env is None else env
    return all(env.get(v, "0").strip() in ("", "0") for v in RANK_VARS)


def quiet_other_ranks() -> None:
    """On ranks other than 0: no stdout and no Python warnings (rank 0 prints them once).

    Errors still reach stderr. Called first thing in main.main.
    """
    if env_rank_zero():
        return
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    warnings.simplefilter("ignore")


def launched_externally(env: Mapping[str, str] | None = None) -> bool:
    """Started by torchrun/SLURM/Lightning's launcher as one of several processes (not a plain `python main.py`)."""
    env = os.environ if env is None else env
    return "WORLD_SIZE" in env or "LOCAL_RANK" in env or _slurm_tasks(env) is not None


def _slurm_tasks(env: Mapping[str, str]) -> tuple[int, int] | None:
    """(tasks per node, nodes) when this is an `srun` task Lightning will use; None otherwise.

    Mirrors lightning's SLURMEnvironment.detect: a job named 'bash' or 'interactive' is ignored.
    """
    if "SLURM_NTASKS" not in env or env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    try:
        per_node = int(str(env.get("SLURM_NTASKS_PER_NODE", env["SLURM_NTASKS"])).split("(")[0])
        nodes = int(env.get("SLURM_NNODES", "1"))
    except ValueError:
        return None
    return per_node, nodes


# --- what the machine has -----------------------------------------------------------------------
@dataclass
class Hardware:
    """What `plan_scaling` checks a run against. Tests pass made-up machines."""

    n_gpus: int = 0
    gpu_name: str = ""
    gpu_bf16: bool = False  # native bfloat16 (compute capability 8.0+)
    cpu_bf16: bool = False  # native bfloat16 on the CPU (AVX512-BF16 / AMX / ARM BF16)
    cpu_count: int = 1
    cxx: str | None = None  # C++ compiler: torch.compile on CPU needs one
    triton: bool = False  # torch.compile on GPU needs it


def detect_hardware() -> Hardware:
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        cpu_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        cpu_bf16 = "BF16" in str(torch.backends.cpu.get_cpu_capability()).upper()
    try:
        cpu_count = len(os.sched_getaffinity(0))
    except AttributeError:
        cpu_count = os.cpu_count() or 1
    return Hardware(
        n_gpus=n,
        gpu_name=torch.cuda.get_device_name(0) if n else "",
        gpu_bf16=bool(n) and torch.cuda.is_bf16_supported(including_emulation=False),
        cpu_bf16=cpu_bf16,
        cpu_count=cpu_count,
        cxx=shutil.which(os.environ.get("CXX") or "g++") or shutil.which("clang++") or shutil.which("c++"),
        triton=importlib.util.find_spec("triton") is not None,
    )


# --- the plan -----------------------------------------------------------------------------------
@dataclass
class ScalePlan:
    """A run's resolved hardware settings; `trainer_kwargs()` hands them to `lightning.Trainer`."""

    accelerator: str  # "cpu" | "gpu"
    devices: int | list[int]  # processes per node: a count, or GPU indices (--gpu-id)
    num_nodes: int
    strategy: str
    precision: str
    compile: bool

    @property
    def devices_per_node(self) -> int:
        return len(self.devices) if isinstance(self.devices, list) else self.devices

    @property
    def world_size(self) -> int:
        return self.devices_per_node * self.num_nodes

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes, "strategy": self.strategy, "precision": self.precision}

    def describe(self, batch_size: int, accumulate: int) -> str:
        where = f"{self.devices_per_node} {self.accelerator.upper()} process(es)" + (f" × {self.num_nodes} nodes" if self.num_nodes > 1 else "")
        strategy = "" if self.world_size == 1 and self.strategy == "auto" else f", strategy={self.strategy}"
        return (
            f"{where}{strategy}, precision={self.precision}{', compiled' if self.compile else ''} | "
            f"global batch = {batch_size} per device × {self.world_size} × {accumulate} accumulated = {batch_size * self.world_size * accumulate}"
        )


def plan_scaling(
    tp: Any,
    gpu_ids: Sequence[int] | None = None,
    hw: Hardware | None = None,
    env: Mapping[str, str] | None = None,
    argv0: str | None = None,
) -> ScalePlan:
    """Resolve and check `tp`'s accelerator/devices/num_nodes/strategy/precision/compile.

    Raises UserError (one line naming the fix) for anything that can't run here: first the
    values themselves, then how the processes are launched, then `HARDWARE_RULES`.
    """
    env = os.environ if env is None else env
    hw = detect_hardware() if hw is None else hw
    argv0 = sys.argv[0] if argv0 is None else argv0
    acc = _accelerator(tp, gpu_ids, hw)
    devices = list(gpu_ids) if gpu_ids else _devices(tp.devices, acc, hw)
    nn = tp.num_nodes
    if not _is_int(nn) or nn < 1:
        raise UserError(f"num_nodes={nn!r} must be a positive count of machines")
    plan = ScalePlan(acc, devices, nn, _choice(tp, "strategy"), _choice(tp, "precision"), bool(getattr(tp, "compile", False)))
    _check_launch(plan, env, argv0)
    for applies, why in HARDWARE_RULES:
        if applies(plan, hw):
            raise UserError(why(plan, hw) if callable(why) else why)
    return plan


def _choice(tp: Any, name: str, lower: bool = False) -> str:
    """`tp.name`, checked against the TrainParams field's choices (the one place they are listed)."""
    value, allowed = str(getattr(tp, name)), field_choices(TrainParams)[name]
    value = value.lower() if lower else value
    if value not in allowed:
        raise UserError(f"{name}={getattr(tp, name)!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def _accelerator(tp: Any, gpu_ids: Sequence[int] | None, hw: Hardware) -> str:
    acc = _choice(tp, "accelerator", lower=True)
    acc = "gpu" if acc == "cuda" else acc
    if gpu_ids:
        if acc == "cpu":
            raise UserError(f"--gpu-id={','.join(map(str, gpu_ids))} picks GPUs but the config sets accelerator='cpu'; drop one of the two")
        if _is_int(tp.devices) and tp.devices not in (-1, len(gpu_ids)):
            raise UserError(f"--gpu-id lists {len(gpu_ids)} GPU(s) but the config sets devices={tp.devices}; drop devices (--gpu-id sets them) or make them agree")
        acc = "gpu"
    elif acc == "auto":
        acc = "gpu" if hw.n_gpus else "cpu"
    if acc == "gpu" and hw.n_gpus == 0:
        raise UserError("accelerator='gpu' but torch sees no CUDA GPU here (torch.cuda.is_available() is False); use accelerator='cpu' or 'auto'")
    return acc


def _devices(d: Any, acc: str, hw: Hardware) -> int:
    """Processes per node from `devices` ('auto', -1 = all GPUs, or a count), checked against the machine."""
    if d == "auto":
        devices = hw.n_gpus if acc == "gpu" else 1
    elif d == -1 and acc == "gpu":
        devices = hw.n_gpus
    elif _is_int(d) and d >= 1:
        devices = d
    else:
        raise UserError(f"devices={d!r} must be a positive count, 'auto'{' or -1 (all GPUs)' if acc == 'gpu' else ''}")
    have, what = (hw.n_gpus, "GPU(s)") if acc == "gpu" else (hw.cpu_count, "CPU core(s)")
    if devices > have:
        raise UserError(f"devices={d} but this machine has {have} {what}; lower devices (it counts processes per node)")
    return devices


def _check_launch(plan: ScalePlan, env: Mapping[str, str], argv0: str) -> None:
    """The process count agrees with whoever started us (torchrun, SLURM, Lightning's own launcher)."""
    n_dev, nn, world = plan.devices_per_node, plan.num_nodes, plan.world_size
    if "WORLD_SIZE" in env and env["WORLD_SIZE"].strip().isdigit() and int(env["WORLD_SIZE"]) != world:
        raise UserError(
            f"this process is one of WORLD_SIZE={env['WORLD_SIZE']} (torchrun), but devices × num_nodes = {n_dev} × {nn} = {world}; "
            "set devices to --nproc-per-node and num_nodes to --nnodes"
        )
    slurm = _slurm_tasks(env)
    if slurm is not None and "WORLD_SIZE" not in env and slurm != (n_dev, nn):
        raise UserError(
            f"SLURM started {slurm[0]} task(s) per node on {slurm[1]} node(s), but the run asks for devices={n_dev}, num_nodes={nn}; "
            "set devices = --ntasks-per-node and num_nodes = --nodes (or change the sbatch script)"
        )
    if world > 1 and not launched_externally(env) and Path(argv0).name != "main.py":
        raise UserError(
            f"devices × num_nodes = {world} processes: Lightning starts them by re-running the command line, so start this run "
            "with `python main.py ...` or torchrun, not from Python or a notebook (or set devices=1)"
        )
    if nn > 1 and not launched_externally(env):
        # Lightning's launcher only starts the processes of this node; the others must be started too.
        warnings.warn(f"num_nodes={nn}: start the same command on every node (torchrun / srun / NODE_RANK), see docs/scaling.md", stacklevel=3)


# (the plan can't run on this hardware, the one-line fix): checked in order after the values resolve
HARDWARE_RULES: tuple[tuple[Callable[[ScalePlan, Hardware], bool], str | Callable[[ScalePlan, Hardware], str]], ...] = (
    (lambda p, hw: p.strategy == "fsdp" and p.accelerator != "gpu",
     "strategy='fsdp' needs CUDA GPUs (Lightning's FSDP does not run on CPU); on CPU use strategy='ddp' or 'auto'"),
    (lambda p, hw: p.precision == "16-mixed" and p.accelerator == "cpu",
     "precision='16-mixed' (float16 with a gradient scaler) needs a GPU; on CPU use 'bf16-mixed' or '32-true'"),
    (lambda p, hw: p.precision == "bf16-mixed" and p.accelerator == "cpu" and not hw.cpu_bf16,
     "precision='bf16-mixed' but this CPU has no native bfloat16 (no AVX512-BF16/AMX); use precision='32-true'"),
    (lambda p, hw: p.precision == "bf16-mixed" and p.accelerator == "gpu" and not hw.gpu_bf16,
     lambda p, hw: f"precision='bf16-mixed' but {hw.gpu_name or 'this GPU'} has no native bfloat16 (needs an Ampere or newer GPU); use '16-mixed'"),
    (lambda p, hw: p.compile and p.accelerator == "cpu" and not hw.cxx,
     "compile=True on CPU needs a C++ compiler (g++ or clang++) for torch.compile; install one or set compile=False"),
    (lambda p, hw: p.compile and p.accelerator == "gpu" and not hw.triton,
     "compile=True on GPU needs triton (pip install triton); or set compile=False"),
)


def check_runs(runs: Sequence[Any], gpu_ids: Sequence[int] | None) -> None:
    """Check every run of a sweep before the first one trains (a bad run 5 fails now, not in an hour)."""
    hw = detect_hardware()
    for rc in runs:
        plan_scaling(rc.train, gpu_ids, hw)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- inside training (all ranks call these in lockstep) -------------------------------------------
def global_mean(trainer: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The mean of each scalar over all ranks, for logging: the loss of the global batch.

    One all-reduce, no host sync; the tensors passed in are not modified. With one process: `values`.
    """
    if trainer is None or trainer.world_size <= 1 or not values:
        return values
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    names = list(values)
    stacked = torch.stack([values[n].detach().float() for n in names])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return dict(zip(names, (stacked / trainer.world_size).unbind()))


def any_rank(trainer: Any, flag: bool) -> bool:
    """True on every rank when `flag` is true on any: ranks must stop together or the others hang."""
    if trainer is None or trainer.world_size <= 1:
        return bool(flag)
    return bool(trainer.strategy.reduce_boolean_decision(bool(flag), all=False))


def is_fsdp(trainer: Any) -> bool:
    return "FSDP" in type(getattr(trainer, "strategy", None)).__name__


def rank_seed(seed: int, rank: int, step: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def rank_seed_callback(seed: int) -> Any:
    """A callback giving each rank its own torch RNG stream (dropout masks, random positions).

    All ranks start from the run seed so they build the same data and the same initial model;
    with several processes, rank r then reseeds with (seed, r, step) when training starts, so
    their dropout differs but reruns are identical. One process: untouched (exact resumes).
    """
    import torch
    from lightning.pytorch.callbacks import Callback

    class RankSeed(Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.world_size > 1:
                torch.manual_seed(rank_seed(seed, trainer.global_rank, trainer.global_step))

    return RankSeed()


def training_losses(lm: Any, tp: Any) -> Any:
    """`lm.get_losses`, through `torch.compile` when `tp.compile`.

    Only the training loss is compiled: the LM object stays a plain module (same state_dict,
    eager sampling and hooks), and validation runs eagerly.
    """
    if not getattr(tp, "compile", False):
        return lm.get_losses
    import torch

    return torch.compile(lm.get_losses)


def final_model(trainer: Any, module: Any) -> Any:
    """The trained LM on the CPU on rank 0, None on the other ranks.

    Every rank must call it: under FSDP the weights are sharded and are gathered here.
    """
    if is_fsdp(trainer):
        state = trainer.strategy.lightning_module_state_dict()  # collective; full weights on rank 0
        if not trainer.is_global_zero:
            return None
        lm = type(module.model)(module.model.model_params, module.model.tokenizer)
        lm.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
        return lm.cpu()
    return module.model.cpu() if trainer.is_global_zero else None


def plain_param_name(name: str) -> str:
    """A parameter's name without the wrappers FSDP / activation checkpointing insert."""
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")
