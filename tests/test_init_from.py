"""TrainParams.init_from / freeze / LoRA end to end through main.py, on a tiny saved run and a tiny local GPT-2.

The base run (2 layers, dim 16, copy task) is trained once per module and copied into each
test's workspace; fine-tunes train a few steps on `reverse` (the same characters).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import Workspace, tiny_config
from tests.tiny_gpt2 import TEXTS, make_tiny_gpt2
from core.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # reproducible CPU results (the resume test compares bitwise)
BASE = tiny_config(n_layers=2)


def ft_text(train_lines: str, data_lines: str = "", text: str = BASE, task: str = "reverse") -> str:
    text = text.replace('task="copy"', f'task="{task}"').replace("TrainParams\n", "TrainParams\n" + train_lines.strip() + "\n")
    return text.replace("DataParams\n", "DataParams\n" + data_lines.strip() + "\n") if data_lines else text


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root))
        mp.setenv("HARNESS_DATA_CACHE", str(root / "data-cache"))
        ws = Workspace(root)
        ws.write_config("base", BASE)
        assert ws.main("--config=base", "--no-wandb", "--save") == 0
    (run,) = ws.run_dirs()
    return run


@pytest.fixture
def source(ws, base_run) -> Path:
    """The base run, copied under this test's save dir (so its timestamp resolves there)."""
    dst = ws.saves / base_run.relative_to(base_run.parents[3])
    shutil.copytree(base_run, dst)
    return dst


def ft_dirs(ws: Workspace) -> list[Path]:
    return [d for d in ws.run_dirs() if d.relative_to(ws.saves).parts[0] == "ft"]


def source_state(run: Path) -> dict[str, torch.Tensor]:
    from train.loading import load_lm

    return load_lm(run)[0].state_dict()


def test_fine_tune_starts_from_the_source_and_records_it(ws, source, capsys):
    from train.loading import weights_sha256
    from train.loading import load_lm

    ws.write_config("ft", ft_text(f'init_from="{source.name}@final"\nmax_steps=3', text=BASE.replace("lr=3e-3", "lr=1e-9")))
    assert ws.main("--config=ft", "--no-wandb", "--save") == 0
    (run,) = ft_dirs(ws)
    rec = json.loads((run / "init_from.json").read_text())
    assert rec["init_from"] == f"{source.name}@final" and rec["kind"] == "run" and rec["checkpoint"] == "final"
    assert rec["location"] == str(source.resolve()) and rec["tokenizer"] == "char"
    src = source_state(source)
    assert rec["weights_sha256"] == weights_sha256(src)
    lm, params = load_lm(run)
    assert params["model"]["n_layers"] == 2 and params["data"]["task"] == "reverse"
    for k, v in lm.state_dict().items():  # lr=1e-9: three steps leave the source's weights
        assert torch.allclose(v, src[k], atol=1e-6), k
    val = json.loads((run / "results.json").read_text())["val_loss"]
    first = json.loads((run / "train_stats.json").read_text())["stat/val_loss:main"][0]
    assert first[:2] == [0, 0] and first[3] == pytest.approx(rec["val_loss_before"])
    assert rec["val_loss_before"] == pytest.approx(val, abs=1e-5), "the val loss before training is the source's, on this task"
    assert f"val loss {rec['val_loss_before']:.4f} before training" in capsys.readouterr().out


@pytest.mark.parametrize("model_line, data_line, fragment", [
    ("n_heads=4", "", "ModelParams.n_heads=4 contradicts the source's n_heads=2"),
    ("", 'tokenizer="bpe"', "DataParams.tokenizer='bpe' contradicts the source's tokenizer 'char'"),
])
def test_config_contradicting_the_source_stops_before_training(ws, source, capsys, model_line, data_line, fragment):
    text = ft_text(f'init_from="{source}"', data_line)
    if model_line:
        text = text.replace("n_heads=2", model_line)
    ws.write_config("ft", text)
    assert ws.main("--config=ft", "--no-wandb", "--save") == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert ft_dirs(ws) == [] and not (ws.logs / "ft").exists()


