"""Reload saved runs by timestamp and look at them: metrics, attention, stability, sweep reports.

    import model_explorer
    lm, dataset, train_stats, params = model_explorer.get_model_by_timestamp("2024-04-22--16-17-00")
    model_explorer.verify_stable_load("2024-04-22--16-17-00")
    model_explorer.plot_metrics("2024-04-22--16-17-00", "stat/val_loss:main")
    out_embeds, attns = model_explorer.show_lm_attns(lm, "as business managers know")
    model_explorer.report("my-config")

Folders, each overridable by an argument or an environment variable (defaults beside this repo):
saved runs `../saved-models` ($HARNESS_SAVE_DIR), metric plots `../metrics`
($HARNESS_METRICS_DIR), attention plots `../attentions` ($HARNESS_ATTENTIONS_DIR).
"""
from __future__ import annotations

import datetime
import difflib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.errors import UserError
from train.report import build_report, config_run_dirs, write_config_report, write_report
from train.saving import find_run_dirs, resolve_save_dir  # torch-free; model_explorer.resolve_save_dir stays the public name

# What needs torch, numpy or lightning (train.loading, train.snapshots, train.evaluate, dynamics,
# model.head_scores, matplotlib) is imported on first use, so `import model_explorer` stays light.
# Training dynamics (dynamics.py) and head scores (model/head_scores.py), importable from here:
_REEXPORTS = {
    **dict.fromkeys(("RunCheckpoints", "Table", "load_checkpoint", "over_checkpoints", "plot_over_checkpoints", "show_head_progress"), "dynamics"),
    **dict.fromkeys(("best_head", "head_scores", "repeated_halves_loss", "repeated_random_tokens", "scores_from_patterns"), "model.head_scores"),
}


def __getattr__(name: str) -> Any:
    if name in _REEXPORTS:
        import importlib

        return getattr(importlib.import_module(_REEXPORTS[name]), name)
    raise AttributeError(f"module 'model_explorer' has no attribute {name!r}")

HERE = Path(__file__).resolve().parent
TIMESTAMP_FORMAT = "%Y-%m-%d--%H-%M-%S"


class UnstableLoadError(AssertionError):
    """A reloaded run does not behave as it did when saved."""


# --- folders ------------------------------------------------------------------------------
def resolve_metrics_dir(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("HARNESS_METRICS_DIR") or HERE.parent / "metrics")


def resolve_attentions_dir(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("HARNESS_ATTENTIONS_DIR") or HERE.parent / "attentions")


# --- finding runs -------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedRun:
    timestamp: str
    path: Path


def list_runs(save_dir: str | Path | None = None) -> list[SavedRun]:
    """Every complete saved run under the save dir, oldest first."""
    root = resolve_save_dir(save_dir)
    if not root.is_dir():
        return []
    runs = [SavedRun(p.name, p) for p in find_run_dirs(root)]
    return sorted(runs, key=lambda r: (r.timestamp, str(r.path)))


