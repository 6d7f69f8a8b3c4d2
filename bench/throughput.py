"""Training throughput (tokens/s) of the contenders at one size, batch, sequence length and dtype.

(a) harness, default layer — `run_one` (Lightning + LMTrainer) with `ModelParams`' default
    `layer_architecture`, timed by a callback: what a user gets without choosing;
(b) harness, the other of torch's own layer / the editable custom layer — the same run;
(c) bare loop — the same `LM` module (default layer), data module and optimizer settings, no Lightning;
(d) reference — nanoGPT-style GPT in plain PyTorch (bench/reference_gpt.py);
(l) harness, the Llama-style block — only when a block named `LLAMA_BLOCK` is registered.

Each contender trains `warmup_steps` untimed steps, then `n_windows` windows of `window_steps`
optimizer steps; a window's rate is batch × seq_len × window_steps / its wall time (CUDA is
synchronised only at window edges). Contenders run interleaved for `rounds` rounds so that
changing machine load hits them alike; the figure is the median over all windows. With
`big_batch_factor`, (a), (c) and (d) run again at that many times the batch, interleaved the same way.
"""
from __future__ import annotations

import contextlib
import gc
import statistics
import time
import types
from dataclasses import fields, replace
from typing import Any, Callable

import lightning as L
import torch

from bench import data as bench_data
from bench.harness import run_config, run_harness
from bench.settings import BenchSettings, ModelSize
from bench.reference_gpt import GPT, GPTConfig, StreamBatches, configure_optimizer, train_step
from core.params_base import field_choices
from data.dataloader import LMDataModule
from model.lm import LM
from model.model_params import ModelParams
from train.train_params import TrainParams
from train.trainer import LMTrainer

TORCH_LAYER, CUSTOM_LAYER = "torch-transformer", "custom-transformer"
# Issue 15's Llama-style block (RMSNorm, SwiGLU, rotary, no biases). HOOK: its rate is reported
# beside the others as soon as a block of this name is registered (`layer_architecture` choices);
# `LLAMA_MODEL` holds the ModelParams it trains with at the bench's size.
LLAMA_BLOCK = "llama"
LLAMA_MODEL = {"pos_encoding": "rotary"}
SNAPSHOTS = {"snapshot_log_spaced": True, "snapshot_every_n_steps": 10}  # denser than most runs need: an upper bound on their cost
COMPILED = {
    "a+compile": "harness, default layer, TrainParams compile=True",
    "c+compile": "bare loop, torch.compile(lm.get_losses)",
    "d+compile": "reference GPT, torch.compile",
}


def default_layer() -> str:
    """The layer a run gets when its config names none."""
    return ModelParams().layer_architecture


def layer_choices() -> Any:
    return field_choices(ModelParams).get("layer_architecture") or ()


def layers() -> dict[str, str]:
    """(a) the default layer; (b) torch's own layer, or the custom layer while torch's is the default."""
    a = default_layer()
    return {"a": a, "b": TORCH_LAYER if a != TORCH_LAYER else CUSTOM_LAYER}


def contender_names() -> dict[str, str]:
    lay = layers()
    return {
        "a": f"harness, {lay['a']} = default layer (Lightning)",
        "b": f"harness, {lay['b']} (Lightning)",
        "c": f"bare PyTorch loop, same LM module ({lay['a']}) and data",
        "d": "nanoGPT-style reference GPT, plain PyTorch",
        "l": f"harness, Llama-style block `{LLAMA_BLOCK}` (Lightning)",
        "a+snap": f"harness, {lay['a']}, checkpoints over training (log-spaced + every 10 steps)",
    }


def harness_can_compile() -> bool:
    return any(f.name == "compile" for f in fields(TrainParams))


class Windows:
    """Marks the wall clock after warm-up and every `window` steps; call `tick()` after each step."""

    def __init__(self, s: BenchSettings):
        self.warmup, self.window, self.n = s.warmup_steps, s.window_steps, s.n_windows
        self.sync: Callable[[], None] = torch.cuda.synchronize if s.device == "cuda" else (lambda: None)
        self.steps = 0
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []  # process CPU time: robust to other load on a shared machine

    @property
    def total_steps(self) -> int:
        return self.warmup + self.window * self.n

    @property
    def done(self) -> bool:
        return self.steps >= self.total_steps

    def tick(self) -> None:
        self.steps += 1
        k = self.steps - self.warmup
        if k >= 0 and k % self.window == 0 and len(self.marks) <= self.n:
            self.sync()
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

    def rates(self, tokens_per_step: int) -> list[float]:
        return [self.window * tokens_per_step / (b - a) for a, b in zip(self.marks, self.marks[1:])]

    def cpu_rates(self, tokens_per_step: int) -> list[float]:
        """Tokens per second of this process' CPU time (all its threads)."""
        return [self.window * tokens_per_step / max(b - a, 1e-9) for a, b in zip(self.cpu_marks, self.cpu_marks[1:])]


