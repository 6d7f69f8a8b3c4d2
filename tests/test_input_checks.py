"""Bad configs found by the hostile-user pass (issue 16): each stops before anything is built, with one line and exit 2."""
from __future__ import annotations

import pytest

from tests.conftest import TINY, Workspace
from tests.test_integrity import one_error


def refused(ws: Workspace, capsys, *args: str) -> str:
    assert ws.main(*args, "--no-wandb") == 2
    line = one_error(capsys)
    assert not ws.saves.exists() and not ws.logs.exists(), "nothing created"
    return line


@pytest.mark.parametrize("text", ["", "# only a comment\n\n   # another\n", "DataParams\nTrainParams\n"])
def test_config_without_settings_is_refused(ws: Workspace, capsys, text):
    (ws.configs / "e.txt").write_text(text)
    assert "no settings" in refused(ws, capsys, "--config=e", "--save")


@pytest.mark.parametrize("pattern", ["*", "t?", "[t]"])
def test_config_wildcards_are_refused(ws: Workspace, capsys, pattern):
    ws.write_config("t")
    assert "wildcard" in refused(ws, capsys, f"--config={pattern}")


def test_byte_order_mark_is_accepted(ws: Workspace, capsys):
    (ws.configs / "bom.txt").write_bytes(b"\xef\xbb\xbf" + TINY.lstrip().encode())
    assert ws.main("--config=bom", "--dry-run") == 0
    assert "1 run(s)" in capsys.readouterr().out


def test_out_of_range_float_given_as_int_is_described_as_a_number(ws: Workspace, capsys):
    ws.write_config("g", TINY.replace("lr=3e-3", "lr=3e-3\ngrad_clip=0"))
    line = refused(ws, capsys, "--config=g")
    assert "grad_clip=0.0 is out of range; expected a number > 0" in line and "an int" not in line


def test_empty_alphabet_is_refused(ws: Workspace, capsys):
    ws.write_config("a", alphabet='""')
    assert 'alphabet="" is empty' in refused(ws, capsys, "--config=a")


def test_run_bigger_than_this_machine_is_refused_with_the_estimate(ws: Workspace, monkeypatch, capsys):
    """Issue example: dim=8192, n_layers=64 asked the allocator for ~200 GB; now the parser says so first."""
    import train.validate

    ws.write_config("big", dim="8192", n_layers="64", n_heads="64")
    monkeypatch.setattr(train.validate, "machine_memory_bytes", lambda: 23 * 2**30)
    line = refused(ws, capsys, "--config=big", "--save")
    assert "would need about" in line and "GiB to train" in line and "this machine has 23.0 GiB" in line and "lower dim" in line
    # the tiny config fits a machine with little memory, and the check follows the machine's figure
    ws.write_config("small")
    assert ws.main("--config=small", "--dry-run") == 0
    monkeypatch.setattr(train.validate, "machine_memory_bytes", lambda: 2**20)  # 1 MiB
    capsys.readouterr()
    assert "this machine has 1 MiB" in refused(ws, capsys, "--config=small", "--dry-run")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/meminfo"), reason="Linux only")
def test_memory_figure_is_physical_memory_or_a_lower_container_limit(tmp_path, monkeypatch):
    import train.validate
    from train.validate import machine_memory_bytes

    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    unlimited, limited = tmp_path / "unlimited", tmp_path / "limited"
    unlimited.write_text("max\n")
    limited.write_text(f"{2**30}\n")
    monkeypatch.setattr(train.validate, "CGROUP_LIMIT_FILES", (str(unlimited),))
    assert abs(machine_memory_bytes() - total) < 0.05 * total
    monkeypatch.setattr(train.validate, "CGROUP_LIMIT_FILES", (str(unlimited), str(limited)))
    assert machine_memory_bytes() == 2**30