def _parse_time(ts: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(ts[:20], TIMESTAMP_FORMAT)
    except ValueError:
        return None


def _nearest(timestamp: str, runs: list[SavedRun], n: int = 5) -> list[SavedRun]:
    t = _parse_time(timestamp)
    if t is not None:
        dated = [(abs((rt - t).total_seconds()), r) for r in runs if (rt := _parse_time(r.timestamp)) is not None]
        return [r for _, r in sorted(dated, key=lambda x: x[0])[:n]]
    close = difflib.get_close_matches(timestamp, [r.timestamp for r in runs], n=n, cutoff=0.3)
    return [r for c in close for r in runs if r.timestamp == c][:n]


def find_run(timestamp: str, save_dir: str | Path | None = None) -> Path:
    """The run folder named `timestamp` (or the only one starting with it) under the save dir."""
    root = resolve_save_dir(save_dir)
    runs = list_runs(root)
    matches = [r for r in runs if r.timestamp == timestamp] or [r for r in runs if r.timestamp.startswith(timestamp)]
    if len(matches) == 1:
        return matches[0].path
    if len(matches) > 1:
        listing = "; ".join(str(r.path) for r in matches[:10])
        raise UserError(f"timestamp {timestamp!r} matches {len(matches)} runs under {root}: {listing}; load one with get_model_by_path(path)")
    if not runs:
        raise UserError(f"no saved runs under {root}; train with --save, or pass save_dir= / set HARNESS_SAVE_DIR")
    near = ", ".join(f"{r.timestamp} ({r.path.relative_to(root).parent})" for r in _nearest(timestamp, runs))
    raise UserError(f"no run with timestamp {timestamp!r} under {root}; nearest: {near}")


def _run_path(timestamp_or_path: str | Path, save_dir: str | Path | None = None) -> Path:
    p = Path(timestamp_or_path)
    if (p / "params.json").is_file():
        return p
    return find_run(str(timestamp_or_path), save_dir)


def get_model_by_path(path: str | Path, verify: bool = True, checkpoint: int | str | None = None) -> tuple[Any, Any, dict[str, list], dict[str, Any]]:
    """→ lm, dataset, train_stats, params of the run saved in `path` (checked against its manifest).

    `checkpoint`: the weights after that many training samples (see `checkpoint_ids`) or "final";
    None = the final weights, as saved. Checkpoints over training: dynamics.py, docs/dynamics.md.
    """
    from train.loading import load_run  # torch: on first use

    path = Path(path)
    if not (path / "params.json").is_file():
        raise UserError(f"{path} is not a saved run folder (no params.json)")
    if checkpoint is not None:
        from dynamics import load_checkpoint  # torch: on first use

        return load_checkpoint(path, checkpoint, verify=verify)
    return load_run(path, verify=verify)


def get_model_by_timestamp(timestamp: str, save_dir: str | Path | None = None, verify: bool = True, checkpoint: int | str | None = None) -> tuple[Any, Any, dict[str, list], dict[str, Any]]:
    """→ lm, dataset, train_stats, params of the run whose folder is named `timestamp` (`checkpoint`: as in `get_model_by_path`)."""
    return get_model_by_path(find_run(timestamp, save_dir), verify=verify, checkpoint=checkpoint)


def checkpoint_ids(timestamp: str | Path, save_dir: str | Path | None = None) -> list[int]:
    """Training samples seen at each checkpoint over training of a run, in order ([] if none were kept)."""
    from train.snapshots import checkpoint_ids as ids  # lightning: on first use

    return ids(_run_path(timestamp, save_dir))


def get_all_checkpoints_by_timestamp(timestamp: str | Path, save_dir: str | Path | None = None, verify: bool = True) -> Any:
    """A run's checkpoints over training as ordered (n_samples, lm) pairs, each loaded when reached (`dynamics.RunCheckpoints`)."""
    from dynamics import RunCheckpoints  # torch: on first use

    return RunCheckpoints(_run_path(timestamp, save_dir), verify=verify)


# --- checking a reload --------------------------------------------------------------------
def verify_stable_load(timestamp: str | Path, save_dir: str | Path | None = None, rtol: float = 1e-6, n_samples: int = 8, verbose: bool = True) -> dict[str, Any]:
    """Reload a run and check it behaves as saved; raise `UnstableLoadError` naming what differs.

    - the val statistics, recomputed with `train.evaluate.evaluate` (the function that produced
      results.json), equal the saved ones within `rtol` (relative);
    - two forward passes on the same batch are bitwise identical (eval mode is deterministic);
    - the tokenizer round-trips: decoding val samples and encoding again gives the same text,
      and its JSON form restores an identical tokenizer.
    """
    import torch

    # torch and numpy: on first use
    from data.tokenizer_kinds import tokenizer_from_json
    from train.evaluate import evaluate

    path = _run_path(timestamp, save_dir)
    lm, dataset, _, _ = get_model_by_path(path)
    results = json.loads((path / "results.json").read_text())
    saved = results.get("val") or {"loss:main": results["val_loss"]}
    now = evaluate(lm, dataset.val_dataloader())
    report: dict[str, Any] = {"run": str(path), "saved_val": saved, "reloaded_val": now}
    for k, v in saved.items():
        if k not in now:
            raise UnstableLoadError(f"{path}: saved val statistic {k!r} is not produced by the reloaded model (got {sorted(now)})")
        if not math.isclose(now[k], v, rel_tol=rtol, abs_tol=1e-9):
            raise UnstableLoadError(f"{path}: val {k} was {v:.8g} when saved but is {now[k]:.8g} after reloading (diff {now[k] - v:.3g}); weights, data or code changed")
    batch = next(iter(dataset.val_dataloader(batch_size=n_samples)))
    x = model_input(batch)
    with torch.no_grad():
        a, b = lm(x), lm(x)
    if not torch.equal(a, b):
        raise UnstableLoadError(f"{path}: two forward passes on the same batch differ (max {float((a - b).abs().max()):.3g}); is something random in eval mode?")
    tok = lm.tokenizer
    is_text = "x_indices" in batch  # vector tasks (tart) have no text to round-trip
    for i in range(min(n_samples, len(dataset.datasets["val"])) if is_text else 0):
        text = tok.decode(dataset.sample_ids(i, "val"))
        again = tok.decode(tok.encode(text, add_bos=False))
        if again != text:
            raise UnstableLoadError(f"{path}: tokenizer does not round-trip val sample {i}: {text!r} -> {again!r}")
    if tokenizer_from_json(tok.to_json()).to_json() != tok.to_json():
        raise UnstableLoadError(f"{path}: the tokenizer's JSON form does not restore the same tokenizer")
    report["forward_deterministic"] = True
    report["tokenizer_round_trip"] = True
    if verbose:
        diffs = ", ".join(f"{k} {saved[k]:.6g} → {now[k]:.6g}" for k in saved)
        tok_line = "tokenizer round-trips" if is_text else "input interface restores from JSON"
        print(f"stable load ok: {path}\n  val: {diffs}\n  forward passes identical; {tok_line}")
    return report


def model_input(batch: dict[str, Any]) -> Any:
    """What the LM reads from a batch: token ids, or the vectors of a vector task (tart)."""
    for key in ("x_indices", "x_vectors"):
        if key in batch:
            return batch[key]
    raise UserError(f"a batch with keys {sorted(batch)} has no model input (x_indices or x_vectors)")


# --- plots ----------------------------------------------------------------------------------
def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _show_or_close(fig: Any, show: bool) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    if show and "inline" in matplotlib.get_backend().lower():
        from IPython.display import display

        display(fig)
    plt.close(fig)


X_COLUMNS = {"step": 0, "n_samples": 1, "counter": 2}  # columns of a train_stats row (step, n_samples, counter, value)
X_ALIASES = {"tokens": "n_tokens", "samples": "n_samples"}
X_LABELS = {"step": "optimizer steps", "n_samples": "samples trained", "counter": "stats recorded", "n_tokens": "tokens trained"}


def _x_values(stats: dict[str, list], rows: list, x: str, run: str) -> list[float]:
    """x of each row: a row column, or the stat `x` at the row's step (linear between its records)."""
    if x in X_COLUMNS:
        return [float(r[X_COLUMNS[x]]) for r in rows]
    import numpy as np

    if x not in stats:
        raise UserError(f"run {run} has no stat {x!r} to use as the x-axis; use step, n_samples, tokens or one of: {', '.join(sorted(stats))}")
    ref = sorted(stats[x], key=lambda r: r[2])
    return [float(v) for v in np.interp([r[0] for r in rows], [r[0] for r in ref], [float(r[3]) for r in ref])]


def _draw(ax: Any, runs: list[Path], metrics: list[str], x: str, many_runs: bool, colours: Iterator[str], style: str = "-") -> dict[str, tuple[list[float], list[float]]]:
    series: dict[str, tuple[list[float], list[float]]] = {}
    for path in runs:
        stats = json.loads((path / "train_stats.json").read_text())
        for m in metrics:
            if m not in stats:
                raise UserError(f"run {path.name} has no metric {m!r}; available: {', '.join(sorted(stats))}")
            rows = sorted(stats[m], key=lambda r: r[2])
            xs, ys = _x_values(stats, rows, x, path.name), [float(r[3]) for r in rows]
            label = m if not many_runs else (f"{path.name}" if len(metrics) == 1 else f"{path.name}: {m}")
            series[label] = (xs, ys)
            ax.plot(xs, ys, style, color=next(colours), marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    return series


def plot_metrics(
    timestamp: str | Sequence[str], metric: str | Sequence[str], filename: str | None = None,
    save_dir: str | Path | None = None, metrics_dir: str | Path | None = None, show: bool = True,
    x: str = "n_samples", logx: bool = False, logy: bool = False, metric2: str | Sequence[str] | None = None,
    logy2: bool = False, fmt: str = "png",
) -> dict[str, tuple[list[float], list[float]]]:
    """Plot `train_stats` metric(s) of run(s) on one figure; returns {label: (xs, ys)} of what was drawn.

    `timestamp` and `metric` may each be a list. `x`: `"n_samples"` (default, samples trained),
    `"step"`, `"tokens"` or any stat (e.g. `"lr"`, `"time/elapsed_s"`), read at each point's
    step. `logx`/`logy`: log axes. `metric2`: metric(s) on a second y-axis at the right (dashed,
    labels `... (right)`), `logy2` its log scale. With `filename`, saves
    `{metrics dir}/{filename}.{fmt}` (`fmt` "png" or "pdf"; a filename ending in .png/.pdf wins).
    """
    import matplotlib.pyplot as plt

    x = X_ALIASES.get(x, x)
    if filename and Path(filename).suffix.lower() in (".png", ".pdf"):
        filename, fmt = str(Path(filename).with_suffix("")), Path(filename).suffix.lower()[1:]
    if fmt not in ("png", "pdf"):
        raise UserError(f"plot_metrics: fmt={fmt!r}; use 'png' or 'pdf'")
    runs = [_run_path(t, save_dir) for t in _as_list(timestamp)]
    metrics = _as_list(metric)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])  # one cycle for both y-axes
    try:
        series = _draw(ax, runs, metrics, x, len(runs) > 1, colours)
        handles, labels = ax.get_legend_handles_labels()
        ax.set_ylabel(metrics[0] if len(metrics) == 1 else "value")
        if metric2 is not None:
            metrics2 = _as_list(metric2)
            ax2 = ax.twinx()
            right = _draw(ax2, runs, metrics2, x, len(runs) > 1, colours, style="--")
            series.update({f"{k} (right)": v for k, v in right.items()})
            for line in ax2.get_lines():
                line.set_label(f"{line.get_label()} (right)")
            ax2.set_ylabel(metrics2[0] if len(metrics2) == 1 else "value (right)")
            if logy2:
                ax2.set_yscale("log")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
    except BaseException:
        plt.close(fig)
        raise
    ax.set_xlabel(X_LABELS.get(x, x))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(runs[0].name if len(runs) == 1 else f"{len(runs)} runs")
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    if filename:
        out = resolve_metrics_dir(metrics_dir) / f"{filename}.{fmt}"
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    _show_or_close(fig, show)
    return series