def test_freeze_keeps_the_matched_weights_and_shows_the_split(ws, source, capsys):
    ws.write_config("ft", ft_text(f'init_from="{source}"\nfreeze=["blocks.0.*", "embed"]\nmax_steps=3', text=BASE.replace("lr=3e-3", "lr=3e-2")))
    assert ws.main("--config=ft", "--no-wandb", "--save") == 0
    (run,) = ft_dirs(ws)
    src, now = source_state(source), source_state(run)
    frozen = {k for k in src if k.startswith("decoder.layers.0.") or k in ("embed.weight", "out.weight")}
    assert all(torch.equal(now[k], src[k]) for k in frozen)
    assert all(not torch.equal(now[k], src[k]) for k in src if k.startswith("decoder.layers.1.") and k.endswith("weight"))
    n_frozen = sum(v.numel() for k, v in src.items() if k in frozen and k != "out.weight")  # out is embed (tied)
    total = json.loads((run / "results.json").read_text())["n_params"]
    assert f"{total:,} parameters ({total - n_frozen:,} trainable / {n_frozen:,} frozen)" in capsys.readouterr().out
    assert json.loads((run / "init_from.json").read_text())["freeze"] == ["blocks.0.*", "embed"]


def test_lora_run_saves_only_the_adapter_and_loads_merged(ws, source):
    import model_explorer

    train = f'init_from="{source}"\nlora_rank=2\nlora_targets=["blocks.*.self_attn.*"]\nmax_steps=3'
    ws.write_config("ft", ft_text(train, text=BASE.replace("lr=3e-3", "lr=3e-2")))
    assert ws.main("--config=ft", "--no-wandb", "--save") == 0
    (run,) = ft_dirs(ws)
    assert (run / "adapter.safetensors").is_file() and not (run / "model.safetensors").exists()
    lora = json.loads((run / "init_from.json").read_text())["lora"]
    assert lora["rank"] == 2 and len(lora["targets"]) == 4  # in_proj and out_proj of 2 layers
    lm, _, _, _ = model_explorer.get_model_by_path(run)
    src, now = source_state(source), lm.state_dict()
    assert sorted(now) == sorted(src), "merged: plain parameter names"
    changed = {k for k in src if not torch.equal(now[k], src[k])}
    assert changed == set(lora["targets"])
    model_explorer.verify_stable_load(run, verbose=False)  # the saved val loss is the merged model's
    copy = ws.root / "copied-saves"  # a copied save dir: the source is found by its timestamp under the copy
    shutil.copytree(ws.saves, copy)
    moved_run = copy / run.relative_to(ws.saves)
    shutil.move(str(source), str(ws.root / "moved"))
    assert torch.equal(model_explorer.get_model_by_path(moved_run)[0].state_dict()[lora["targets"][0]], now[lora["targets"][0]])
    shutil.rmtree(copy / source.relative_to(ws.saves))
    with pytest.raises(UserError, match="LoRA run on .* which is gone"):
        model_explorer.get_model_by_path(moved_run)


