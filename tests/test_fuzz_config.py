"""Fuzzed bad input: generated malformed config files each end with exit code 2 and one clear line.

Mostly in-process with `--dry-run` (fast); a few as real subprocesses without `--dry-run`, which
must also leave no run or log folder behind. Every generator below makes a file that is invalid
by construction (a targeted deletion, a swap, a bad literal, ...), never a random edit that might
happen to stay valid.
"""
from __future__ import annotations

import dataclasses
import random
import typing
from pathlib import Path

import pytest

from tests.conftest import REPO, Workspace
from train.config import SECTIONS
from core.params_base import field_types
from train.validate import field_problem, run_problem

BASE = """# a valid config that every case below breaks in one way
DataParams
task="copy"
n_train_samples=64
min_len=2
max_len=5
max_seq_len=16

TrainParams
epochs=1
batch_size=16
lr=3e-3

ModelParams
dim=16
n_layers=1
n_heads=2
max_seq_len=16
"""
ALL_KEYS = {k for cls in SECTIONS.values() for k in field_types(cls)}


def lines() -> list[str]:
    return BASE.strip().splitlines()


def kv_indices(ls: list[str]) -> list[int]:
    return [i for i, l in enumerate(ls) if "=" in l and not l.startswith("#")]


def section_of(ls: list[str], i: int) -> str:
    return next(l for l in reversed(ls[:i]) if l in SECTIONS)


def numeric_fields() -> list[tuple[str, str, bool]]:
    """(section, key, holds ints) for every int/float field."""
    out = []
    for sec, cls in SECTIONS.items():
        for key, tp in field_types(cls).items():
            args = typing.get_args(tp) or (tp,)
            if int in args and bool not in args:
                out.append((sec, key, True))
            elif float in args:
                out.append((sec, key, False))
    return out


def set_value(ls: list[str], section: str, key: str, value: str) -> list[str]:
    start = ls.index(section)
    end = next((j for j in range(start + 1, len(ls)) if ls[j] in SECTIONS), len(ls))
    for j in range(start + 1, end):
        if ls[j].split("=", 1)[0] == key:
            return ls[:j] + [f"{key}={value}"] + ls[j + 1 :]
    return ls[: start + 1] + [f"{key}={value}"] + ls[start + 1 :]


# --- generators: each returns the text (or bytes) of one invalid config -------------------------------
def delete_equals(r: random.Random) -> str:
    ls = lines()
    i = r.choice(kv_indices(ls))
    ls[i] = ls[i].replace("=", "", 1)
    return "\n".join(ls)


def delete_char_in_key(r: random.Random) -> str:
    ls = lines()
    while True:
        i = r.choice(kv_indices(ls))
        key, value = ls[i].split("=", 1)
        j = r.randrange(len(key))
        new = key[:j] + key[j + 1 :]
        if new not in field_types(SECTIONS[section_of(ls, i)]):
            ls[i] = f"{new}={value}"
            return "\n".join(ls)


def delete_header(r: random.Random) -> str:
    ls = lines()
    del ls[ls.index(r.choice(list(SECTIONS)))]
    return "\n".join(ls)


def swap_sections(r: random.Random) -> str:
    ls = lines()
    a, b = r.sample(list(SECTIONS), 2)
    ia, ib = ls.index(a), ls.index(b)
    ls[ia], ls[ib] = b, a
    return "\n".join(ls)


def delete_closing(r: random.Random) -> str:
    ls = lines()
    i = r.choice([i for i in kv_indices(ls) if ls[i].endswith('"')] or [0])
    ls[i] = ls[i][:-1]  # task="copy  → unterminated string
    return "\n".join(ls + ["ModelParams", "dim=[16,32"]) if r.random() < 0.5 else "\n".join(ls)


BAD_INT = ['"16"', "16.5", "True", '[16,"a"]', "{1:2}", "(16,", "1e", "0x", "[]", "[[16]]", 'b"16"', "1j", "16 32", "sixteen", "None", "{16}"]
BAD_FLOAT = ['"fast"', '[0.1,"x"]', "1e-3.5", "{}", "1j", "None", "0.1.2", "[[0.1]]", "1e999", "-1e999"]
BAD_STR = ["3", "[1,2]", '"unterminated', "a b", 'copy"', "None", "{'a':1}", "()"]