plot_metric = plot_metrics  # the seed README's name for it


def show_lm_attns(
    lm: Any, seq: Any, layers: Sequence[int] | None = None, heads: Sequence[int] | None = None,
    folder_name: str | None = None, attentions_dir: str | Path | None = None, show: bool = True,
    checkpoint: int | str | None = None,
) -> tuple[Any, Any]:
    """Draw the attention pattern of each chosen head on one sequence; return (out_embeds, attns).

    Titles say how many training samples the weights had seen: `checkpoint`, else what a model
    loaded with `get_model_by_timestamp(ts, checkpoint=N)` carries (`lm.n_samples_seen`).

    `seq`: a string, id list or 1-D tensor. `out_embeds`: logits (1 × seq × vocab); `attns`:
    (1 × layers × heads × seq × seq), all layers and heads (`layers`/`heads` only choose what is
    drawn). Patterns come from the activation cache (`blocks.{i}.attn.hook_pattern`). With
    `folder_name`, saves `{attentions dir}/{folder_name}/layer{L}_head{H}.png`.
    """
    import matplotlib.pyplot as plt
    import torch

    x = lm.as_batch(seq)
    if x.shape[0] != 1:
        raise ValueError(f"show_lm_attns takes one sequence, got a batch of {x.shape[0]}")
    with torch.no_grad():
        out_embeds, cache = lm.run_with_cache(x, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    names = [n for n in cache if n.endswith("attn.hook_pattern")]
    attns = torch.stack([cache[n] for n in names], dim=1)
    n_layers, n_heads = attns.shape[1], attns.shape[2]
    layers = list(range(n_layers)) if layers is None else list(layers)
    heads = list(range(n_heads)) if heads is None else list(heads)
    bad = [f"layer {l}" for l in layers if not 0 <= l < n_layers] + [f"head {h}" for h in heads if not 0 <= h < n_heads]
    if bad:
        raise ValueError(f"show_lm_attns: no {', '.join(bad)} (the model has {n_layers} layers × {n_heads} heads)")
    labels = [lm.tokenizer.token_str(int(i)) for i in x[0]] if x.dim() == 2 else [f"{i}" for i in range(x.shape[1])]  # vectors: positions
    seen = checkpoint if checkpoint is not None else getattr(lm, "n_samples_seen", None)
    after = "" if seen is None else (" (final weights)" if seen == "final" else f", after {seen:,} samples")
    folder = resolve_attentions_dir(attentions_dir) / folder_name if folder_name else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    for l in layers:
        for h in heads:
            size = min(12, 2 + 0.35 * n)
            fig, ax = plt.subplots(figsize=(size + 1, size))
            im = ax.imshow(attns[0, l, h].float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(n), labels=[repr(t)[1:-1] for t in labels], rotation=90, fontsize=8)
            ax.set_yticks(range(n), labels=[repr(t)[1:-1] for t in labels], fontsize=8)
            ax.set_xlabel("attended to (key)")
            ax.set_ylabel("attending (query)")
            ax.set_title(f"layer {l}, head {h}{after}")
            fig.colorbar(im, ax=ax, fraction=0.046)
            fig.tight_layout()
            if folder is not None:
                fig.savefig(folder / f"layer{l}_head{h}.png")
            _show_or_close(fig, show)
    return out_embeds, attns


# --- comparing runs -----------------------------------------------------------------------
def report(folder_or_config: str | Path, save_dir: str | Path | None = None) -> Any:
    """Rebuild a sweep report (report.md/.csv/.png) from saved runs; returns the `train.report.Report`.

    A config name covers `{save dir}/NAME/` and `{save dir}/NAME-*/` and writes into
    `{save dir}/NAME/` (exactly what `main.py --config=NAME --save` writes); a folder (a
    `Path`, or a string containing "/") covers every run under it and writes into it.
    """
    p = Path(folder_or_config)
    if isinstance(folder_or_config, Path) or "/" in str(folder_or_config) or os.sep in str(folder_or_config):
        if not p.is_dir():
            raise UserError(f"report: {p} is not a folder")
        dirs = find_run_dirs(p)
        write_report(p, dirs)
        return build_report(dirs, p)
    root = resolve_save_dir(save_dir)
    write_config_report(root, str(folder_or_config), required=True)
    return build_report(config_run_dirs(root, str(folder_or_config)), root / str(folder_or_config))
