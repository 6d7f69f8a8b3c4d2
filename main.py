"""Train decoder-only LMs from config files: `python3 main.py --config=NAME [options]`.

Thin entry point: parse flags, expand configs into runs, name each run (`Namer`), hand each to
`train/run.py`. Heavy libraries are imported only once a run starts, so `--help` and
`--dry-run` are instant. Every user mistake ends with one line on stderr and exit code 2.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python3 main.py` without the venv active: rerun under .venv/bin/python (train/venv_python.py)
    from train.venv_python import ensure_venv_python

    ensure_venv_python()

import argparse
import datetime
import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from core.errors import UserError
from model.registry import KINDS, describe
from train.config import RunConfig, load_runs, settings_help
from train.distributed import check_runs, env_rank_zero, quiet_other_ranks
from train.resume import RunFailed, RunInterrupted, plan_sweep, rebuild_config, single_resume

HERE = Path(__file__).resolve().parent
CONFIGS_DIR = HERE / "configs"
MAIN_PROJ = "base"  # prefix of every wandb project and save folder; change it to mark a set of experiments
wandb_username = None  # your wandb entity (user or team), or None for your default one; sets $WANDB_ENTITY


@dataclass
class Namer:
    """Names a run's wandb project, wandb run and save folder. Edit these to taste."""

    rc: RunConfig
    args: argparse.Namespace
    timestamp: str

    def wandb_proj_name(self) -> str:
        return f"{MAIN_PROJ}-{self.args.wandb_proj_name or self.args.config}-{self.rc.data.task}"

    def run_name(self) -> str | None:
        """None lets wandb pick a random name; the save folder then uses the swept values."""
        return None

    def save_folder_name(self) -> str:
        run = self.run_name() or _slug(self.rc.varying) or "run"
        return f"{self.rc.config_name}/{self.rc.data.task}/{run}/{self.timestamp}"

    def save_folder_path(self, save_dir: Path) -> Path:
        path = Path(save_dir) / self.save_folder_name()
        n = 1
        while path.exists():  # two runs started in the same second
            path = path.with_name(f"{self.timestamp}-{n}")
            n += 1
        return path

    def log_folder_path(self, log_dir: Path) -> Path:
        return Path(log_dir) / self.save_folder_name()

    def describe(self) -> str:
        return f"{self.rc.config_name} [{self.rc.describe()}] task={self.rc.data.task}"


def _slug(varying: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in varying.items()).replace("/", "_").replace(" ", "")


def now_timestamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d--%H-%M-%S")


# --ablate runs each of these on every config too. Each takes a run and returns a changed copy.
ABLATIONS: dict[str, Callable[[RunConfig], RunConfig]] = {
    "custom-layer": lambda rc: replace(rc, model=replace(rc.model, layer_architecture="custom-transformer"), varying={**rc.varying, "ablation": "custom-layer"}),
}


class _Parser(argparse.ArgumentParser):
    def format_help(self) -> str:
        # every config key and every registered component; built only when --help asks
        self.epilog = settings_help() + "\n\n" + components_help()
        return super().format_help()


def components_help() -> str:
    """The registered model components (model/registry.py), as --help lists them; torch-free."""
    fields = {"block": "layer_architecture", "attention": "attention", "mlp": "mlp", "norm": "norm", "pos_encoding": "pos_encoding"}
    lines = ["model components (ModelParams; register your own with @block/@attention/@mlp/@norm/@pos_encoding under model/):"]
    for kind in KINDS:
        lines.append(f"  {fields[kind]}:")
        lines += [f"    {name:<20} {doc}" for name, doc in describe(kind)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="main.py",
        description="Train decoder-only transformer LMs on the runs described by configs/NAME.txt (and configs/NAME-*.txt).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=None, help="config name in configs/ without .txt; also runs every NAME-*.txt (required unless --resume=RUN)")
    p.add_argument("--configs-dir", default=os.environ.get("HARNESS_CONFIGS_DIR") or str(CONFIGS_DIR), help="folder holding the config files (default: $HARNESS_CONFIGS_DIR, else configs/ in this repo)")
    p.add_argument("--task", default=None, help="override DataParams.task for every run")
    p.add_argument("--wandb-proj-name", default=None, help="wandb project part of the name (default: the --config value)")
    p.add_argument("--save", action="store_true", help="save each trained model under --save-dir")
    p.add_argument("--save-dir", default=os.environ.get("HARNESS_SAVE_DIR") or str(HERE.parent / "saved-models"), help="where --save writes runs (default: $HARNESS_SAVE_DIR, else ../saved-models)")
    p.add_argument("--log-dir", default=os.environ.get("HARNESS_LOG_DIR") or str(HERE.parent / "logs"), help="where CSV and offline wandb logs go (default: $HARNESS_LOG_DIR, else ../logs)")
    p.add_argument("--ablate", action="store_true", help=f"also run the ablations defined in main.py's ABLATIONS ({', '.join(ABLATIONS) or 'none'})")
    p.add_argument("--no-wandb", action="store_true", help="turn off wandb logging (the local CSV log and train_stats remain)")
    p.add_argument("--gpu-id", default=None, help="GPU index (or comma-separated indices) to train on, e.g. --gpu-id=1")
    p.add_argument("--seed", type=int, default=0, help="random seed for data, initialisation and shuffling (default 0)")
    p.add_argument("--dry-run", action="store_true", help="list the runs the configs expand to, then exit without training")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="with --resume: load a checkpoint whose .sha256 record is missing or unreadable (refused by default; loading still executes no pickled code)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="RUN",
        help="continue interrupted work from its last checkpoint. Bare --resume (with --config and the same flags): skip the sweep's "
        "finished runs, resume the interrupted one, run the rest. --resume=RUN (a run folder, or its timestamp under --save-dir/--log-dir): "
        "continue that one run with its saved config",
    )
    return p


