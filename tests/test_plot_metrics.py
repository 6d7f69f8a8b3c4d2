"""plot_metrics: x-axis choices, log axes, a second y-axis, PNG and PDF files (matplotlib Agg)."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import model_explorer
from tests.explorer_helpers import train_tiny_run
from core.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("plots"))


@pytest.fixture
def figures(monkeypatch):
    """The figures plot_metrics draws, kept open for inspection."""
    drawn = []
    monkeypatch.setattr(model_explorer, "_show_or_close", lambda fig, show: drawn.append(fig))
    yield drawn
    import matplotlib.pyplot as plt

    for fig in drawn:
        plt.close(fig)


def _stats(run):
    return json.loads((run / "train_stats.json").read_text())


@pytest.mark.parametrize("x, column, label", [("n_samples", 1, "samples trained"), ("step", 0, "optimizer steps")])
def test_row_columns_as_x(run, figures, x, column, label):
    rows = _stats(run)["stat/train_loss:main"]
    series = model_explorer.plot_metrics(run, "stat/train_loss:main", x=x, show=False)
    xs, ys = series["stat/train_loss:main"]
    assert xs == [float(r[column]) for r in rows] and ys == [r[3] for r in rows]
    (ax,) = figures[0].axes
    assert ax.get_xlabel() == label and ax.get_ylabel() == "stat/train_loss:main"
    assert np.array_equal(ax.get_lines()[0].get_xdata(), xs)


def test_tokens_and_any_stat_as_x(run, figures):
    stats = _stats(run)
    tok = stats["n_tokens"]
    series = model_explorer.plot_metrics(run, "stat/val_loss:main", x="tokens", show=False)
    xs, _ = series["stat/val_loss:main"]
    steps = [r[0] for r in stats["stat/val_loss:main"]]
    assert xs == pytest.approx(np.interp(steps, [r[0] for r in tok], [r[3] for r in tok]))
    assert figures[0].axes[0].get_xlabel() == "tokens trained" and 0 < xs[0] <= xs[-1]
    lr_series = model_explorer.plot_metrics(run, "stat/train_loss:main", x="lr", show=False)
    lrs = [r[3] for r in stats["lr"]]
    assert min(lrs) <= min(lr_series["stat/train_loss:main"][0]) and max(lr_series["stat/train_loss:main"][0]) <= max(lrs)
    assert figures[1].axes[0].get_xlabel() == "lr"
    with pytest.raises(UserError, match="no stat 'nope' to use as the x-axis; use step, n_samples, tokens or one of"):
        model_explorer.plot_metrics(run, "stat/val_loss:main", x="nope", show=False)


def test_log_axes_second_y_axis_and_pdf(run, figures, tmp_path):
    series = model_explorer.plot_metrics(run, "stat/train_loss:main", metric2="lr", x="step", logx=True, logy=True, logy2=True,
                                         filename="both", fmt="pdf", metrics_dir=tmp_path, show=False)
    assert (tmp_path / "both.pdf").read_bytes()[:5] == b"%PDF-" and not (tmp_path / "both.png").exists()
    left, right = figures[0].axes
    assert (left.get_xscale(), left.get_yscale(), right.get_yscale()) == ("log", "log", "log")
    assert left.get_ylabel() == "stat/train_loss:main" and right.get_ylabel() == "lr"
    assert np.allclose(right.get_lines()[0].get_ydata(), [r[3] for r in _stats(run)["lr"]])
    assert set(series) == {"stat/train_loss:main", "lr (right)"}
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["stat/train_loss:main", "lr (right)"]
    assert left.get_lines()[0].get_color() != right.get_lines()[0].get_color()


def test_png_by_default_or_from_the_filename(run, figures, tmp_path):
    model_explorer.plot_metrics(run, "stat/val_loss:main", filename="val", metrics_dir=tmp_path, show=False)
    model_explorer.plot_metrics(run, "stat/val_loss:main", filename="val2.pdf", metrics_dir=tmp_path, show=False)
    assert (tmp_path / "val.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "val2.pdf").read_bytes()[:5] == b"%PDF-"
    assert figures[0].axes[0].get_xscale() == "linear"
    with pytest.raises(UserError, match="fmt='svg'; use 'png' or 'pdf'"):
        model_explorer.plot_metrics(run, "stat/val_loss:main", filename="x", fmt="svg", metrics_dir=tmp_path, show=False)
