"""Scaling out (train/distributed.py, train/sharding.py, docs/scaling.md).

* impossible hardware settings → one line, before anything is built (made-up machines, no GPU needed);
* which process is rank 0, from the launchers' environment variables;
* each rank's share of the training order, also when resuming mid-epoch;
* 2-process DDP on CPU (gloo) against 1 process with the same global batch: same loss curve,
  one run dir, one train_stats, sample counts over all ranks, rank-0-only output.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from tests.conftest import tiny_config
from train.distributed import Hardware, env_rank_zero, global_mean, plan_scaling, rank_seed
from core.errors import UserError
from train.train_params import TrainParams

CPU_BF16 = Hardware(n_gpus=0, cpu_bf16=True, cpu_count=4, cxx="/usr/bin/g++")
CPU_OLD = Hardware(n_gpus=0, cpu_bf16=False, cpu_count=4, cxx=None)
TWO_A100 = Hardware(n_gpus=2, gpu_name="NVIDIA A100", gpu_bf16=True, cpu_bf16=True, cpu_count=32, cxx="/usr/bin/g++", triton=True)
TWO_V100 = Hardware(n_gpus=2, gpu_name="Tesla V100", gpu_bf16=False, cpu_count=32, cxx="/usr/bin/g++", triton=True)


def plan(hw: Hardware, gpu_ids=None, env=None, argv0="main.py", **train):
    return plan_scaling(TrainParams(**train), gpu_ids, hw, env={} if env is None else env, argv0=argv0)


# --- impossible combinations ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw, train, gpu_ids, env, words",
    [
        (CPU_OLD, {"precision": "bf16-mixed"}, None, {}, ["bf16-mixed", "CPU", "32-true"]),
        (CPU_BF16, {"precision": "16-mixed"}, None, {}, ["16-mixed", "needs a GPU", "bf16-mixed"]),
        (TWO_A100, {"precision": "16-mixed", "accelerator": "cpu"}, None, {}, ["16-mixed", "needs a GPU"]),
        (TWO_V100, {"precision": "bf16-mixed"}, None, {}, ["Tesla V100", "bfloat16", "16-mixed"]),
        (CPU_BF16, {"strategy": "fsdp", "devices": 2}, None, {}, ["fsdp", "GPUs", "ddp"]),
        (CPU_BF16, {"accelerator": "gpu"}, None, {}, ["no CUDA GPU", "accelerator='cpu'"]),
        (TWO_A100, {"devices": 8}, None, {}, ["devices=8", "2 GPU"]),
        (CPU_BF16, {"devices": 16, "accelerator": "cpu"}, None, {}, ["devices=16", "4 CPU core"]),
        (CPU_BF16, {"devices": 0}, None, {}, ["devices=0", "positive"]),
        (CPU_BF16, {"num_nodes": 0}, None, {}, ["num_nodes=0"]),
        (TWO_A100, {"accelerator": "cpu"}, [0, 1], {}, ["--gpu-id", "accelerator='cpu'"]),
        (TWO_A100, {"devices": 1}, [0, 1], {}, ["--gpu-id lists 2", "devices=1"]),
        (TWO_A100, {"devices": 2}, None, {"WORLD_SIZE": "8"}, ["WORLD_SIZE=8", "2 × 1 = 2", "--nproc-per-node"]),
        (TWO_A100, {"devices": 2, "num_nodes": 2}, None, {"SLURM_NTASKS": "8", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2"},
         ["SLURM started 4", "2 node", "--ntasks-per-node"]),
        (CPU_OLD, {"compile": True}, None, {}, ["compile=True", "C++ compiler"]),
        (replace(TWO_A100, triton=False), {"compile": True}, None, {}, ["compile=True", "triton"]),
    ],
)
def test_impossible_combinations_are_one_clear_line(hw, train, gpu_ids, env, words):
    with pytest.raises(UserError) as e:
        plan(hw, gpu_ids, env, **train)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_several_processes_need_the_command_line():
    """Lightning starts ranks 1.. by re-running the command line: from a notebook or pytest that would go wrong."""
    with pytest.raises(UserError, match="python main.py"):
        plan(CPU_BF16, argv0="/usr/lib/ipykernel_launcher.py", devices=2, accelerator="cpu")
    # started by torchrun (or as one of Lightning's re-launched ranks): fine from anywhere
    p = plan(CPU_BF16, argv0="-c", env={"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, devices=2, accelerator="cpu")
    assert p.world_size == 2


def test_possible_combinations_resolve_to_trainer_kwargs():
    p = plan(CPU_BF16, precision="bf16-mixed")
    assert p.trainer_kwargs() == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": "bf16-mixed"}
    p = plan(TWO_A100, precision="bf16-mixed", strategy="fsdp", compile=True)
    assert (p.accelerator, p.devices, p.world_size, p.compile) == ("gpu", 2, 2, True)  # devices='auto' = every GPU
    p = plan(TWO_A100, [0, 1], devices=2)
    assert p.trainer_kwargs()["devices"] == [0, 1] and p.accelerator == "gpu"
    p = plan(TWO_V100, precision="16-mixed", devices=-1, num_nodes=4, env={"WORLD_SIZE": "8"}, strategy="ddp")
    assert p.world_size == 8
    # a SLURM job whose tasks match; an interactive SLURM shell is not a launcher
    env = {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2", "SLURM_PROCID": "3"}
    assert plan(TWO_A100, env=env, devices=2, num_nodes=2).world_size == 4
    assert plan(TWO_A100, env={**env, "SLURM_JOB_NAME": "interactive"}, devices=1).world_size == 1
    assert "global batch = 16 per device × 4 × 2 accumulated = 128" in plan(TWO_A100, env=env, devices=2, num_nodes=2).describe(16, 2)


def test_bad_combination_stops_main_before_any_folder(ws, capsys):
    ws.write_config("c", accelerator='"cpu"', precision='"16-mixed"')
    assert ws.main("--config=c", "--save", "--no-wandb") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "16-mixed" in err[0] and err[0].startswith("error:"), err
    assert not ws.saves.exists() and not ws.logs.exists()
    # an unknown strategy is caught by the config parser, with the choices
    ws.write_config("d", strategy='"horovod"')
    assert ws.main("--config=d", "--no-wandb") == 2
    assert "fsdp" in capsys.readouterr().err


# --- which process ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env, zero",
    [
        ({}, True),
        ({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, True),  # torchrun rank 0
        ({"RANK": "3", "LOCAL_RANK": "1"}, False),  # torchrun
        ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, False),  # Lightning's re-launched rank
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # first process of the second node
        ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}, False),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}, True),
    ],
)
def test_rank_zero_from_the_launchers_environment(env, zero):
    assert env_rank_zero(env) is zero


def test_rank_seeds_differ_by_rank_and_repeat():
    assert rank_seed(0, 0, 0) != rank_seed(0, 1, 0) != rank_seed(1, 1, 0)
    assert rank_seed(7, 1, 100) == rank_seed(7, 1, 100)
    assert global_mean(None, {"main": 1.0}) == {"main": 1.0}  # one process: untouched


# --- each rank's share of the data ----------------------------------------------------------------------
def test_shards_make_up_the_one_process_batches_also_after_a_resume():
    from train.checkpointing import ResumableSampler
    from train.sharding import ShardedSampler

    n, batch, world = 50, 4, 2
    whole = list(ResumableSampler(n, seed=3, batch_size=batch * world))
    samplers = [ResumableSampler(n, seed=3, batch_size=batch) for _ in range(world)]
    shards = [list(ShardedSampler(s, world, r)) for r, s in enumerate(samplers)]
    assert len(shards[0]) == len(shards[1]) == len(ShardedSampler(samplers[0], world, 0)) == 25
    for k in range(25 // batch):  # global batch k = batch k of the one-process run
        got = sorted(i for sh in shards for i in sh[k * batch : (k + 1) * batch])
        assert got == sorted(whole[k * batch * world : (k + 1) * batch * world])
    # epoch 1 differs from epoch 0 and is the same on both ranks' samplers (set_epoch reaches the inner sampler)
    sh = [ShardedSampler(s, world, r) for r, s in enumerate(samplers)]
    for s in sh:
        s.set_epoch(1)
    ep1 = [list(s) for s in sh]
    assert ep1[0] != shards[0] and sorted(ep1[0] + ep1[1]) == list(range(n))
    # resume after 3 batches of epoch 1: both ranks continue where the global order stood
    pos = samplers[0].position(epoch=1, batches_done=3)
    assert pos["replicas"] == world
    fresh = [ResumableSampler(n, seed=3, batch_size=batch) for _ in range(world)]
    rest = []
    for r, s in enumerate(fresh):
        s.resume(pos)
        wrapped = ShardedSampler(s, world, r)
        wrapped.set_epoch(1)
        rest.append(list(wrapped))
    assert rest[0] == ep1[0][3 * batch :] and rest[1] == ep1[1][3 * batch :]


# --- 2 processes vs 1 ---------------------------------------------------------------------------------------
# Fixed-length samples: every rank's share of a global batch has the same number of target tokens, so
# the mean of the ranks' mean losses (what DDP's averaged gradient minimises) is the global batch's mean.
DDP_BASE = tiny_config(
    n_test_samples=8, min_len=4, max_len=4, epochs=2, val_check_interval=4, accelerator='"cpu"', devices=1, strategy='"auto"',
    snapshot_every_n_steps=4,
)
LOSS_TOL = 1e-5  # nats; measured ≤ 4e-7 here: float32 sums in another order (gloo all-reduce, 1 thread per rank)


def _stats(run_dir):
    return json.loads((run_dir / "train_stats.json").read_text())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPU cores for 2 processes")
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(ws, tmp_path):
    ws.write_config("one", DDP_BASE)
    assert ws.main("--config=one", "--save", "--no-wandb", f"--save-dir={tmp_path / 'one'}") == 0
    (one,) = sorted(p.parent for p in (tmp_path / "one").rglob("manifest.json"))

    ws.write_config("two", DDP_BASE, batch_size="16", devices="2", strategy='"ddp"')
    r = ws.subprocess("--config=two", "--save", "--no-wandb", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]

    # rank 0 alone wrote: one run dir, one train_stats, one log folder, one index entry, one report
    runs = ws.run_dirs()
    assert len(runs) == 1, runs
    assert len(list(ws.saves.rglob("train_stats.json"))) == 1
    assert not list(ws.saves.rglob("run_state.json")), "a second rank left a run state behind"
    assert len(list((ws.logs / "two").rglob("metrics.csv"))) == 1
    assert len(list((ws.logs / "two" / "copy" / "run").iterdir())) == 1
    assert len(list((ws.saves / ".run-index").glob("*.json"))) == 1
    # and alone printed (rank 1's stdout goes to the same pipe)
    assert r.stdout.count("run: two") == 1 and r.stdout.count("samples after epoch") == 2, r.stdout
    assert "global batch = 16 per device × 2 × 1 accumulated = 32" in r.stdout

    s1, s2 = _stats(one), _stats(runs[0])
    for name in ("stat/train_loss:main", "stat/val_loss:main"):
        a, b = s1[name], s2[name]
        assert [row[:2] for row in a] == [row[:2] for row in b], name  # same (step, n_samples) points
        diff = max(abs(x[3] - y[3]) for x, y in zip(a, b))
        assert diff < LOSS_TOL, (name, diff)
    steps = s2["stat/train_loss:main"]
    assert len(steps) == 16 and steps[-1][1] == 2 * 256  # n_samples counts both ranks' samples
    assert len(s2["stat/val_loss:main"]) == 4
    res1 = json.loads((one / "results.json").read_text())
    res2 = json.loads((runs[0] / "results.json").read_text())
    assert abs(res1["val_loss"] - res2["val_loss"]) < LOSS_TOL
    params = json.loads((runs[0] / "params.json").read_text())
    assert params["train"]["devices"] == 2 and params["train"]["strategy"] == "ddp"
    # checkpoints over training: rank 0 writes them once, named by both ranks' samples, as one process would
    from train.snapshots import FOLDER, checkpoint_ids

    assert checkpoint_ids(runs[0]) == checkpoint_ids(one) == [128, 256, 384, 512]
    assert sorted(p.name for p in (runs[0] / FOLDER).iterdir()) == ["128.safetensors", "256.safetensors", "384.safetensors", "512.safetensors", "index.json"]


# --- torch.compile ------------------------------------------------------------------------------------------
def test_compile_traces_the_training_loss_and_leaves_the_lm_plain(monkeypatch):
    """compile=True compiles LMTrainer's loss function (dynamo here with the 'eager' backend: the same graph
    capture without the slow C++ build); the LM keeps its state_dict names and gives the same loss."""
    import functools

    import torch
    from torch._dynamo.testing import CompileCounter

    from data.dataloader import LMDataModule
    from model.lm import LM
    from model.model_params import ModelParams
    from train.config import load_runs
    from train.distributed import training_losses

    counter = CompileCounter()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    torch._dynamo.reset()
    rc = load_runs("test-synth", __import__("pathlib").Path(__file__).parent.parent / "configs")[0]
    dm = LMDataModule(replace(rc.data, n_train_samples=64, n_val_samples=8, n_test_samples=8), seed=0, batch_size=16)
    torch.manual_seed(0)
    lm = LM(ModelParams(dim=16, n_layers=1, n_heads=2, max_seq_len=32), dm.tokenizer)
    batch = next(iter(dm.train_dataloader()))
    eager = training_losses(lm, TrainParams())
    assert eager == lm.get_losses  # compile=False: the plain method
    compiled = training_losses(lm, TrainParams(compile=True))
    (a, n_a), (b, n_b) = eager(batch, None), compiled(batch, None)
    assert n_a == n_b and torch.allclose(a["main"], b["main"], atol=1e-6)
    b["main"].backward()
    assert counter.frame_count >= 1 and lm.embed.weight.grad is not None
    assert all(not k.startswith("_orig_mod") for k in lm.state_dict())
    torch._dynamo.reset()


# --- mixed precision through the real path ---------------------------------------------------------------
def test_bf16_mixed_trains_on_a_cpu_that_has_it(ws):
    """bf16 autocast with gradient clipping (the default grad_clip=1.0): Lightning refuses to clip for a
    fused optimizer under mixed precision, so LMTrainer must not pick the fused AdamW then."""
    from train.distributed import detect_hardware

    if not detect_hardware().cpu_bf16:
        pytest.skip("this CPU has no native bfloat16")
    ws.write_config("b", accelerator='"cpu"', precision='"bf16-mixed"')
    assert ws.main("--config=b", "--save", "--no-wandb") == 0
    (run,) = ws.run_dirs()
    losses = [row[3] for row in _stats(run)["stat/train_loss:main"]]
    assert len(losses) == 8 and all(0 < x < 10 for x in losses)
    assert json.loads((run / "params.json").read_text())["train"]["precision"] == "bf16-mixed"
