"""Every shell and Python block in README.md runs as written, so the README cannot drift.

Shell blocks run line by line with `bash` from the repo root, with the PATH the suite runs under
(a `python3` without torch is rerun under .venv by main.py itself). They see tiny copies of every
config in configs/ through `$HARNESS_CONFIGS_DIR`, and `$HARNESS_SAVE_DIR`/`$HARNESS_LOG_DIR` point
into tmp_path, so `--config=test-synth` trains for seconds and writes nothing beside the repo.
Python blocks run in order in one interpreter, as a reader would type them, after a prelude that
trains a tiny saved run under the names the README uses as placeholders (config `NAME`, timestamp
`2024-04-22--16-17-00`, `ts`/`ts1`/`ts2`); GPT-2 is a tiny local copy via `$HARNESS_GPT2`.

A block that must not run here (needs a GPU, a network, a cluster, or is a synopsis) carries
`<!-- readme-test: skip: REASON -->` on the line before its fence; the reason shows as the skip.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
SHELL, PYTHON = ("bash", "sh", "shell"), ("python", "py")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip:\s*(.+?)\s*-->")
EXAMPLE_TS = "2024-04-22--16-17-00"
TIMEOUT_S = 600  # per command; a loaded 2-core machine is slow to start torch


@dataclass
class Block:
    lang: str
    code: str
    line: int  # README line of the opening fence
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.lang}-line{self.line}"


def readme_blocks(text: str | None = None) -> list[Block]:
    """Fenced blocks with a shell or Python language tag, each with the skip reason marked before it."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        lang = m[1].lower()
        if lang in SHELL + PYTHON:
            prev = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            mark = SKIP.search(prev)
            blocks.append(Block("shell" if lang in SHELL else "python", "\n".join(lines[i + 1 : end]), i + 1, mark[1] if mark else None))
        i = end + 1
    return blocks


TINY_OVERRIDES = {
    "DataParams": {"n_train_samples": "64", "n_val_samples": "16", "n_test_samples": "16"},
    "TrainParams": {"epochs": "1", "max_steps": "-1", "batch_size": "16", "n_print_samples": "1", "hyperparams_log_freq": "2", "threads": "1"},
    "ModelParams": {"dim": "16", "n_layers": "1", "n_heads": "2"},
}


def tiny_config(text: str) -> str:
    """The same config with sizes, data and training cut to seconds (other settings kept)."""
    out = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if any(key in o for o in TINY_OVERRIDES.values()) and "=" in line:
            continue
        out.append(line)
        if line.strip() in TINY_OVERRIDES:
            out += [f"{k}={v}" for k, v in TINY_OVERRIDES[line.strip()].items()]
    return "\n".join(out) + "\n"


TINY_NAME = """DataParams
task="copy"
alphabet="abcd"
min_len=2
max_len=5
max_seq_len=16

TrainParams
lr=3e-3
warmup_steps=2
snapshot_log_spaced=True

ModelParams
max_seq_len=16
"""