def bad_literal(r: random.Random) -> str:
    ls = lines()
    i = r.choice(kv_indices(ls))
    key = ls[i].split("=", 1)[0]
    tp = field_types(SECTIONS[section_of(ls, i)])[key]
    pool = BAD_STR if tp is str else BAD_FLOAT if tp is float else BAD_INT
    ls[i] = f"{key}={r.choice(pool)}"
    return "\n".join(ls)


def unknown_key(r: random.Random) -> str:
    ls = lines()
    name = "zz" + "".join(r.choice("abcdefghijklmnopqrstuvwxyz_0123456789") for _ in range(r.randint(2, 10)))
    assert name not in ALL_KEYS
    at = r.choice(kv_indices(ls))
    value = r.choice(["1", "0.5", "True", '"x"'])
    return "\n".join(ls[:at] + [f"{name}={value}"] + ls[at:])


HUGE_INT = ["1000000000000", "-1000000000000", "18446744073709551616", "9" * 60, "4294967296000"]
HUGE_FLOAT = ["1e308", "-1e308", "1e999", "1.7e308", "-9e300"]


def huge_value(r: random.Random) -> str:
    section, key, is_int = r.choice(numeric_fields())
    return "\n".join(set_value(lines(), section, key, r.choice(HUGE_INT if is_int else HUGE_FLOAT)))


def impossible_combination(r: random.Random) -> str:
    ls = lines()
    choice = r.randrange(5)
    if choice == 0:  # absurd memory
        ls = set_value(set_value(ls, "ModelParams", "dim", "65536"), "ModelParams", "n_layers", "4096")
    elif choice == 1:  # heads don't divide the width
        ls = set_value(ls, "ModelParams", "n_heads", "3")
    elif choice == 2:  # positional table shorter than the data
        ls = set_value(ls, "ModelParams", "max_seq_len", "8")
    elif choice == 3:
        ls = set_value(ls, "DataParams", "min_len", "9")
    else:  # absurd activations
        ls = set_value(set_value(ls, "TrainParams", "batch_size", "1048576"), "DataParams", "max_seq_len", "16777216")
        ls = set_value(ls, "ModelParams", "max_seq_len", "16777216")
    return "\n".join(ls)


def huge_sweep(r: random.Random) -> str:
    ls = lines()
    for section, key, value in [("TrainParams", "lr", "1e-3"), ("TrainParams", "warmup_steps", "5"), ("TrainParams", "min_lr_frac", "0.1"),
                                ("TrainParams", "beta1", "0.9"), ("ModelParams", "dim", "16")]:
        ls = set_value(ls, section, key, "[" + ",".join([value] * r.randint(7, 12)) + "]")
    return "\n".join(ls)


def duplicate_key(r: random.Random) -> str:
    ls = lines()
    i = r.choice(kv_indices(ls))
    return "\n".join(ls[: i + 1] + [ls[i]] + ls[i + 1 :])


def structural(r: random.Random) -> str:
    ls = lines()
    choice = r.randrange(6)
    if choice == 0:
        return "\n".join(["lr=0.1"] + ls)  # key before any section
    if choice == 1:
        ls[ls.index("TrainParams")] = r.choice(["[TrainParams", "TrainParam", "Train Params", "[trainparams]"])
        return "\n".join(ls)
    if choice == 2:
        return "\n".join(set_value(ls, "ModelParams", "dim", "[]"))  # sweeps over nothing
    if choice == 3:
        return "\n".join(set_value(ls, "ModelParams", "dim", "[" * 5000 + "1" + "]" * 5000))  # deep nesting
    if choice == 4:
        return "\n".join(set_value(ls, "ModelParams", "dim", "1" * 6000))  # beyond int parsing limits
    return "\n".join(set_value(ls, "DataParams", "task", '"' + "x" * 100_000 + '"'))  # not a task