@pytest.mark.parametrize("train_lines, data_lines, fragment", [
    ("lora_rank=2", "", "lora_rank needs init_from"),
    ('init_from="{src}"\nlora_rank=2\nfreeze=["embed"]', "", "freeze has no effect with lora_rank > 0"),
    ('init_from="{src}"\nlora_rank=2\nstrategy="fsdp"', "", "do not run under strategy='fsdp' yet"),
    ('init_from="{src}"\nfreeze=["blocks.7.*"]', "", "TrainParams.freeze: pattern 'blocks.7.*' matches no parameter"),
    ('init_from="{src}"\nlora_rank=2\nlora_targets=["embed"]', "", "LoRA adapts weights inside the blocks"),
    ('init_from="{src}@1024"', "", "has no checkpoint"),  # this run kept only its final weights
    ('init_from="{src}"', 'alphabet="xyz"', "the source's tokenizer can't encode task 'reverse'"),
    ('init_from="2020-01-01--00-00-00"', "", "no saved run '2020-01-01--00-00-00'"),
    ('init_from="{src}"', "", "DataParams.max_seq_len=32 is longer than the source model reads (16 tokens)"),
])
def test_bad_init_settings_are_one_line(ws, source, capsys, train_lines, data_lines, fragment):
    text = ft_text(train_lines.format(src=source), data_lines).replace('alphabet="abcd"\n' if data_lines else "\0", "")
    if "max_seq_len=32" in fragment:
        text = text.replace("max_seq_len=16\n\nTrainParams", "max_seq_len=32\n\nTrainParams").split("ModelParams")[0]
    ws.write_config("ft", text)
    assert ws.main("--config=ft", "--no-wandb", "--save") == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    assert ft_dirs(ws) == []


@pytest.fixture
def tiny_gpt2(tmp_path) -> Path:
    return make_tiny_gpt2(tmp_path / "gpt2")


def test_gpt2_folder_starts_a_run_through_the_gpt2_code_path(ws, tiny_gpt2, tmp_path, monkeypatch):
    from transformers import GPT2LMHeadModel

    import model_explorer
    from train.config import RunConfig
    from data.data_params import DataParams
    from model.model_params import ModelParams
    from train.init_from import build_lm, resolve_config
    from train.loading import load_source
    from train.train_params import TrainParams

    src = load_source(str(tiny_gpt2))
    rc = resolve_config(RunConfig("t", DataParams(max_seq_len=32), TrainParams(init_from=str(tiny_gpt2)), ModelParams()), src)
    assert rc.model.dim == 32 and rc.model.n_layers == 2 and rc.data.tokenizer == str(tiny_gpt2)
    lm = build_lm(rc, src.tokenizer, src).eval()
    hf = GPT2LMHeadModel.from_pretrained(tiny_gpt2, attn_implementation="eager").eval()
    ids = torch.tensor([lm.tokenizer(TEXTS[1])])
    with torch.no_grad():
        assert (lm(ids) - hf(ids).logits).abs().max() < 1e-4

    data = tmp_path / "data"
    (data / "weather").mkdir(parents=True)
    (data / "weather" / "data.txt").write_text("\n".join(TEXTS * 10) + "\n")
    monkeypatch.setenv("HARNESS_DATA_PATH", str(data))
    ws.write_config("ft", f'DataParams\ntask="weather"\nmax_seq_len=32\nval_fraction=0.1\n\nTrainParams\ninit_from="{tiny_gpt2}"\nmax_steps=2\nbatch_size=8\nn_print_samples=0\n')
    assert ws.main("--config=ft", "--no-wandb", "--save") == 0
    (run,) = ft_dirs(ws)
    rec = json.loads((run / "init_from.json").read_text())
    assert rec["kind"] == "hf" and rec["location"] == str(tiny_gpt2.resolve()) and rec["tokenizer"] == str(tiny_gpt2.resolve())
    assert json.loads((run / "tokenizer.json").read_text())["kind"] == "pretrained"
    model_explorer.verify_stable_load(run, verbose=False)


def test_hub_name_offline_says_how_to_supply_a_folder(monkeypatch):
    from train.loading import load_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        load_source("EleutherAI/pythia-70m@step1000")
    msg = str(e.value)
    assert "unreachable" in msg and "save_pretrained(DIR)" in msg and "\n" not in msg