def parse_gpu_ids(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        ids = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--gpu-id={value!r} must be a GPU index or comma-separated indices, e.g. --gpu-id=0,1") from None
    import torch

    n = torch.cuda.device_count()
    missing = [i for i in ids if not 0 <= i < n]
    if missing or not ids:
        have = f"GPUs 0..{n - 1}" if n else "no GPU"
        raise UserError(f"--gpu-id={value}: this machine has {have}; drop --gpu-id to train on the CPU")
    return ids


def expand_runs(args: argparse.Namespace) -> list[RunConfig]:
    # not at the top: the task files and the hub check (socket) would add ~6 ms to every `--help`
    from data.task_resolver import check_task

    runs = load_runs(args.config, Path(args.configs_dir), task=args.task)
    for task in dict.fromkeys(r.data.task for r in runs):
        check_task(task)
    if args.ablate:
        if not ABLATIONS:
            raise UserError("--ablate: no ablations are defined; add some to ABLATIONS in main.py")
        runs = runs + [ab(r) for r in runs for ab in ABLATIONS.values()]
    return runs


SEED_MAX = 2**32 - 1


def one_line(msg: object, limit: int = 800) -> str:
    """An error prints as one line of readable length, however long the value it quotes."""
    text = " ".join(str(msg).split())
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


# Flags a single-run `--resume=RUN` takes from the run's saved state instead of the command line.
RUN_STATE_FLAGS = ("config", "configs_dir", "task", "wandb_proj_name", "save", "ablate", "seed", "dry_run", "resume")


def resume_command(args: argparse.Namespace, run: Path | None = None) -> str:
    """The command that continues this work with every flag it was started with.

    `run`: continue that one run (`--resume=RUN` plus the flags not stored with it); None: the whole
    `--config` sweep (`--resume` plus all the original flags)."""
    skip = RUN_STATE_FLAGS if run is not None else ("resume", "dry_run")
    flags = []
    for action in build_parser()._actions:
        dest, value = action.dest, getattr(args, action.dest, None)
        if dest == "help" or dest in skip or value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        flags.append(flag if value is True else f"{flag}={shlex.quote(str(value))}")
    flags.append(f"--resume={shlex.quote(str(run))}" if run is not None else "--resume")
    return " ".join(["python3", "main.py", *flags])


def resume_one(args: argparse.Namespace) -> int:
    """`--resume=RUN`: continue one run from its state folder, with the config saved there."""
    given = [f for f, v in (("--config", args.config), ("--task", args.task), ("--ablate", args.ablate)) if v]
    if given:
        raise UserError(f"--resume=RUN continues that run with its own saved config; drop {', '.join(given)} (bare --resume resumes a --config sweep)")
    point = single_resume(args.resume, [Path(args.save_dir), Path(args.log_dir)])
    rc = rebuild_config(point.state, point.state_dir)
    args.config = point.state.get("config_arg") or rc.config_name
    step = point.step
    where = f"from step {step}" if step is not None else "from the start (no checkpoint yet)"
    if args.dry_run:
        print(f"1 run: {rc.config_name}: task={rc.data.task} {rc.describe()} — would resume {point.state_dir} {where}")
        return 0
    gpu_ids = parse_gpu_ids(args.gpu_id)
    check_runs([rc], gpu_ids)  # devices/precision/strategy vs this machine (train/distributed.py)
    from train.run import RunOptions, run_one  # torch and lightning: not for --help or --dry-run

    opts = RunOptions(
        save=bool(point.state["save"]), save_dir=Path(args.save_dir), log_dir=Path(args.log_dir), use_wandb=not args.no_wandb,
        seed=int(point.state["seed"]), gpu_ids=gpu_ids, allow_unverified=args.allow_unverified,
        resume_command=lambda run: resume_command(args, run),
    )
    print(f"=== resuming {rc.config_name} task={rc.data.task} {rc.describe()} {where}", flush=True)
    try:
        result = run_one(rc, opts, Namer(rc, args, point.state["timestamp"]), resume=point, identity=point.state.get("identity"))
    except RunFailed as e:
        print(f"error: {one_line(e)}", file=sys.stderr, flush=True)
        return 1
    if result.run_dir is not None:  # the sweep's report now includes this run
        save_dir = next((p.parent for p in Path(result.run_dir).parents if p.name == args.config), Path(args.save_dir))
        if env_rank_zero():
            config_report(save_dir, args.config)
    return 0


def config_report(save_dir: Path, config: str) -> None:
    """report.md/.csv/.png comparing a config's saved runs (train/report.py)."""
    from train.report import write_config_report  # not at the top: csv, integrity and saving would add ~3 ms to every `--help`

    write_config_report(save_dir, config)


def run_all(args: argparse.Namespace) -> int:
    if not 0 <= args.seed <= SEED_MAX:
        raise UserError(f"--seed={args.seed} is out of range; use a seed from 0 to {SEED_MAX}")
    if args.resume:
        return resume_one(args)
    runs = expand_runs(args)
    if args.dry_run:
        return dry_run(args, runs)
    gpu_ids = parse_gpu_ids(args.gpu_id)
    check_runs(runs, gpu_ids)  # every run's devices/precision/strategy vs this machine, before the first trains
    failed = train_sweep(args, runs, gpu_ids)
    if args.save and len(failed) < len(runs) and env_rank_zero():  # compare the runs: report.md/.csv/.png in {save-dir}/{config}/ (train/report.py)
        config_report(Path(args.save_dir), args.config)
    if failed:
        print(f"error: {len(failed)} of {len(runs)} run(s) failed (runs {', '.join(map(str, failed))}); see FAILED.json in their folders", file=sys.stderr)
        return 1
    return 0


def dry_run(args: argparse.Namespace, runs: list[RunConfig]) -> int:
    """`--dry-run`: list the runs (with bare --resume, what it would do with each) and train nothing."""
    notes = [""] * len(runs)
    if args.resume is not None:  # say what --resume would do with each run
        root = Path(args.save_dir if args.save else args.log_dir)
        notes = [f" — would {p.action}" + (f" ({p.why})" if p.why else "") for p in plan_sweep(runs, args.seed, root, resume=True)]
    print(f"{len(runs)} run(s):")
    for i, r in enumerate(runs, 1):
        print(f"  {i}. {r.config_name}: task={r.data.task} {r.describe()}{notes[i - 1]}")
    return 0


def train_sweep(args: argparse.Namespace, runs: list[RunConfig], gpu_ids: list[int] | None) -> list[int]:
    """Train (or, with bare --resume, continue or skip) each run in turn; the numbers of those that failed."""
    from train.run import RunOptions, run_one  # torch and lightning: not for --help or --dry-run

    opts = RunOptions(
        save=args.save, save_dir=Path(args.save_dir), log_dir=Path(args.log_dir), use_wandb=not args.no_wandb, seed=args.seed, gpu_ids=gpu_ids,
        resume_command=lambda run: resume_command(args, run) + (f"  (or the whole sweep: {resume_command(args)})" if len(runs) > 1 else ""),
        allow_unverified=args.allow_unverified,
    )
    plans = plan_sweep(runs, args.seed, opts.index_root, resume=args.resume is not None)
    failed = []
    for i, (rc, plan) in enumerate(zip(runs, plans), 1):
        head = f"=== run {i}/{len(runs)}: {rc.config_name} task={rc.data.task} {rc.describe()}"
        if plan.action == "skip":
            print(f"{head}: skipped, {plan.why}", flush=True)
            continue
        print(head + (f": resuming {plan.why}" if plan.resume else ""), flush=True)
        namer = Namer(rc, args, plan.resume.state["timestamp"] if plan.resume else now_timestamp())
        try:
            run_one(rc, opts, namer, resume=plan.resume, identity=plan.identity)
        except RunFailed as e:  # the sweep goes on; the failed run is marked in its folder
            print(f"error: run {i}/{len(runs)}: {one_line(e)}", file=sys.stderr, flush=True)
            failed.append(i)
    return failed


def main(argv: list[str] | None = None) -> int:
    quiet_other_ranks()  # several processes (docs/scaling.md): only rank 0 prints
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.config and not args.resume:
        parser.error("the following arguments are required: --config (or --resume=RUN)")
    if wandb_username:  # wandb reads the entity from the environment; an explicit $WANDB_ENTITY wins
        os.environ.setdefault("WANDB_ENTITY", wandb_username)
    try:
        return run_all(args)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except RunInterrupted as e:
        print(f"interrupted: {one_line(e)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
