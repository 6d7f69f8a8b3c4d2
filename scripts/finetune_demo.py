"""The measurement behind docs/finetune.md: fine-tune a Shakespeare run on another text.

    python scripts/finetune_demo.py [--text-dir /usr/share/common-licenses] [--steps 150] [--work DIR]

1. trains a base char-level model on `--task=shakespeare` (`--base-steps`);
2. writes a custom data folder `licenses/data.txt` from every distinct file in `--text-dir`
   (by default the software licences Debian ships: legal English, nothing like Shakespeare),
   keeping only characters the base run's char tokenizer knows (a fine-tune uses its source's
   tokenizer) and packing it into windows like the corpus;
3. trains three runs on it with the same steps, lr and batch: full fine-tune (`init_from`),
   LoRA (`lora_rank`), and from scratch (same architecture, random init);
4. prints a markdown table: val loss before and after, trainable parameters, wall time.

Each run is `python main.py --config=... --no-wandb --save` in a subprocess; figures come from
the saved runs (`results.json`, `init_from.json`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MODEL = """ModelParams
layer_architecture="custom-transformer"
dim=64
n_layers=2
n_heads=4
max_seq_len=64
"""


def config(task: str, steps: int, extra: str = "", model: bool = True) -> str:
    return f"""DataParams
task="{task}"
max_seq_len=64
{'pack=True' if task != 'shakespeare' else ''}

TrainParams
epochs=50
max_steps={steps}
batch_size=16
lr=3e-3
warmup_steps=20
val_check_interval=1.0
hyperparams_log_freq=50
n_print_samples=1
print_sample_len=80
{extra}

{MODEL if model else ''}"""


def run(work: Path, name: str, text: str, env: dict[str, str]) -> Path:
    (work / "configs" / f"{name}.txt").write_text(text)
    cmd = [sys.executable, str(REPO / "main.py"), f"--config={name}", "--no-wandb", "--save",
           f"--configs-dir={work / 'configs'}", f"--save-dir={work / 'saves'}", f"--log-dir={work / 'logs'}"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{name} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    print(f"{name}: {time.perf_counter() - t0:.1f} s for the command", file=sys.stderr)
    (run_dir,) = [p.parent for p in (work / "saves" / name).rglob("results.json")]
    return run_dir


def licence_text(text_dir: Path, chars: set[str]) -> tuple[str, int]:
    seen, parts = set(), []
    for p in sorted(text_dir.iterdir()):
        real = p.resolve()
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        parts.append(real.read_text(encoding="utf-8", errors="ignore"))
    text = "\n".join(parts)
    kept = "".join(c for c in text if c in chars)
    return kept, len(text) - len(kept)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--text-dir", default="/usr/share/common-licenses")
    ap.add_argument("--base-steps", type=int, default=200)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--base", default=None, help="reuse this saved Shakespeare run instead of training the base")
    ap.add_argument("--work", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="finetune-"))
    (work / "configs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HARNESS_DATA_PATH": str(work / "data")}

    base = Path(args.base) if args.base else run(work, "base", config("shakespeare", args.base_steps), env)
    chars = set(json.loads((base / "tokenizer.json").read_text())["chars"])
    text, dropped = licence_text(Path(args.text_dir), chars)
    (work / "data" / "licenses").mkdir(parents=True, exist_ok=True)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    (work / "data" / "licenses" / "data.txt").write_text("\n".join(lines) + "\n")
    print(f"fine-tune text: {len(text):,} characters from {args.text_dir} ({dropped} dropped: not in the Shakespeare vocabulary)", file=sys.stderr)

    init = f'init_from="{base}"'
    runs = {
        "full fine-tune": run(work, "ft-full", config("licenses", args.steps, init, model=False), env),
        f"LoRA r={args.lora_rank} (attention + MLP)": run(work, "ft-lora", config("licenses", args.steps, f"{init}\nlora_rank={args.lora_rank}", model=False), env),
        "from scratch": run(work, "scratch", config("licenses", args.steps), env),
    }
    base_res = json.loads((base / "results.json").read_text())
    base_steps = json.loads((base / "params.json").read_text())["train"]["max_steps"]
    print(f"\nbase: shakespeare, {base_steps} steps, val loss {base_res['val_loss']:.3f}, {base_res['wall_time_s']:.1f} s training, {base_res['n_params']:,} parameters\n")
    print("| run | trainable parameters | val loss before | val loss after | training wall time |")
    print("| --- | --- | --- | --- | --- |")
    for label, d in runs.items():
        res = json.loads((d / "results.json").read_text())
        rec = json.loads((d / "init_from.json").read_text()) if (d / "init_from.json").is_file() else {}
        before = rec.get("val_loss_before")
        before_s = "(random init)" if before is None else f"{before:.3f}"
        print(f"| {label} | {res['n_trainable']:,} | {before_s} | {res['val_loss']:.3f} | {res['wall_time_s']:.1f} s |")
    print(f"\nruns kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