def test_init_settings_sweep_like_any_key(ws, source, capsys):
    ws.write_config("ft", ft_text(f'init_from=["{source}", "{source.name}@final"]\nfreeze=[["embed"], ["blocks.0.*", "embed"]]'))
    assert ws.main("--config=ft", "--dry-run") == 0
    assert "4 run(s)" in capsys.readouterr().out
    ws.write_config("ft", ft_text('freeze=["embed", "blocks.1.*"]'))
    assert ws.main("--config=ft", "--dry-run") == 0
    assert "1 run(s)" in capsys.readouterr().out, "one list of patterns is one value, not a sweep"


def test_lora_fine_tune_resumes_exactly(ws, source, monkeypatch, capsys):
    from safetensors.torch import load_file

    from tests.test_resume import stats_without_time
    from train import checkpointing

    train = f'init_from="{source}"\nlora_rank=2\nmax_steps=6\ncheckpoint_every_n_steps=3'
    ws.write_config("ft", ft_text(train, text=BASE.replace("lr=3e-3", "lr=3e-2")))
    save, snaps = checkpointing.SafeCheckpointIO.save_checkpoint, []

    def snapshot(self, ckpt, path, storage_options=None):
        save(self, ckpt, path, storage_options)
        if ckpt["global_step"] == 3:
            snaps.append(ws.root / "snap")
            shutil.copytree(Path(path).parent.parent, snaps[-1])

    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", snapshot)
    assert ws.main("--config=ft", "--save", "--no-wandb") == 0
    monkeypatch.setattr(checkpointing.SafeCheckpointIO, "save_checkpoint", save)
    (ref,) = ft_dirs(ws)
    assert ws.main(f"--resume={snaps[0]}", "--no-wandb") == 0
    assert "resuming" in capsys.readouterr().out
    a, b = load_file(ref / "adapter.safetensors"), load_file(snaps[0] / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert stats_without_time(ref) == stats_without_time(snaps[0])
    assert json.loads((snaps[0] / "init_from.json").read_text()) == json.loads((ref / "init_from.json").read_text())


def test_init_from_a_checkpoint_over_training(ws):
    """RUN@N starts from the weights the run kept after N samples (train/snapshots.py), not its final ones."""
    from safetensors.torch import load_model

    from train.loading import load_source
    from train.loading import load_lm
    from train.snapshots import checkpoint_file, checkpoint_ids

    ws.write_config("snap", tiny_config(snapshot_every_n_steps=4))
    assert ws.main("--config=snap", "--no-wandb", "--save") == 0
    (run,) = ws.run_dirs()
    first = checkpoint_ids(run)[0]
    src = load_source(f"{run}@{first}")
    kept, final = load_lm(run)[0], load_lm(run)[0]
    load_model(kept, str(checkpoint_file(run, first)), strict=True)
    assert src.checkpoint == str(first)
    assert all(torch.equal(src.state_dict[k], v) for k, v in kept.state_dict().items())
    assert not all(torch.equal(src.state_dict[k], v) for k, v in final.state_dict().items())


def test_a_moved_lora_runs_source_is_never_the_lora_run_itself(tmp_path):
    """Runs started in the same second share a timestamp: the source is found by its place under the
    copied save root, else as the one *other* run with its timestamp."""
    from train.loading import _moved_source

    def run(*parts: str) -> Path:
        d = tmp_path.joinpath("copy", *parts)
        d.mkdir(parents=True)
        for name in ("params.json", "results.json"):
            (d / name).write_text("{}")
        return d

    ts = "2026-12-01--06-10-17"
    lora, base = run("ft", "reverse", "run", ts), run("base", "copy", "run", ts)
    rec = {"weights_sha256": "0" * 64}
    assert _moved_source(lora, Path("/gone/saves/base/copy/run") / ts, rec) == base
    assert _moved_source(lora, Path("/gone/saves/elsewhere/task/run") / ts, rec) == base  # not at its place: by timestamp, not itself
    base.rename(tmp_path / "away")
    with pytest.raises(UserError, match="which is gone"):
        _moved_source(lora, Path("/gone/saves/base/copy/run") / ts, rec)