def window_callback(w: Windows) -> Any:
    from lightning.pytorch.callbacks import Callback

    class WindowCallback(Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            w.tick()

    return WindowCallback()


def autocast(s: BenchSettings) -> contextlib.AbstractContextManager:
    """What Lightning's `precision` does to the forward pass, for the bare loops."""
    if s.precision == "bf16-mixed":
        return torch.autocast(device_type=s.device, dtype=torch.bfloat16)
    if s.precision == "16-mixed":
        return torch.autocast(device_type=s.device, dtype=torch.float16)
    return contextlib.nullcontext()


def _n_train(s: BenchSettings, w: Windows) -> int:
    return (w.total_steps + 2) * s.size.batch_size


def _data_module(s: BenchSettings, rc: Any) -> Any:
    return LMDataModule(rc.data, seed=0, batch_size=s.size.batch_size)


# --- contenders -----------------------------------------------------------------------------
def harness(s: BenchSettings, arch: str, model: dict[str, Any] | None = None, **train: Any) -> tuple[Windows, dict[str, Any]]:
    w = Windows(s)
    task = bench_data.register(s.size.vocab_size)
    rc = run_config(s, s.size, arch, task, n_train=_n_train(s, w), n_val=2, max_steps=w.total_steps, model=model, **train)
    result = run_harness(rc, [window_callback(w)])
    n_params = sum(p.numel() for p in result.lm.parameters())
    return w, {"n_params": n_params, "n_params_mfu": n_params - _pos_params(result.lm)}


def bare_loop(s: BenchSettings, compile_model: bool = False) -> tuple[Windows, dict[str, Any]]:
    """The loop you would write around the harness' `LM`: same data module, and the optimizer and
    schedule that `LMTrainer.configure_optimizers` builds, so only Lightning's loop is missing."""
    w = Windows(s)
    task = bench_data.register(s.size.vocab_size)
    rc = run_config(s, s.size, default_layer(), task, n_train=_n_train(s, w), n_val=2, max_steps=w.total_steps)
    L.seed_everything(0, verbose=False)
    dm = _data_module(s, rc)
    device = torch.device(s.device)
    lm = LM(rc.model, dm.tokenizer)
    module = LMTrainer(lm, rc.train).to(device)  # only for its optimizer recipe: no Lightning loop runs
    module._trainer = types.SimpleNamespace(estimated_stepping_batches=w.total_steps, precision=s.precision, world_size=1)
    conf = module.configure_optimizers()
    module._trainer = None
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    tp = rc.train
    params = [p for p in lm.parameters() if p.requires_grad]
    get_losses = torch.compile(lm.get_losses) if compile_model else lm.get_losses  # what TrainParams.compile compiles
    lm.train()
    while not w.done:
        for batch in dm.train_dataloader():
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast(s):
                loss = get_losses(batch, tp)[0]["main"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tp.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            w.tick()
            if w.done:
                break
    n_params = sum(p.numel() for p in lm.parameters())
    return w, {"n_params": n_params, "n_params_mfu": n_params - _pos_params(lm), "fused_adamw": bool(opt.defaults.get("fused"))}


def reference(s: BenchSettings, compile_model: bool = False) -> tuple[Windows, dict[str, Any]]:
    w = Windows(s)
    task = bench_data.register(s.size.vocab_size)
    rc = run_config(s, s.size, default_layer(), task, n_train=_n_train(s, w), n_val=2, max_steps=w.total_steps)
    dm = _data_module(s, rc)  # the same token stream as the harness' windows
    device = torch.device(s.device)
    torch.manual_seed(0)
    size = s.size
    model = GPT(GPTConfig(dm.tokenizer.n_tokens, size.seq_len, size.n_layers, size.n_heads, size.dim)).to(device)
    opt = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), device)
    fused = bool(opt.defaults.get("fused"))
    get_batch = StreamBatches(torch.from_numpy(dm.datasets["train"].stream.astype("int64")), size.seq_len, size.batch_size, device)
    fwd = torch.compile(model) if compile_model else model
    model.train()
    it = 0
    while not w.done:
        train_step(model, fwd, opt, get_batch, it, w.total_steps, autocast(s))
        it += 1
        w.tick()
    return w, {"n_params": sum(p.numel() for p in model.parameters()), "n_params_mfu": model.n_params(), "fused_adamw": fused}


def _pos_params(lm: Any) -> int:
    return sum(p.numel() for p in lm.pos_enc.parameters())