def junk_text(r: random.Random) -> str:
    ls = lines()
    alphabet = "!$%^&*()<>?|~`{}[];:,.\\/@\x00\t" + "abcXYZ019"
    junk = r.choice("!$%^&*<>?|~`;:,.@\x00") + "".join(r.choice(alphabet) for _ in range(r.randint(1, 40)))
    if r.random() < 0.5:
        junk = junk.replace("#", "")
        junk = junk[: len(junk) // 2] + "=" + junk[len(junk) // 2 :]
    at = r.randrange(1, len(ls) + 1)
    return "\n".join(ls[:at] + [junk] + ls[at:])


def binary_junk(r: random.Random) -> bytes:
    data = bytes(r.randrange(256) for _ in range(r.randint(1, 300)))
    base = BASE.encode() if r.random() < 0.5 else b""
    return base + b"\xff\xfe" + data  # \xff never occurs in UTF-8


GENERATORS = [
    delete_equals, delete_char_in_key, delete_header, swap_sections, delete_closing, bad_literal, unknown_key, huge_value,
    impossible_combination, huge_sweep, duplicate_key, structural, junk_text, binary_junk,
]
N_CASES = 168  # 12 of each kind


def make_cases(folder: Path) -> list[tuple[str, str]]:
    r = random.Random(20240422)
    cases = []
    for i in range(N_CASES):
        gen = GENERATORS[i % len(GENERATORS)]
        content = gen(r)
        path = folder / f"fuzz-{i:03d}.txt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content + "\n", encoding="utf-8")
        cases.append((path.stem, gen.__name__))
    return cases


def test_base_config_is_valid(ws: Workspace, capsys):
    (ws.configs / "base.txt").write_text(BASE)
    assert ws.main("--config=base", "--dry-run") == 0
    assert "1 run(s)" in capsys.readouterr().out


def test_every_default_passes_validation():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert field_problem(section, f.name, getattr(cls(), f.name)) is None, (section, f.name)
    assert run_problem(SECTIONS["DataParams"](), SECTIONS["TrainParams"](), SECTIONS["ModelParams"]()) is None


def test_repo_configs_pass_validation(capsys):
    import main

    for path in sorted((REPO / "configs").glob("*.txt")):
        assert main.main([f"--config={path.stem}", "--dry-run"]) == 0, capsys.readouterr().err


def test_fuzzed_configs_each_give_one_line_and_exit_code_2(ws: Workspace, capsys):
    cases = make_cases(ws.configs)
    assert len(cases) >= 100
    messages = {}
    for name, kind in cases:
        rc = ws.main(f"--config={name}", "--dry-run", "--save")
        out, err = capsys.readouterr()
        lines_ = err.splitlines()
        assert rc == 2, f"{name} ({kind}) was accepted:\n{(ws.configs / (name + '.txt')).read_bytes()[:300]!r}\n{out}"
        assert len(lines_) == 1 and lines_[0].startswith("error: ") and "Traceback" not in err, f"{name} ({kind}): {err!r}"
        assert len(lines_[0]) < 1000, f"{name} ({kind}): the line is not short: {lines_[0][:200]}..."
        messages.setdefault(kind, lines_[0])
    assert set(messages) == {g.__name__ for g in GENERATORS}
    assert not ws.saves.exists() and not ws.logs.exists()


@pytest.mark.parametrize("kind", ["huge_value", "binary_junk", "impossible_combination", "unknown_key"])
def test_fuzzed_config_in_a_real_process_leaves_nothing_behind(ws: Workspace, kind):
    r = random.Random(kind)
    gen = next(g for g in GENERATORS if g.__name__ == kind)
    content = gen(r)
    path = ws.configs / "bad.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    res = ws.subprocess("--config=bad", "--save", "--no-wandb", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr.splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert not ws.saves.exists() and not ws.logs.exists()


def test_specific_messages(ws: Workspace, capsys):
    cases = {
        ("ModelParams", "dim", "1000000000000"): "dim=1000000000000 is out of range; expected an int >= 1 and <= 65536",
        ("TrainParams", "lr", "1e999"): "lr=inf is not a finite number",
        ("TrainParams", "lr", "0"): "lr=0.0 is out of range",
        ("ModelParams", "dropout", "1.5"): "dropout=1.5 is out of range",
        ("DataParams", "data_seed", "-3"): "data_seed=-3 is out of range",
        ("ModelParams", "n_heads", "3"): "n_heads=3 must divide dim=16",
    }
    for (section, key, value), fragment in cases.items():
        (ws.configs / "one.txt").write_text("\n".join(set_value(lines(), section, key, value)))
        assert ws.main("--config=one", "--dry-run") == 2
        err = capsys.readouterr().err
        assert fragment in err and "one.txt" in err, err
    absurd = set_value(set_value(lines(), "ModelParams", "dim", "65536"), "ModelParams", "n_layers", "4096")
    (ws.configs / "one.txt").write_text("\n".join(absurd))
    assert ws.main("--config=one", "--dry-run") == 2
    assert "GiB to train" in capsys.readouterr().err
    assert ws.main("--config=one", "--dry-run", "--seed=-1") == 2
    assert "--seed=-1 is out of range" in capsys.readouterr().err
