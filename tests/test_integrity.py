"""The corruption matrix: every file of a saved run and of a run in progress × every way it can be damaged.

One tiny run is trained once per session (`trained`): its save dir is copied at its first
checkpoint (a run in progress, with run index) and again when finished (a saved run). Each case
damages one file of a fresh copy and requires a refusal naming that file — never a silent load —
and, for runs in progress, exit code 2 with one `error:` line before any training step. The
intact copies load and resume (bit-identically, from a moved save dir), so the refusals are not
just everything failing. docs/resume.md has the same table in words.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import Workspace, torch_threads
from tests.test_locks import other_process, write_lock  # noqa: F401  (other_process is a fixture)
from tests.test_resume import assert_same_run, config
from train import checkpointing
from core.errors import UserError
from train.integrity import content_checksum, sha256_file
from train.report import build_report
from train.loading import load_run

DAMAGES = ("missing", "empty", "truncated", "flipped", "wrong_shape", "invalid")


@dataclass
class Trained:
    ws: Workspace
    snapshot: Path  # a copy of the save dir taken at the first checkpoint (step 5): a run in progress
    saved: Path  # the finished saved run


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    ws = Workspace(tmp_path_factory.mktemp("trained"))
    ws.write_config("m", config(epochs=1, every=5, val="1.0"))
    snapshot = ws.root / "snapshot"
    real = checkpointing.RunCheckpoint._save_checkpoint

    def save_and_copy(self, trainer, filepath):
        real(self, trainer, filepath)  # the checkpoint, then run_state.json naming its step
        if not snapshot.exists():
            shutil.copytree(ws.saves, snapshot, ignore=shutil.ignore_patterns(".lock*"))  # as a killed process leaves it, minus its lock

    checkpointing.RunCheckpoint._save_checkpoint = save_and_copy
    try:
        with torch_threads(1):
            assert ws.main("--config=m", "--save", "--no-wandb") == 0
    finally:
        checkpointing.RunCheckpoint._save_checkpoint = real
    (saved,) = ws.run_dirs()
    return Trained(ws, snapshot, saved)


def flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def damage_bytes(p: Path, how: str) -> None:
    """The damages every file can get, whatever it holds."""
    if how == "missing":
        p.unlink()
    elif how == "empty":
        p.write_bytes(b"")
    elif how == "truncated":
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif how == "flipped":
        flip(p)
    elif how == "wrong_shape":
        p.write_text("[1, 2]")
    else:
        raise ValueError(how)


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("error:") and "Traceback" not in err[0]
    return err[0]


# --- saved runs ------------------------------------------------------------------------------
def _update_manifest(run: Path, name: str) -> None:
    """Make an edit consistent: the manifest vouches for the new content."""
    mpath = run / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest[name] = {"sha256": sha256_file(run / name), "bytes": (run / name).stat().st_size}
    mpath.write_text(json.dumps(manifest))


def _edit_json(p: Path, change) -> None:
    obj = json.loads(p.read_text())
    change(obj)
    p.write_text(json.dumps(obj))


def _small_weights(p: Path) -> None:
    from safetensors.torch import save_file

    save_file({"lm.embedding.weight": torch.zeros(2, 2)}, str(p))


# consistent but invalid contents: each edit is recorded in the manifest, so only the content checks can refuse it
SAVED_INVALID = {
    "model.safetensors": [_small_weights],
    "tokenizer.json": [
        lambda p: _edit_json(p, lambda d: d.update(chars=d["chars"][:-1])),  # one char fewer: the weights no longer fit
        lambda p: _edit_json(p, lambda d: d.update(kind="nope")),
        lambda p: p.write_text("[" * 100_000 + "]" * 100_000),  # nesting deep enough to break json
    ],
    "params.json": [
        lambda p: _edit_json(p, lambda d: d["model"].update(dim=32)),
        lambda p: _edit_json(p, lambda d: d["model"].update(dim="16")),
        lambda p: _edit_json(p, lambda d: d["model"].update(n_heads=3)),
        lambda p: _edit_json(p, lambda d: d.update(seed="x")),
        lambda p: _edit_json(p, lambda d: d.update(data=[])),
    ],
    "train_stats.json": [lambda p: p.write_text('{"stat/train_loss:main": [[1, 2]]}')],
    "results.json": [lambda p: p.write_text('{"val_loss": "low", "n_params": []}')],
    "versions.json": [lambda p: p.write_text('{"torch": 1}')],
}
# how each file of a saved run is read: load_run (model_explorer, verify_stable_load) or the report
READ_BY_REPORT_ONLY = {"results.json"}
NOT_READ = {"versions.json"}  # informational: only the manifest guards it


def _saved_cases():
    for name in ["manifest.json", *SAVED_INVALID]:
        for how in DAMAGES:
            variants = SAVED_INVALID.get(name, []) if how == "invalid" else [None]
            if name == "manifest.json" and how == "invalid":
                variants = list(MANIFEST_INVALID)
            for i, _ in enumerate(variants):
                yield pytest.param(name, how, i, id=f"{name}-{how}{i if len(variants) > 1 else ''}")


MANIFEST_INVALID = {
    "no entries": lambda m: m.clear(),
    "no weights entry": lambda m: m.pop("model.safetensors"),
    "entry outside the run": lambda m: m.update({"../../../../etc/passwd": {"sha256": "0" * 64, "bytes": 1}}),
    "hash of the wrong form": lambda m: m["params.json"].update(sha256="xyz"),
}


@pytest.mark.parametrize("name,how,variant", list(_saved_cases()))
def test_damaged_saved_run_is_refused_naming_the_file(trained, tmp_path, name, how, variant, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained.saved, run)
    p = run / name
    if how != "invalid":
        damage_bytes(p, how)
        if how == "wrong_shape" and name != "manifest.json":
            _update_manifest(run, name)  # valid JSON of the wrong shape, vouched for: the content check must refuse it
    elif name == "manifest.json":
        _edit_json(p, list(MANIFEST_INVALID.values())[variant])
    else:
        SAVED_INVALID[name][variant](p)
        _update_manifest(run, name)
    if how in ("invalid", "wrong_shape") and name in NOT_READ:
        load_run(run)  # nothing reads it: the run still loads, and the manifest vouches for it as it is
        return
    if how in ("invalid", "wrong_shape") and name in READ_BY_REPORT_ONLY:
        load_run(run)  # the model does not depend on it ...
        other = tmp_path / "other"
        shutil.copytree(trained.saved, other)
        with pytest.raises(UserError):  # ... and the report leaves it out, naming it
            build_report([run], tmp_path)
        assert len(build_report([run, other], tmp_path).rows) == 1
        out = capsys.readouterr().out
        assert str(p) in out or str(run) in out, out
        return
    with pytest.raises(UserError) as e:
        load_run(run)
    msg = str(e.value)
    assert name in msg and "\n" not in msg, msg
    if name in ("params.json", "results.json", "train_stats.json") and how not in ("invalid", "wrong_shape"):
        with pytest.raises(UserError):  # the report checks the files it reads against the manifest too
            build_report([run], tmp_path)


def test_intact_saved_run_loads_and_reports(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained.saved, run)  # moved: nothing in it points back to where it was written
    lm, _, stats, params = load_run(run)
    assert stats and params["model"]["dim"] == 16
    assert len(build_report([run], tmp_path).rows) == 1


# --- runs in progress --------------------------------------------------------------------------
def _in_progress(saves: Path) -> Path:
    (state,) = [p.parent for p in saves.rglob("run_state.json")]
    return state


def _rewrite_state(p: Path, change) -> None:
    """An edit of run_state.json made consistent: its checksum recomputed."""
    obj = json.loads(p.read_text())
    change(obj)
    obj["checksum"] = content_checksum(obj)
    p.write_text(json.dumps(obj))


def _reshaped_checkpoint(p: Path) -> None:
    ck = torch.load(p, weights_only=True)
    k = next(iter(ck["state_dict"]))
    ck["state_dict"][k] = torch.zeros(3)
    torch.save(ck, p)
    _rehash(p)


def _foreign_checkpoint(p: Path) -> None:
    torch.save({"state_dict": {}}, p)
    _rehash(p)


def _rehash(p: Path) -> None:
    Path(f"{p}.sha256").write_text(json.dumps({"sha256": [sha256_file(p)]}))


STATE_FILES = {
    "checkpoints/last.ckpt": [_reshaped_checkpoint, _foreign_checkpoint],
    "checkpoints/last.ckpt.sha256": [lambda p: p.write_text(json.dumps({"sha256": ["0" * 64]}))],
    "run_state.json": [
        lambda p: _rewrite_state(p, lambda s: s["params"]["train"].update(lr="fast")),
        lambda p: _rewrite_state(p, lambda s: s["params"]["model"].update(dim=32)),  # the checkpoint no longer fits
        lambda p: _rewrite_state(p, lambda s: s.update(seed="x")),
        lambda p: _rewrite_state(p, lambda s: s.pop("params")),
        lambda p: _edit_json(p, lambda s: s["params"]["train"].update(lr=1.0)),  # edited, checksum left as it was
    ],
}


def _state_cases():
    for name, invalid in STATE_FILES.items():
        for how in DAMAGES:
            variants = invalid if how == "invalid" else [None]
            for i, _ in enumerate(variants):
                yield pytest.param(name, how, i, id=f"{name.split('/')[-1]}-{how}{i if len(variants) > 1 else ''}")


@pytest.mark.parametrize("name,how,variant", list(_state_cases()))
def test_damaged_run_in_progress_is_refused_naming_the_file(trained, tmp_path, name, how, variant, capsys, monkeypatch):
    saves = tmp_path / "saves"
    shutil.copytree(trained.snapshot, saves)
    state = _in_progress(saves)
    p = state / name
    if how == "invalid":
        STATE_FILES[name][variant](p)
    else:
        damage_bytes(p, how)
    import lightning

    def no_training(*a, **k):  # any refusal must come before a single step is trained
        raise AssertionError("training started on a damaged run")

    monkeypatch.setattr(lightning.pytorch.loops.fit_loop._FitLoop, "advance", no_training)
    ws = trained.ws
    rc = ws.main(f"--resume={state}", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}", "--no-wandb")
    line = one_error(capsys)
    assert rc == 2
    shown = Path(name).name if name != "checkpoints/last.ckpt.sha256" else "last.ckpt"  # a bad record refuses the checkpoint it vouches for
    assert shown in line, line


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_run_index_entry_is_refused(trained, tmp_path, how, capsys):
    saves = tmp_path / "saves"
    shutil.copytree(trained.snapshot, saves)
    (entry,) = (saves / ".run-index").glob("*.json")
    if how == "invalid":
        _rewrite_state(entry, lambda e: e.update(state_dir="m"))  # consistent, but names a folder that is no run
    else:
        damage_bytes(entry, how)
    ws = trained.ws
    rc = ws.main("--config=m", "--save", "--resume", "--dry-run", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}")
    if how == "missing":  # no record: the run counts as not started (its folder stays untouched)
        assert rc == 0 and "would run" in capsys.readouterr().out
        return
    line = one_error(capsys)
    assert rc == 2 and (entry.name in line or "run_state.json" in line), line


def test_unverified_checkpoint_needs_the_flag(trained, tmp_path, capsys):
    """Item 6: one flipped bit and no .sha256 used to resume silently with wrong tensors."""
    saves = tmp_path / "saves"
    shutil.copytree(trained.snapshot, saves)
    state = _in_progress(saves)
    ckpt = state / "checkpoints" / "last.ckpt"
    Path(f"{ckpt}.sha256").unlink()
    args = (f"--resume={state}", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}", "--no-wandb")
    assert trained.ws.main(*args) == 2
    line = one_error(capsys)
    assert "can't be verified" in line and "--allow-unverified" in line and str(ckpt) in line
    assert trained.ws.main(*args, "--allow-unverified") == 0  # intact bytes: loads when the user says so
    assert "warning: loading unverified checkpoint" in capsys.readouterr().out


def test_moved_run_in_progress_resumes_exactly(trained, tmp_path, capsys):
    """The snapshot was taken in another folder: copied elsewhere, it resumes to the same weights and stats."""
    saves = tmp_path / "elsewhere" / "saves"
    shutil.copytree(trained.snapshot, saves)
    with torch_threads(1):
        rc = trained.ws.main("--config=m", "--save", "--resume", "--no-wandb", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}")
    assert rc == 0
    out = capsys.readouterr().out
    assert "resuming" in out
    (run,) = [p.parent for p in saves.rglob("manifest.json")]
    assert_same_run(run, trained.saved)
    assert str(trained.ws.saves) not in (run / "params.json").read_text()


def test_checkpoint_replaced_by_a_folder_is_refused(trained, tmp_path, capsys):
    saves = tmp_path / "saves"
    shutil.copytree(trained.snapshot, saves)
    state = _in_progress(saves)
    ckpt = state / "checkpoints" / "last.ckpt"
    ckpt.unlink()
    ckpt.mkdir()
    assert trained.ws.main(f"--resume={state}", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}", "--no-wandb") == 2
    line = one_error(capsys)
    assert "is a folder, not a file" in line and "disk" not in line


def test_copied_save_dir_is_judged_by_its_own_runs(trained, tmp_path, capsys):
    """A finished save dir copied elsewhere (the original then deleted): --resume skips its runs, the report lists each once."""
    original = tmp_path / "original"
    shutil.copytree(trained.ws.saves, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    args = ("--config=m", "--save", "--resume", "--no-wandb", f"--save-dir={copy}", f"--log-dir={tmp_path / 'logs'}")
    assert trained.ws.main(*args) == 0
    out = capsys.readouterr().out
    assert "skipped, already finished" in out and str(copy) in out and "report of 1 run(s)" in out
    (md,) = copy.glob("m/report.md")
    assert "1 run(s)" in md.read_text()


def test_second_process_on_a_run_in_progress_stops_at_once(trained, tmp_path, other_process, capsys):
    saves = tmp_path / "saves"
    shutil.copytree(trained.snapshot, saves)
    (state,) = [p.parent for p in saves.rglob("run_state.json")]
    write_lock(state, other_process)
    before = (state / "run_state.json").read_bytes()
    rc = trained.ws.main(f"--resume={state}", f"--save-dir={saves}", f"--log-dir={tmp_path / 'logs'}", "--no-wandb")
    line = one_error(capsys)
    assert rc == 2 and f"process {other_process}" in line and str(state) in line
    assert (state / "run_state.json").read_bytes() == before, "the holder's state is untouched"
