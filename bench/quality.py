"""Sample quality at a fixed budget: nanoGPT's "baby GPT" CPU setting, harness vs reference.

nanoGPT's README trains shakespeare_char on a laptop CPU with 4 layers, 4 heads, dim 128,
block 64, batch 12, 2000 iterations, lr 1e-3 (warm-up 100, cosine to 1e-4 at 2000), dropout 0,
AdamW betas (0.9, 0.99), weight decay 0.1, clipping 1.0. Both contenders train exactly that on
`--task=shakespeare` (char tokenizer, our fixed 90/5/5 split):

- harness: `run_one` as `main.py` runs it (packed windows of 65 chars, each sharing its first char with the previous one: 64 inputs, 64 targets, shuffled);
- reference (d): the nanoGPT-style GPT on the same train token stream, random offsets like nanoGPT.

Both are scored by one function on the same val windows (mean cross-entropy per predicted
token). Wall time is the training loop only (data preparation before, scoring after, excluded);
the harness' includes what a real run does meanwhile (logging, checkpoints every 200 steps).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.harness import run_config, run_harness
from bench.settings import BenchSettings
from bench.reference_gpt import GPT, GPTConfig, StreamBatches, configure_optimizer, train_step
from bench.throughput import autocast, default_layer
from data.dataloader import LMDataModule


@torch.no_grad()
def val_loss(forward: Callable[[torch.Tensor], torch.Tensor], windows: Any, device: torch.device, batch: int = 64) -> float:
    """Mean next-token cross-entropy over `windows` (seq_len + 1 tokens each; the last packed window
    may be shorter), one scorer for all."""
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        chunk = [np.asarray(windows[j]) for j in range(i, min(i + batch, len(windows)))]
        for length in sorted({len(w) for w in chunk} - {0, 1}):  # equal lengths stack; a window of 1 predicts nothing
            xy = torch.from_numpy(np.stack([w for w in chunk if len(w) == length]).astype(np.int64)).to(device)
            logits = forward(xy[:, :-1]).float()
            total += float(F.cross_entropy(logits.flatten(0, 1), xy[:, 1:].flatten(), reduction="sum"))
            count += xy[:, 1:].numel()
    return total / count


class TrainClock:
    """Wall and process CPU seconds from Lightning's on_train_start to on_train_end."""

    def __init__(self) -> None:
        self.wall = self.cpu = float("nan")

    def callback(self) -> Any:
        from lightning.pytorch.callbacks import Callback

        clock = self

        class _Clock(Callback):
            def on_train_start(self, trainer: Any, pl_module: Any) -> None:
                self.t, self.c = time.perf_counter(), time.process_time()

            def on_train_end(self, trainer: Any, pl_module: Any) -> None:
                clock.wall, clock.cpu = time.perf_counter() - self.t, time.process_time() - self.c

        return _Clock()


def run(s: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    size, iters = s.quality_size, s.quality_iters
    layer = default_layer()
    rc = run_config(s, size, layer, "shakespeare", n_train=0, n_val=0, max_steps=iters, warmup_steps=100,
                    n_print_samples=3, data={"token_cache": True})  # as a default run: samples printed, ids cached
    device = torch.device(s.device)

    log(f"[quality] harness: {iters} steps on shakespeare ({size.describe(vocab=False)})")
    clock = TrainClock()
    result = run_harness(rc, [clock.callback()])
    lm = result.lm.to(device).eval()
    dm = LMDataModule(rc.data, seed=0, batch_size=size.batch_size)  # the same split, tokenizer and windows
    val = dm.datasets["val"]
    harness_loss = val_loss(lambda x: lm(x), val, device)
    log(f"[quality] harness: val loss {harness_loss:.4f} in {result.wall_time_s:.1f} s, training loop {clock.cpu:.1f} CPU-s "
        f"(run_one's own val: {result.val['loss:main']:.4f})")

    log(f"[quality] reference: {iters} iterations")
    torch.manual_seed(0)
    model = GPT(GPTConfig(dm.tokenizer.n_tokens, size.seq_len, size.n_layers, size.n_heads, size.dim)).to(device)
    opt = configure_optimizer(model, 1e-3, 0.1, (0.9, 0.99), device)
    get_batch = StreamBatches(torch.from_numpy(dm.datasets["train"].stream.astype("int64")), size.seq_len, size.batch_size, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.train()
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for it in range(iters):
        train_step(model, model, opt, get_batch, it, iters, autocast(s))
    sync()
    ref_wall, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.eval()
    ref_loss = val_loss(lambda x: model(x)[0], val, device)
    log(f"[quality] reference: val loss {ref_loss:.4f} in {ref_wall:.1f} s, {ref_cpu:.1f} CPU-s")
    if not (math.isfinite(harness_loss) and math.isfinite(ref_loss)):
        raise RuntimeError("quality bench: non-finite val loss")
    return {
        "layer": layer,
        "setting": f"{size.describe(vocab=False)}, {iters} iterations, lr 1e-3 warm-up 100 cosine to 1e-4, dropout 0",
        "val_windows": len(val),
        "val_tokens": sum(max(0, len(val[i]) - 1) for i in range(len(val))),
        "vocab_size": dm.tokenizer.n_tokens,
        "val_loss": {"harness": harness_loss, "reference": ref_loss},
        "harness_run_one_val_loss": result.val["loss:main"],
        "wall_s": {"harness": result.wall_time_s, "reference": ref_wall},
        "train_loop_wall_s": {"harness": clock.wall, "reference": ref_wall},
        "train_loop_cpu_s": {"harness": clock.cpu, "reference": ref_cpu},
        "n_params": {"harness": sum(p.numel() for p in lm.parameters()), "reference": sum(p.numel() for p in model.parameters())},
    }