# --- the section ------------------------------------------------------------------------------
def peak_tflops(s: BenchSettings) -> float | None:
    """Dense bf16/fp16 peak of the GPU (vendor figures), for MFU."""
    if s.peak_tflops is not None:
        return s.peak_tflops
    if s.device != "cuda" or s.precision not in ("bf16-mixed", "16-mixed"):
        return None
    name = torch.cuda.get_device_name()
    table = [("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("A100", 312.0), ("L40S", 362.0), ("A10G", 125.0), ("L4", 121.0)]
    for key, value in table:
        if key in name:
            return value
    return None


def flops_per_token(n_params: int, size: ModelSize) -> float:
    """nanoGPT/PaLM estimate for one training token: 6N + 12·layers·dim·seq."""
    return 6 * n_params + 12 * size.n_layers * size.dim * size.seq_len


def interleave(s: BenchSettings, plan: dict[str, Callable[[], tuple[Windows, dict[str, Any]]]], names: dict[str, str],
               log: Callable[[str], None], label: str = "") -> dict[str, Any]:
    """Run `plan`'s contenders in turn for `s.rounds` rounds; every window's rate, wall and CPU."""
    windows: dict[str, list[float]] = {k: [] for k in plan}
    cpu_windows: dict[str, list[float]] = {k: [] for k in plan}
    info: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for r in range(s.rounds):
        for key, fn in plan.items():
            if key in errors:
                continue
            log(f"[throughput] {label}round {r + 1}/{s.rounds}: ({key}) {names[key]}")
            try:
                w, meta = fn()
            except Exception as e:  # a compile failure must not sink the other contenders
                if "+compile" not in key:
                    raise
                errors[key] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                log(f"[throughput] ({key}) failed: {errors[key]}")
                continue
            finally:
                gc.collect()
                if s.device == "cuda":
                    torch.cuda.empty_cache()
            rates, cpu_rates = w.rates(s.tokens_per_step), w.cpu_rates(s.tokens_per_step)
            windows[key] += rates
            cpu_windows[key] += cpu_rates
            info[key] = {**info.get(key, {}), **meta, "threads": torch.get_num_threads()}
            log(f"[throughput] {label}({key}) {statistics.median(rates):,.0f} tokens/s, {statistics.median(cpu_rates):,.0f} tokens/CPU-s "
                f"(windows: {', '.join(f'{x:,.0f}' for x in rates)})")
    return {
        "tokens_per_s": {k: statistics.median(v) for k, v in windows.items() if v},
        "tokens_per_cpu_s": {k: statistics.median(v) for k, v in cpu_windows.items() if v},
        "windows": windows, "cpu_windows": cpu_windows, "info": info, "errors": errors,
    }


def run(s: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    lay, names = layers(), contender_names()
    plan: dict[str, Callable[[], tuple[Windows, dict[str, Any]]]] = {
        "a": lambda: harness(s, lay["a"]),
        "b": lambda: harness(s, lay["b"]),
        "c": lambda: bare_loop(s),
        "d": lambda: reference(s),
        "a+snap": lambda: harness(s, lay["a"], **SNAPSHOTS),
    }
    if LLAMA_BLOCK in layer_choices():
        plan["l"] = lambda: harness(s, LLAMA_BLOCK, model=LLAMA_MODEL)
    if s.compile_contenders:
        if harness_can_compile():
            plan["a+compile"] = lambda: harness(s, lay["a"], compile=True)
        plan["c+compile"] = lambda: bare_loop(s, compile_model=True)
        plan["d+compile"] = lambda: reference(s, compile_model=True)
    names = {**names, **COMPILED}
    if s.contenders:  # a subset, for more interleaved rounds of the ones that matter in the same time
        plan = {k: v for k, v in plan.items() if k in s.contenders}
    out = interleave(s, plan, names, log)
    tps = out["tokens_per_s"]
    out.update({
        "names": {k: names[k] for k in plan},
        "layers": lay,
        "tokens_per_step": s.tokens_per_step,
        "ms_per_step": {k: 1000 * s.tokens_per_step / v for k, v in tps.items()},
        "big_batch": {},
    })
    if s.big_batch_factor > 1:  # (a), (c), (d) again at a larger batch: a fixed cost per step shrinks relative to the step
        sb = replace(s, size=replace(s.size, batch_size=s.size.batch_size * s.big_batch_factor))
        big_plan = {"a": lambda: harness(sb, lay["a"]), "c": lambda: bare_loop(sb), "d": lambda: reference(sb)}
        big_plan = {k: v for k, v in big_plan.items() if not s.contenders or k in s.contenders}
        big = interleave(sb, big_plan, names, log, label=f"batch {sb.size.batch_size}: ")
        out["big_batch"] = {**big, "batch_size": sb.size.batch_size, "tokens_per_step": sb.tokens_per_step}
    peak = peak_tflops(s)
    if peak:
        out["peak_tflops"] = peak
        out["mfu"] = {k: tps[k] * flops_per_token(out["info"][k]["n_params_mfu"], s.size) / (peak * 1e12) for k in tps}
    return out
