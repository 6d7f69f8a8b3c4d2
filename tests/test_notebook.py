"""notebooks/explore.ipynb runs top to bottom on a fresh tiny run, so it never goes stale.

The kernel is this interpreter (a kernelspec written into a temp JUPYTER_PATH), every folder the
notebook writes to points into tmp_path, and the hub is switched off: the GPT-2 cell must take
its offline fallback (a tiny local GPT-2) and say so.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"


def test_explore_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    spec = tmp_path / "jupyter" / "kernels" / "harness-venv"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "harness venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    for var, sub in (("HARNESS_SAVE_DIR", "saved"), ("HARNESS_LOG_DIR", "logs"), ("HARNESS_METRICS_DIR", "metrics"), ("HARNESS_ATTENTIONS_DIR", "attentions")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("HARNESS_GPT2", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without network: nothing cached, nothing to download
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    NotebookClient(nb, kernel_name="harness-venv", timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    nbformat.write(nb, tmp_path / "explore-executed.ipynb")  # to look at when this fails
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "checkpoints (samples seen): [0, 32, 64," in text and "samples: " in text
    assert "Using a tiny random GPT-2 built locally instead" in text, "the GPT-2 cell says it fell back"
    assert "stable load ok" in text and "greedy:" in text and "beam:" in text and "with layer 1 head 0 zeroed" in text
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 7, "metric plots, attention heatmaps and the checkpoint plots are displayed"
    assert (tmp_path / "metrics" / "explore-losses.png").is_file()
    assert sorted(p.name for p in (tmp_path / "attentions" / "explore").iterdir()) == ["layer1_head0.png", "layer1_head1.png"]
    assert (tmp_path / "saved" / "explore-tiny" / "report.md").is_file()
