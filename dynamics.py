"""Training dynamics: load a run's checkpoints over training and look across them.

    import model_explorer as me                       # re-exports everything below
    me.checkpoint_ids(ts)                             # [0, 32, 64, 128, ..., 25600] samples seen
    lm, dataset, train_stats, params = me.get_model_by_timestamp(ts, checkpoint=128)
    for n_samples, lm in me.get_all_checkpoints_by_timestamp(ts): ...   # loaded one at a time
    table = me.over_checkpoints(ts, lambda lm: me.head_scores(lm)["induction"].max().item())
    me.plot_over_checkpoints(table, logx=True)
    me.show_head_progress(ts, "abcabc", layer=1, head=0)

Checkpoints are written by `train/snapshots.py` (TrainParams `snapshot_*`); docs/dynamics.md.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import model_explorer
from core.errors import UserError
from model.lm import LM
from train.integrity import read_manifest, verify_files
from train.loading import load_run
from train.saving import MANIFEST, REQUIRED, WEIGHTS
from train.snapshots import FOLDER, checkpoint_file, checkpoint_ids as _ids, read_index

Checkpoint = int | str  # samples seen, or "final"


# --- loading ------------------------------------------------------------------------------
def _verify_files(run_dir: Path, rels: Sequence[str]) -> None:
    """Check just the files a load reads against manifest.json (a run may hold many checkpoints)."""
    listed = read_manifest(run_dir, MANIFEST, REQUIRED) if (run_dir / MANIFEST).is_file() else {}
    for rel in rels:
        if listed and rel not in listed:
            raise UserError(f"{run_dir / rel} is not listed in {run_dir / MANIFEST} (added after saving?)")
    verify_files(run_dir, MANIFEST, REQUIRED, only=tuple(rels))


def load_checkpoint(run_dir: str | Path, checkpoint: Checkpoint = "final", verify: bool = True) -> tuple[Any, Any, dict[str, list], dict[str, Any]]:
    """→ lm, dataset, train_stats, params of a saved run with the weights of `checkpoint`.

    `lm.n_samples_seen` says when those weights were taken (titles of the plots below use it).
    `train_stats` is the whole run's, whichever checkpoint is loaded.
    """
    run_dir = Path(run_dir)
    path = checkpoint_file(run_dir, checkpoint)  # an unknown id stops here, naming the ones that exist
    if verify:
        _verify_files(run_dir, ["params.json", "tokenizer.json", "train_stats.json", WEIGHTS, str(path.relative_to(run_dir))])
    lm, dataset, stats, params = load_run(run_dir, verify=False)
    if checkpoint != "final":
        lm = _with_weights(lm, path)
    lm.n_samples_seen = checkpoint if checkpoint != "final" else _final_samples(run_dir, stats)
    return lm, dataset, stats, params


def _with_weights(like: Any, path: Path) -> Any:
    """A fresh LM shaped like `like` (same tokenizer) holding the weights in `path`."""
    from safetensors.torch import load_model

    lm = LM(like.model_params, like.tokenizer)
    load_model(lm, str(path), strict=True)
    return lm.eval()


def _final_samples(run_dir: Path, stats: dict[str, list]) -> int | None:
    index = read_index(run_dir / FOLDER)
    if index:
        return index[-1]["n_samples"]
    rows = stats.get("stat/train_loss:main") or []
    return int(max(r[1] for r in rows)) if rows else None


class RunCheckpoints:
    """A run's checkpoints over training as ordered `(n_samples, lm)` pairs, each loaded when reached.

    `len()`, iteration, `[i]` (the i-th pair) and `.ids`; the run's files are verified once.
    `.dataset`, `.params`, `.train_stats` are shared by all checkpoints.
    """

    def __init__(self, run_dir: str | Path, verify: bool = True, only: Sequence[int] | None = None):
        self.run_dir = Path(run_dir)
        ids = _ids(self.run_dir)
        if not ids:
            checkpoint_file(self.run_dir, 0)  # raises the one-line "no checkpoints over training" error
        if only is not None:
            for n in only:
                checkpoint_file(self.run_dir, n)
            ids = [n for n in ids if n in set(only)]
        self.ids: list[int] = ids
        self.final, self.dataset, self.train_stats, self.params = load_run(self.run_dir, verify=verify)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, n_samples: int) -> Any:
        lm = _with_weights(self.final, checkpoint_file(self.run_dir, n_samples))
        lm.n_samples_seen = n_samples
        return lm

    def __getitem__(self, i: int) -> tuple[int, Any]:
        n = self.ids[i]
        return n, self.load(n)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        for n in self.ids:
            yield n, self.load(n)

    def steps(self) -> dict[int, int]:
        """samples seen → optimizer step, for each checkpoint."""
        return {e["n_samples"]: e["step"] for e in read_index(self.run_dir / FOLDER)}


# --- evaluating across checkpoints --------------------------------------------------------
class Table(list):
    """Rows (dicts) with the same keys; `column(key)` → list, `to_csv(path)`, markdown repr."""

    def column(self, key: str) -> list:
        return [r.get(key) for r in self]

    def add(self, value: Any, name: str = "value", **fields: Any) -> None:
        """One row: `fields`, then `value`'s keys if it is a dict, else `value` as column `name`."""
        self.append({**fields, **(value if isinstance(value, dict) else {name: value})})

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(k for r in self for k in r))

    def to_csv(self, path: str | Path) -> Path:
        import csv

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns)
            w.writeheader()
            w.writerows(self)
        return path

    def __repr__(self) -> str:
        cols = self.columns
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in self]
        return "\n".join(lines)


