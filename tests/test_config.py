"""Config files: sections, literals, sweeps, prefixes, and one-line errors with exit code 2."""
from __future__ import annotations

import os

import pytest

from train.config import expand_config_file, load_runs
from core.errors import UserError


def test_sweep_expands_to_cartesian_product(ws):
    ws.write_config("sw", dim="[16,32]", lr="[1e-3,3e-4]")
    runs = load_runs("sw", ws.configs)
    assert len(runs) == 4
    combos = {(r.model.dim, r.train.lr) for r in runs}
    assert combos == {(16, 1e-3), (16, 3e-4), (32, 1e-3), (32, 3e-4)}
    assert all(set(r.varying) == {"dim", "lr"} for r in runs)
    assert all(r.model.n_layers == 1 and r.data.task == "copy" for r in runs)


def test_literals_comments_and_bare_strings(ws):
    text = """
    [DataParams]  # brackets allowed
    task=reverse   # bare word for a string key
    stride=None
    alphabet="ab#c"  # a hash inside quotes stays
    TrainParams
    lr=1          # int accepted for a float key, stored as float
    grad_clip=None
    ModelParams
    tie_embeddings=False
    """
    p = ws.configs / "lit.txt"
    p.write_text("\n".join(l.strip() for l in text.splitlines()))
    (run,) = expand_config_file(p)
    assert run.data.task == "reverse" and run.data.stride is None and run.data.alphabet == "ab#c"
    assert run.train.lr == 1.0 and isinstance(run.train.lr, float) and run.train.grad_clip is None
    assert run.model.tie_embeddings is False


def test_prefix_runs_every_matching_file(ws):
    ws.write_config("grp")
    ws.write_config("grp-a", dim="[16,32]")
    ws.write_config("grp-b")
    ws.write_config("grpx")  # not NAME-*: must not be picked up
    runs = load_runs("grp", ws.configs)
    assert [r.config_name for r in runs] == ["grp", "grp-a", "grp-a", "grp-b"]


def test_task_flag_overrides_config(ws):
    ws.write_config("t")
    assert {r.data.task for r in load_runs("t", ws.configs, task="sort")} == {"sort"}


def test_dry_run_lists_runs_and_trains_nothing(ws, capsys):
    ws.write_config("sw", dim="[16,32]", lr="[1e-3,3e-4]")
    assert ws.main("--config=sw", "--dry-run", "--no-wandb") == 0
    out = capsys.readouterr().out
    assert "4 run(s)" in out and "lr=0.001, dim=16" in out and "lr=0.0003, dim=32" in out
    assert not ws.saves.exists() and not ws.logs.exists()


def test_ablate_adds_the_ablation_runs(ws, capsys):
    ws.write_config("ab")
    assert ws.main("--config=ab", "--dry-run", "--ablate") == 0
    out = capsys.readouterr().out
    assert "2 run(s)" in out and "ablation='custom-layer'" in out


ERRORS = [
    # (config override text or None, extra args, expected fragments of the one line)
    ({"dimm": "32"}, [], ["unknown key 'dimm'", "ModelParams", "closest valid names: dim", "bad.txt:"]),
    ({"lr@data": "0.1"}, [], ["lr belongs in section TrainParams", "not DataParams"]),
    ({"dim": '"big"'}, [], ["dim='big'", "expected int"]),
    ({"dim": "[]"}, [], ["empty list", "no runs"]),
    ({"dim": "3.5.1"}, [], ["not a Python literal", "expected int"]),
    ({"layer_architecture": '"rnn"'}, [], ["layer_architecture='rnn'", "torch-transformer"]),
    (None, ["--task=nosuchtask"], ["unknown task 'nosuchtask'", "copy", "reverse"]),
    (None, ["--task=copu"], ["did you mean copy"]),
    (None, ["--gpu-id=7"], ["--gpu-id=7", "drop --gpu-id"]),
]


def _bad_config(ws, override):
    from tests.conftest import TINY

    text = TINY
    if override:
        (key, value), = override.items()
        if key.endswith("@data"):
            text = text.replace("DataParams\n", f"DataParams\n{key[:-5]}={value}\n")
        elif key in text:
            ws.write_config("bad", **{key: value})
            return
        else:
            text = text.replace("ModelParams\n", f"ModelParams\n{key}={value}\n")
    (ws.configs / "bad.txt").write_text(text)


