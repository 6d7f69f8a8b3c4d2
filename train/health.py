"""Training health: gradient and weight norms every logged step, update/weight ratio per layer
at every validation. Recorded with `LMTrainer.log_stat`, so they reach `train_stats`, the CSV
log and wandb like every other stat:

    health/grad_norm               global L2 norm of all gradients, before clipping
    health/weight_norm             global L2 norm of all trainable parameters
    health/update_ratio:{layer}    |last optimizer update| / |weights|, per layer (layer0, layer1, ...,
                                   embed, pos_enc.embedding, decoder.norm, ...), at each validation

Cheap by construction: the norms are one fused `torch._foreach_norm` pass, run only on the steps
the loggers write (`log_every_n_steps`); the update ratio is rebuilt at validation from AdamW's
own state (its moments and step count, which checkpoints keep, so a resumed run logs the same
values) and the learning rate the last step used, with no copy of the weights per step.
Switch off with `TrainParams.log_health=False`; `python -m bench` measures the cost.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, Iterable

import torch
from lightning.pytorch.callbacks import Callback

from train.distributed import is_fsdp, plain_param_name

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def global_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """L2 norm of all `tensors` together, in one fused pass (no host sync)."""
    ts = [t.detach() for t in tensors]
    if not ts:
        return None
    norms = torch._foreach_norm(ts)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def layer_of(name: str) -> str:
    """`decoder.layers.3.linear1.weight` → `layer3`; others by module: `embed`, `pos_enc.embedding`, `decoder.norm`."""
    name = plain_param_name(name)
    m = _LAYER.search(name)
    return f"layer{m.group(1)}" if m else name.rsplit(".", 1)[0]


def adamw_last_updates(optimizer: torch.optim.Optimizer, lrs: list[float]) -> dict[torch.Tensor, torch.Tensor]:
    """param → the update its last AdamW step applied (old − new), from the optimizer's state.

    AdamW did p_new = p_old·(1 − lr·wd) − lr/bc1 · m / (√v / √bc2 + eps); solving for p_old
    needs only m, v, the step count and `lrs` (each group's lr at that step)."""
    out: dict[torch.Tensor, torch.Tensor] = {}
    for group, lr in zip(optimizer.param_groups, lrs):
        ps = [p for p in group["params"] if "exp_avg" in optimizer.state.get(p, {})]
        if not ps:
            continue
        b1, b2 = group["betas"]
        states = [optimizer.state[p] for p in ps]
        for p, st in zip(ps, states):
            step = float(st["step"])
            bc1, bc2 = 1 - b1**step, 1 - b2**step
            adam = st["exp_avg"] / (st["exp_avg_sq"].sqrt() / math.sqrt(bc2) + group["eps"]) * (lr / bc1)
            old = (p.detach() + adam) / (1 - lr * group["weight_decay"])
            out[p] = old - p.detach()
    return out


def update_ratios(named: list[tuple[str, torch.Tensor]], updates: dict[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """layer → |update| / |weights| over that layer's parameters (fused norms)."""
    by_layer: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for name, p in named:
        if p in updates:
            ups, ws = by_layer[layer_of(name)]
            ups.append(updates[p])
            ws.append(p.detach())
    return {layer: global_norm(ups) / global_norm(ws).clamp(min=1e-12) for layer, (ups, ws) in by_layer.items()}


class TrainingHealth(Callback):
    """Logs the health stats through the LightningModule's `log_stat`."""

    def __init__(self) -> None:
        self._lrs: list[float] = []

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        # Lightning calls this after backward and before clipping: the raw gradients.
        self._lrs = [g["lr"] for g in optimizer.param_groups]
        if (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) or is_fsdp(trainer):  # FSDP: shards, not the global norm
            return
        params = [p for p in pl_module.parameters() if p.requires_grad]
        grad = global_norm(p.grad for p in params if p.grad is not None)
        if grad is not None:
            pl_module.log_stat("health/grad_norm", grad)
        pl_module.log_stat("health/weight_norm", global_norm(params))

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not self._lrs or is_fsdp(trainer) or not trainer.optimizers:
            return
        opt = trainer.optimizers[0]
        with torch.no_grad():
            lm = getattr(pl_module, "model", pl_module)  # LMTrainer.model: names as in the LM (embed, decoder.layers.0, ...)
            ratios = update_ratios(list(lm.named_parameters()), adamw_last_updates(opt, self._lrs))
        for layer, r in sorted(ratios.items()):
            pl_module.log_stat(f"health/update_ratio:{layer}", r)