def over_checkpoints(
    run: str | Path | RunCheckpoints, fn: Callable[..., Any], save_dir: str | Path | None = None,
    checkpoints: Sequence[int] | None = None, name: str = "value", progress: bool = True,
) -> Table:
    """Evaluate `fn(lm)` (or `fn(lm, dataset)`) at every checkpoint of a run → a `Table`.

    `fn` returns a number (column `name`) or a dict of them (one column each). Each row also has
    `n_samples` and `step`. `checkpoints` picks some (samples seen); a tqdm bar shows progress.
    """
    from tqdm.auto import tqdm

    cps = run if isinstance(run, RunCheckpoints) else RunCheckpoints(_run_dir(run, save_dir), only=checkpoints)
    takes_dataset = len(inspect.signature(fn).parameters) >= 2
    steps = cps.steps()
    table = Table()
    for n, lm in tqdm(cps, total=len(cps), desc=f"checkpoints of {cps.run_dir.name}", disable=not progress):
        table.add(fn(lm, cps.dataset) if takes_dataset else fn(lm), name, n_samples=n, step=steps.get(n))
    return table


def _run_dir(run: str | Path, save_dir: str | Path | None) -> Path:
    return model_explorer._run_path(run, save_dir)


# --- plots --------------------------------------------------------------------------------
def plot_over_checkpoints(
    table: Table | Sequence[dict], keys: str | Sequence[str] | None = None, logx: bool = True, title: str | None = None,
    filename: str | None = None, metrics_dir: str | Path | None = None, show: bool = True, ax: Any = None,
) -> Any:
    """Draw columns of an `over_checkpoints` table against samples seen; returns the figure.

    With `logx`, the x axis is symmetric-log so the initial weights (0 samples) stay visible.
    Two keys get two y axes (left and right); `filename` saves `{metrics dir}/{filename}.png`.
    """
    import matplotlib.pyplot as plt

    rows = list(table)
    if not rows:
        raise UserError("plot_over_checkpoints: the table is empty")
    keys = [k for k in rows[0] if k not in ("n_samples", "step")] if keys is None else ([keys] if isinstance(keys, str) else list(keys))
    missing = [k for k in keys if k not in rows[0]]
    if missing:
        raise UserError(f"plot_over_checkpoints: no column {', '.join(map(repr, missing))}; columns: {', '.join(rows[0])}")
    xs = [r["n_samples"] for r in rows]
    fig, ax0 = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4.5))
    axes = [ax0] + ([ax0.twinx()] if len(keys) == 2 else [])
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, k in enumerate(keys):
        a = axes[min(i, len(axes) - 1)]
        a.plot(xs, [r[k] for r in rows], marker="o", markersize=3, color=colors[i % len(colors)], label=k)
        if len(axes) == 2:
            a.set_ylabel(k, color=colors[i % len(colors)])
    if logx:
        ax0.set_xscale("symlog", linthresh=max(1, min((x for x in xs if x > 0), default=1)))
    ax0.set_xlabel("training samples seen" + (" (log scale)" if logx else ""))
    if len(axes) == 1:
        ax0.set_ylabel(keys[0] if len(keys) == 1 else "value")
        ax0.legend(fontsize=8)
    ax0.grid(alpha=0.3)
    if title:
        ax0.set_title(title)
    fig.tight_layout()
    if filename:
        out = model_explorer.resolve_metrics_dir(metrics_dir) / f"{filename}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    if ax is None:
        model_explorer._show_or_close(fig, show)
    return fig