@pytest.mark.parametrize("override,extra,fragments", ERRORS)
def test_bad_input_is_one_line_exit_2(ws, capsys, override, extra, fragments):
    _bad_config(ws, override)
    code = ws.main("--config=bad", "--no-wandb", *extra)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for frag in fragments:
        assert frag in lines[0]
    assert not ws.saves.exists()


def test_missing_config_lists_existing(ws, capsys):
    ws.write_config("alpha")
    ws.write_config("beta")
    assert ws.main("--config=alpah") == 2
    err = capsys.readouterr().err
    assert "no config alpah.txt" in err and "did you mean alpha" in err and "alpha, beta" in err


def test_error_in_a_subprocess_has_no_traceback(ws):
    ws.write_config("bad", dim='"x"')
    proc = ws.subprocess("--config=bad", "--no-wandb", timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_help_documents_every_flag_and_imports_no_torch():
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "main.py", "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0
    for flag in ("--config", "--task", "--wandb-proj-name", "--save", "--save-dir", "--ablate", "--no-wandb", "--gpu-id", "--seed", "--dry-run"):
        assert flag in proc.stdout
    # every task file is imported (their settings are listed), but none pulls in a heavy library
    probe = "import sys, main; main.build_parser().format_help(); main.expand_runs; print(*(m in sys.modules for m in ('torch', 'lightning', 'numpy', 'data.tasks.tart')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO).stdout.strip()
    assert out == "False False False True"


def test_every_param_has_default_and_help():
    import dataclasses

    from train.config import SECTIONS

    for cls in SECTIONS.values():
        instance = cls()  # every field has a default
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
            assert hasattr(instance, f.name)


def test_wandb_username_in_main_sets_the_wandb_entity(ws, monkeypatch):
    """The seed's `wandb_username` line in main.py reaches wandb (as $WANDB_ENTITY); an explicit env var wins."""
    import main

    ws.write_config("t")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    monkeypatch.setattr(main, "wandb_username", "my-team")
    assert ws.main("--config=t", "--dry-run") == 0
    assert os.environ["WANDB_ENTITY"] == "my-team"
    monkeypatch.setenv("WANDB_ENTITY", "other")
    assert ws.main("--config=t", "--dry-run") == 0
    assert os.environ["WANDB_ENTITY"] == "other"


def test_unknown_task_names_the_folder_it_would_read():
    from data.task_resolver import check_task

    from data.custom_files import data_path_file

    with pytest.raises(UserError, match=r"or put copyy/data\.txt under your data folder, named in ") as e:
        check_task("copyy")
    assert "did you mean copy" in str(e.value) and str(data_path_file()) in str(e.value)


def test_help_lists_every_config_key_by_section_from_the_dataclasses():
    import dataclasses

    import main
    from train.config import SECTIONS

    text = main.build_parser().format_help()
    starts = [text.index(f"\n{section}\n") for section in SECTIONS]
    assert starts == sorted(starts)
    for i, (section, cls) in enumerate(SECTIONS.items()):
        block = text[starts[i] : starts[i + 1] if i + 1 < len(starts) else len(text)]
        for f in dataclasses.fields(cls):
            assert f"\n  {f.name} (" in block, (section, f.name)
    assert "precision (str; default '32-true'; one of '32-true', 'bf16-mixed', '16-mixed', '64-true')" in text
    assert "-- task file data/tasks/hmm.py --" in text
    assert "hmm_n_states (int; default 3; >= 1 and <= 26): hmm tasks" in " ".join(text.split())


def test_tiny_config_sets_replaces_and_places_keys(tmp_path):
    from tests.conftest import tiny_config
    from train.config import parse_config_file

    text = tiny_config(lr="[1e-3,3e-3]", max_seq_len=24, dropout=0.1, hmm_n_states=4)
    path = tmp_path / "t.txt"
    path.write_text(text)
    parsed = parse_config_file(path)
    assert parsed["TrainParams"]["lr"] == ([1e-3, 3e-3], True)
    assert parsed["DataParams"]["max_seq_len"] == ([24], False) and parsed["ModelParams"]["max_seq_len"] == ([24], False)
    assert parsed["ModelParams"]["dropout"] == ([0.1], False) and parsed["DataParams"]["hmm_n_states"] == ([4], False)
