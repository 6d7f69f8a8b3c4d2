"""Sweep report: one table and one plot comparing saved runs, rebuilt from their folders alone.

`python main.py --config=NAME ... --save` ends by writing, in `{save-dir}/NAME/`:

    report.md    one row per run: the parameters that differ between runs, final train loss
                 (mean of the last 10 logged batches), final and best val loss, the test loss
                 of the final model, tokens/s,
                 parameter count, wall time, run folder; the best val loss in bold
    report.csv   the same table, full precision
    report.png   val loss against samples trained, one curve per run, coloured by the first
                 differing parameter (line style by the second)

It covers every saved run of NAME.txt and NAME-*.txt under the save dir (the same runs
`--config=NAME` trains), so re-running a sweep on another day or machine and copying the
folders in extends the comparison. `model_explorer.report(NAME or folder)` rebuilds it.
Only the files of a saved run are read (params.json, results.json, train_stats.json).
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError
from train.integrity import read_json_dict, verify_files
from train.saving import find_run_dirs, required_files

REPORT_NAMES = ("report.md", "report.csv", "report.png")
METRIC_COLUMNS = ("final_train_loss", "final_val_loss", "best_val_loss", "test_loss", "tokens_per_s", "n_params", "wall_time_s")
TRAIN_LOSS, VAL_LOSS, TOKENS_PER_S = "stat/train_loss:main", "stat/val_loss:main", "time/tokens_per_s"


@dataclass
class RunRow:
    run_dir: Path
    timestamp: str
    params: dict[str, Any]  # flattened: "model.dim", "train.lr", "seed", "config_name", ...
    metrics: dict[str, float | int | None]
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (samples trained, val loss)
    swept: list[str] = field(default_factory=list)  # flattened names of the keys its config swept


@dataclass
class Report:
    folder: Path
    rows: list[RunRow]
    varying: list[str]  # flattened names of the parameters that differ between rows
    labels: dict[str, str]  # flattened name -> column title

    @property
    def columns(self) -> list[str]:
        return ["run", *(self.labels[k] for k in self.varying), *METRIC_COLUMNS, "run_dir"]

    def table(self) -> list[dict[str, Any]]:
        """The rows as dicts keyed by `columns` (what report.csv holds)."""
        out = []
        for r in self.rows:
            d: dict[str, Any] = {"run": r.timestamp}
            d.update({self.labels[k]: r.params.get(k) for k in self.varying})
            d.update(r.metrics)
            d["run_dir"] = _rel(r.run_dir, self.folder)
            out.append(d)
        return out


def config_run_dirs(save_dir: Path, config: str) -> list[Path]:
    """The runs `--config=config` writes: under save_dir/config and save_dir/config-*."""
    folders = [save_dir / config] + sorted(p for p in save_dir.glob(f"{config}-*") if p.is_dir())
    return [d for f in folders if f.is_dir() for d in find_run_dirs(f)]


def _flatten(params: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in params.items():
        if k == "varying":
            continue
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    return flat


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def load_row(run_dir: Path) -> RunRow:
    """One run's row; a damaged file raises UserError naming it."""
    run_dir = Path(run_dir)
    try:
        return _row(run_dir)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise UserError(f"{run_dir}: its params.json, results.json or train_stats.json has the wrong shape ({type(e).__name__}: {e})") from None


def _row(run_dir: Path) -> RunRow:
    fix = "the run is left out of the report; copy it again or retrain it"
    verify_files(run_dir, "manifest.json", required_files(run_dir), only=("params.json", "results.json", "train_stats.json"))
    params = read_json_dict(run_dir / "params.json", fix)
    results = read_json_dict(run_dir / "results.json", fix)
    stats_path = run_dir / "train_stats.json"
    stats = read_json_dict(stats_path, fix) if stats_path.is_file() else {}
    val_curve = [(int(r[1]), float(r[3])) for r in stats.get(VAL_LOSS, [])]
    final_val = results.get("val_loss")
    vals = [v for _, v in val_curve] + ([final_val] if final_val is not None else [])
    train = [float(r[3]) for r in stats.get(TRAIN_LOSS, [])]
    tokens_per_s = results.get("tokens_per_s")
    if tokens_per_s is None:
        tokens_per_s = _mean([float(r[3]) for r in stats.get(TOKENS_PER_S, [])])
    metrics = {
        "final_train_loss": _mean(train[-10:]),
        "final_val_loss": final_val,
        "best_val_loss": min(vals) if vals else None,
        "test_loss": results.get("test_loss"),  # runs saved before the test-set evaluation: empty
        "tokens_per_s": tokens_per_s,
        "n_params": results.get("n_params"),
        "wall_time_s": results.get("wall_time_s"),
    }
    flat = _flatten(params)
    swept = [k for short in params.get("varying", {}) for k in flat if k.split(".", 1)[-1] == short]
    return RunRow(run_dir, results.get("timestamp") or run_dir.name, flat, metrics, val_curve, swept)


def _readable_rows(run_dirs: list[Path]) -> list[RunRow]:
    """Rows of the runs whose files can be read; one damaged run is named and left out, never breaks the report."""
    rows = []
    for d in run_dirs:
        try:
            rows.append(load_row(d))
        except UserError as e:
            print(f"note: report: {e}", flush=True)
    return rows