def show_head_progress(
    run: Any, x: Any, layer: int, head: int, save_dir: str | Path | None = None, checkpoints: Sequence[int] | None = None,
    folder_name: str | None = None, attentions_dir: str | Path | None = None, show: bool = True, max_cols: int = 6,
) -> tuple[Any, Any]:
    """One head's attention on `x` at every checkpoint: one figure, one panel per checkpoint,
    titled with the samples seen. Returns (figure, patterns: checkpoints × query × key).

    `run` is a saved run (timestamp or folder) or any iterable of `(label, lm)` pairs, e.g. a
    pretrained trajectory from `pretrained.get_all_checkpoints([...])` (an int label reads as
    samples seen). With `folder_name`, saves `{attentions dir}/{folder_name}/progress_layer{L}_head{H}.png`.
    """
    import matplotlib.pyplot as plt
    import torch

    if isinstance(run, (str, Path)):
        cps = RunCheckpoints(_run_dir(run, save_dir), only=checkpoints)
        pairs, title = iter(cps), cps.run_dir.name
    else:
        pairs, title = iter(run), "checkpoints"
    patterns, ns, last = [], [], None
    for n, lm in pairs:
        ids = lm.as_batch(x)
        _check_head(lm, layer, head)
        with torch.no_grad():
            _, cache = lm.run_with_cache(ids, names_filter=f"blocks.{layer}.attn.hook_pattern")
        patterns.append(cache[f"blocks.{layer}.attn.hook_pattern"][0, head].float().cpu())
        ns.append(n)
        last = lm
    if last is None:
        raise UserError("show_head_progress: no checkpoints to show")
    labels = [repr(last.tokenizer.token_str(int(i)))[1:-1] for i in last.as_batch(x)[0]]
    cols = min(max_cols, len(ns))
    rows = -(-len(ns) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows + 0.4), squeeze=False)
    for a in axes.flat:
        a.axis("off")
    for a, n, p in zip(axes.flat, ns, patterns):
        a.imshow(p.numpy(), cmap="viridis", vmin=0, vmax=1)
        a.set_title(f"after {n:,} samples" if isinstance(n, int) else str(n), fontsize=8)
        if len(labels) <= 24:
            a.axis("on")
            a.set_xticks(range(len(labels)), labels=labels, fontsize=5, rotation=90)
            a.set_yticks(range(len(labels)), labels=labels, fontsize=5)
    fig.suptitle(f"{title}: layer {layer}, head {head}")
    fig.tight_layout()
    if folder_name:
        folder = model_explorer.resolve_attentions_dir(attentions_dir) / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"progress_layer{layer}_head{head}.png", dpi=120)
    model_explorer._show_or_close(fig, show)
    return fig, torch.stack(patterns)


def _check_head(lm: Any, layer: int, head: int) -> None:
    n_layers, n_heads = lm.model_params.n_layers, lm.model_params.n_heads
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise UserError(f"no layer {layer}, head {head}: the model has {n_layers} layers × {n_heads} heads")
