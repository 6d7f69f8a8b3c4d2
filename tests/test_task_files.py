"""A task is one file: dropped in a folder on $HARNESS_TASK_PATH, its generator, its own setting
(checked like every DataParams key) and its own metric work with no other edit."""
from __future__ import annotations

import dataclasses
import json
import textwrap

import pytest

from data import task_registry
from tests.conftest import tiny_config

TASK_FILE = '''
"""double: the input, then '>' and the input repeated double_times times."""
from data.syntheticdata import registered
from data.task_registry import task_metric, task_settings
from core.params_base import param


@task_settings
class DoubleSettings:
    double_times: int = param(2, "double: how many copies of the input the answer holds", min=1, max=8)


@registered
def double(rng, dp):
    s = "".join(rng.choice(dp.alphabet) for _ in range(rng.randint(dp.min_len, dp.max_len)))
    return f"{s}>{s * dp.double_times}"


@task_metric("double")
def answer_length(lm, dm):
    """Share of val questions whose greedy answer has the right length (needs the model)."""
    val = dm.task_data.splits["val"][:8]
    outs = lm.sample([v.split(">")[0] + ">" for v in val], max_seq_len=dm.data_params.max_seq_len, temperature=0)
    right = [len(o.split(">", 1)[-1]) == len(v.split(">", 1)[1]) for o, v in zip(outs, val)]
    return {"stat/val_double_len_ok": sum(right) / len(right)}
'''


@pytest.fixture
def task_dir(tmp_path):
    folder = tmp_path / "my-tasks"
    folder.mkdir()
    (folder / "double.py").write_text(textwrap.dedent(TASK_FILE))
    return folder


def _config(ws, name: str, setting: str) -> None:
    key, value = setting.split("=", 1)
    ws.write_config(name, tiny_config(task="double", max_seq_len=24), **{key: value})


def test_a_dropped_task_file_trains_with_its_setting_and_metric(ws, task_dir):
    _config(ws, "dbl", "double_times=3")
    env = {"HARNESS_TASK_PATH": str(task_dir), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = ws.subprocess("--config=dbl", "--no-wandb", "--save", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = ws.run_dirs()
    assert run_dir.relative_to(ws.saves).parts[:2] == ("dbl", "double")
    assert json.loads((run_dir / "params.json").read_text())["data"]["double_times"] == 3
    stats = json.loads((run_dir / "train_stats.json").read_text())
    values = [row[3] for row in stats["stat/val_double_len_ok"]]
    assert values and all(0 <= v <= 1 for v in values)


@pytest.mark.parametrize(
    "setting,message",
    [
        ("double_tims=3", "unknown key 'double_tims' in section DataParams; closest valid names: double_times"),
        ("double_times=9", "double_times=9 is out of range; expected an int >= 1 and <= 8"),
        ('double_times="x"', "double_times='x' has type str; expected int"),
    ],
)
def test_a_task_setting_is_checked_like_any_other(ws, task_dir, setting, message):
    _config(ws, "bad", setting)
    proc = ws.subprocess("--config=bad", "--dry-run", env={"HARNESS_TASK_PATH": str(task_dir)})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_without_the_task_path_the_setting_is_unknown(ws):
    _config(ws, "dbl", "double_times=3")
    proc = ws.subprocess("--config=dbl", "--dry-run")
    assert proc.returncode == 2 and "unknown key 'double_times'" in proc.stderr


def test_a_setting_named_like_an_existing_one_is_refused(monkeypatch):
    from data.data_params import DataParams

    @dataclasses.dataclass
    class Clash:
        alphabet: str = "xy"

    monkeypatch.setattr(task_registry, "TASK_SETTINGS", [Clash])
    with pytest.raises(TypeError, match="task setting 'alphabet' of .*Clash is already defined by DataParams; rename it"):
        task_registry.with_task_settings(DataParams)


def test_a_task_file_may_not_shadow_a_built_in_one(tmp_path, monkeypatch):
    (tmp_path / "basic.py").write_text("raise AssertionError('never imported')\n")
    monkeypatch.setenv("HARNESS_TASK_PATH", str(tmp_path))
    with pytest.raises(ImportError, match=r"basic\.py has the name of a built-in task file \(data/tasks/basic\.py\); rename it"):
        task_registry.load_task_modules.__wrapped__()


def test_every_built_in_task_file_is_found():
    from data.task_resolver import known_tasks

    assert set(task_registry.load_task_modules()) >= {"basic", "hmm", "arith", "tart"}
    assert {"copy", "reverse", "sort", "histogram", "hmm", "hmm_labelled", "arith", "tart"} <= set(known_tasks())
    assert "arith" in task_registry.TASK_METRICS