def _labels(keys: list[str]) -> dict[str, str]:
    """'model.dim' -> 'dim' unless another group has a 'dim' too."""
    short = [k.split(".", 1)[-1] for k in keys]
    return {k: s if short.count(s) == 1 else k for k, s in zip(keys, short)}


def build_report(run_dirs: list[Path], folder: Path) -> Report:
    if not run_dirs:
        raise UserError(f"no saved runs to report on under {folder}; train some with --save first")
    rows = sorted(_readable_rows(run_dirs), key=lambda r: (r.timestamp, str(r.run_dir)))
    if not rows:
        raise UserError(f"no readable saved runs to report on under {folder} (each damaged one was named above)")
    swept = list(dict.fromkeys(k for r in rows for k in r.swept))
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    varying = [k for k in keys if len({json.dumps(r.params.get(k), sort_keys=True, default=str) for r in rows}) > 1]
    varying.sort(key=lambda k: (k not in swept, swept.index(k) if k in swept else 0))
    return Report(Path(folder), rows, varying, _labels(varying))


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def write_report(folder: Path, run_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Write report.md/.csv/.png into `folder` for `run_dirs` (default: every run under it)."""
    folder = Path(folder)
    rep = build_report(find_run_dirs(folder) if run_dirs is None else list(run_dirs), folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name.split(".")[1]: folder / name for name in REPORT_NAMES}
    table = rep.table()
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=rep.columns)
        w.writeheader()
        w.writerows(table)
    paths["md"].write_text(_markdown(rep, table))
    plot_val_curves(rep, paths["png"])
    return paths


def write_config_report(save_dir: Path, config: str, required: bool = False) -> dict[str, Path]:
    """The report of every saved run of `--config=config`, written into save_dir/config/.

    No runs there (e.g. `Namer.save_folder_name` was edited to put them elsewhere): an error if
    `required`, else a note and no report, so a finished sweep never fails over its report.
    """
    save_dir = Path(save_dir)
    dirs = config_run_dirs(save_dir, config)
    if not dirs:
        known = sorted(d.name for d in save_dir.iterdir() if d.is_dir()) if save_dir.is_dir() else []
        msg = f"no saved runs of config {config!r} under {save_dir}; folders there: {', '.join(known) or 'none'}"
        if required:
            raise UserError(msg)
        print(f"no report: {msg} (use model_explorer.report(folder))", flush=True)
        return {}
    paths = write_report(save_dir / config, dirs)
    print(f"report of {len(dirs)} run(s): {paths['md']}", flush=True)
    return paths


def _markdown(rep: Report, table: list[dict[str, Any]]) -> str:
    best = min((r["best_val_loss"] for r in table if r["best_val_loss"] is not None), default=None)
    cols = rep.columns
    lines = [
        f"# Report: {rep.folder.name}",
        "",
        f"{len(table)} run(s). Differing parameters: {', '.join(rep.labels[k] for k in rep.varying) or 'none'}. "
        "final_train_loss = mean of the last 10 logged batch losses; losses in nats per token; "
        "wall time in seconds. Best val loss in bold. Curves: report.png.",
        "",
        "| " + " | ".join(cols) + " |",
        "| " + " | ".join("---" for _ in cols) + " |",
    ]
    for r in table:
        cells = [_fmt(r[c]) for c in cols]
        if best is not None and r["best_val_loss"] == best:
            i = cols.index("best_val_loss")
            cells[i] = f"**{cells[i]}**"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_val_curves(rep: Report, path: Path) -> None:
    """Val loss vs samples trained for every run; colour = first differing parameter."""
    from matplotlib.figure import Figure  # no pyplot: works headless and in threads

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.subplots()
    colour_key = rep.varying[0] if rep.varying else None
    style_key = rep.varying[1] if len(rep.varying) > 1 else None
    colour_vals = list(dict.fromkeys(json.dumps(r.params.get(colour_key), default=str) for r in rep.rows)) if colour_key else []
    style_vals = list(dict.fromkeys(json.dumps(r.params.get(style_key), default=str) for r in rep.rows)) if style_key else []
    styles = ["-", "--", ":", "-."]
    cmap = _colours(len(colour_vals))
    for r in rep.rows:
        ci = colour_vals.index(json.dumps(r.params.get(colour_key), default=str)) if colour_key else 0
        si = style_vals.index(json.dumps(r.params.get(style_key), default=str)) if style_key else 0
        label = ", ".join(f"{rep.labels[k]}={r.params.get(k)}" for k in rep.varying) or r.timestamp
        xs, ys = zip(*r.val_curve) if r.val_curve else ([], [])
        ax.plot(xs, ys, styles[si % len(styles)], marker="o", markersize=3, color=cmap[ci], label=label)
    ax.set_xlabel("samples trained")
    ax.set_ylabel("val loss (nats/token)")
    ax.set_title(f"{rep.folder.name}: val loss" + (f" by {rep.labels[colour_key]}" if colour_key else ""))
    ax.grid(alpha=0.3)
    if rep.rows:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(max(n, 1))]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def _rel(path: Path, folder: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        return str(path)