@pytest.fixture
def readme_env(tmp_path) -> dict[str, str]:
    configs = tmp_path / "configs"
    configs.mkdir()
    for cfg in (REPO / "configs").glob("*.txt"):
        (configs / cfg.name).write_text(tiny_config(cfg.read_text()))
    (configs / "NAME.txt").write_text(tiny_config(TINY_NAME).replace("n_layers=1", "n_layers=2"))  # layer 1 for show_head_progress
    env = {**os.environ, "HARNESS_CONFIGS_DIR": str(configs), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for var, sub in (("HARNESS_SAVE_DIR", "saved"), ("HARNESS_LOG_DIR", "logs"), ("HARNESS_METRICS_DIR", "metrics"), ("HARNESS_ATTENTIONS_DIR", "attentions")):
        env[var] = str(tmp_path / sub)
    env.pop("HARNESS_REEXECED", None)
    return env


def run(cmd: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{what} failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


SHELL_BLOCKS = [b for b in readme_blocks() if b.lang == "shell"]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.id for b in SHELL_BLOCKS])
def test_readme_shell_block_runs(block: Block, readme_env):
    if block.skip:
        pytest.skip(f"README.md:{block.line}: {block.skip}")
    commands = [ln for ln in block.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands, f"README.md:{block.line}: an empty shell block"
    for cmd in commands:
        run(["bash", "-c", cmd], readme_env, f"README.md:{block.line}: {cmd!r}")


PRELUDE = f"""
import main
main.now_timestamp = lambda: {EXAMPLE_TS!r}  # the README's example timestamp names a real run
assert main.main(["--config=NAME", "--no-wandb", "--save"]) == 0
ts = ts1 = ts2 = {EXAMPLE_TS!r}
"""


def test_readme_python_blocks_run_in_order(readme_env, tmp_path):
    from gpt2 import make_tiny_gpt2

    blocks = [b for b in readme_blocks() if b.lang == "python" and not b.skip]
    assert blocks, "the README shows the Python API"
    readme_env["HARNESS_GPT2"] = str(make_tiny_gpt2(tmp_path / "gpt2"))
    script = [PRELUDE, "ns = {}"]
    for b in blocks:  # each block compiled under its README line, so a traceback points at it
        script.append(f"exec(compile({b.code!r}, 'README.md:{b.line}', 'exec'), globals())")
    path = tmp_path / "readme_python.py"
    path.write_text("\n".join(script))
    run([sys.executable, str(path)], {**readme_env, "PYTHONPATH": str(REPO)}, "README.md's Python blocks")


def test_skip_markers_and_block_parsing():
    text = "x\n<!-- readme-test: skip: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```python\nprint(1)\n```\n```\nnot code\n```\n"
    a, b = readme_blocks(text)
    assert (a.lang, a.code, a.line, a.skip) == ("shell", "nvidia-smi", 3, "needs a GPU")
    assert (b.lang, b.code, b.skip) == ("python", "print(1)", None)
    assert tiny_config("TrainParams\nepochs=3\nlr=1e-3\n").splitlines() == ["TrainParams", *(f"{k}={v}" for k, v in TINY_OVERRIDES["TrainParams"].items()), "lr=1e-3"]


def test_every_skipped_block_says_why_and_most_run():
    blocks = readme_blocks()
    assert all(len(b.skip) > 10 for b in blocks if b.skip), [b.id for b in blocks if b.skip]
    assert sum(not b.skip for b in blocks) >= sum(bool(b.skip) for b in blocks)


def demo_figures_module():
    spec = importlib.util.spec_from_file_location("demo_figures", REPO / "scripts" / "demo_figures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_demo_figures_come_from_the_measured_run():
    """`make demo-figures` reruns the demo and writes docs/demo-figures.json; the README and docs/plain-run.md quote it."""
    mod = demo_figures_module()
    fig = json.loads(mod.OUT.read_text())
    assert fig["command"] == "python3 " + " ".join(mod.DEMO)
    for doc in (README, REPO / "docs" / "plain-run.md"):
        text = " ".join(doc.read_text().split())  # line breaks don't matter
        for phrase in mod.readme_figures(fig):
            assert phrase in text, f"{doc.name} should say {phrase!r} (docs/demo-figures.json); rerun `make demo-figures` and update it"
        assert f"{fig['train_wall_s']:.0f} s" in text or f"{fig['train_wall_s']:.1f} s" in text, doc.name  # the measured time, rounded or not


def test_readme_config_example_parses_and_its_mistakes_give_the_errors_shown(tmp_path, capsys):
    """The plain (untagged) blocks of "Config files": the example file, and the errors two typical slips produce."""
    import main
    from train.config import load_runs

    text = README.read_text()
    body = re.search(r"```\n(# configs/small\.txt\n.*?)```", text, re.S)[1]
    shown = re.search(r"```\n(error: .*?)```", text, re.S)[1].strip().splitlines()
    path = tmp_path / "small.txt"
    path.write_text(body)
    assert len(load_runs("small", tmp_path)) == 4, "the comment says 2 × 2 = 4 runs"
    mistakes = [body.replace("\ndim=", "\ndimm=", 1), body.replace("max_seq_len=32\n", "max_seq_len=32\nlr=1e-3\n", 1)]
    assert len(shown) == len(mistakes)
    for mistake, expected in zip(mistakes, shown):
        path.write_text(mistake)
        assert main.main(["--config=small", f"--configs-dir={tmp_path}", "--dry-run"]) == 2
        assert capsys.readouterr().err.strip().replace(str(path), "configs/small.txt") == expected
