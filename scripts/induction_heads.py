"""The induction-head phase change, reproduced: train configs/induction-heads.txt with log-spaced
checkpoints over training, then draw the in-context loss and the best induction score against
training samples seen (docs/dynamics.md).

    python scripts/induction_heads.py                       # -> docs/figures/induction-heads.png (+ .csv)
    python scripts/induction_heads.py --run TIMESTAMP_OR_FOLDER   # analyse a run already trained
    python scripts/induction_heads.py --save-dir /tmp/ih --out /tmp/ih.png --seed 1

In-context loss: on held-out random strings written twice, the mean next-token loss on the
second copy minus that on the first (about -log(26) = -3.26 nats for a perfect copier, 0 for
a model that ignores the context), on strings of SEQ_LEN letters. Induction score: model/head_scores.py (Olsson et al. 2022).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEQ_LEN = 11  # length of the repeated strings measured on (configs/induction-heads.txt trains on 6..16)


def measure(lm, tokens) -> dict[str, float]:
    from model.head_scores import best_head, head_scores, repeated_halves_loss

    first, second = repeated_halves_loss(lm, tokens)
    scores = head_scores(lm, tokens=tokens)
    ind, layer, head = best_head(scores["induction"])
    return {
        "in_context_loss": second - first, "loss_first_copy": first, "loss_second_copy": second,
        "best_induction_score": ind, "induction_head": f"{layer}.{head}",
        "best_previous_token_score": best_head(scores["previous_token"])[0],
    }


def first_crossing(xs: list[int], ys: list[float], frac: float = 0.5) -> int:
    """Samples seen when `ys` first covers `frac` of its way from start to end (the jump's middle)."""
    target = ys[0] + frac * (ys[-1] - ys[0])
    up = ys[-1] > ys[0]
    return next(x for x, y in zip(xs, ys) if (y >= target if up else y <= target))


def draw(table, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = table.column("n_samples")
    icl, ind = table.column("in_context_loss"), table.column("best_induction_score")
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(xs, icl, "o-", ms=3, color="tab:blue", label="in-context loss (2nd copy - 1st, nats)")
    ax.set_ylabel("in-context loss (nats)", color="tab:blue")
    ax.set_xscale("symlog", linthresh=min(x for x in xs if x > 0))
    ax.set_xlabel("training samples seen (log scale; 0 = initial weights)")
    ax2 = ax.twinx()
    ax2.plot(xs, ind, "s-", ms=3, color="tab:red", label="best induction-head score")
    ax2.set_ylabel("best induction score (attention)", color="tab:red")
    ax2.set_ylim(0, 1)
    for x, c in ((first_crossing(xs, icl), "tab:blue"), (first_crossing(xs, ind), "tab:red")):
        ax.axvline(x, color=c, ls=":", lw=1)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center left", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="analyse this saved run (timestamp or folder) instead of training one")
    p.add_argument("--save-dir", type=Path, help="where the run is saved (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "induction-heads.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="induction-heads")
    args = p.parse_args(argv)

    import main as harness
    import model_explorer as me

    save_dir = args.save_dir or Path(tempfile.mkdtemp(prefix="induction-heads-"))
    train_s = None
    if args.run is None:
        start = time.perf_counter()
        code = harness.main([f"--config={args.config}", "--no-wandb", "--save", f"--save-dir={save_dir}", f"--log-dir={save_dir / 'logs'}", f"--seed={args.seed}"])
        train_s = time.perf_counter() - start
        if code:
            return code
        run = me.list_runs(save_dir)[-1].path
    else:
        run = Path(args.run) if Path(args.run).is_dir() else me.find_run(args.run, save_dir)
    start = time.perf_counter()
    cps = me.get_all_checkpoints_by_timestamp(run)
    tokens = me.repeated_random_tokens(cps.final, SEQ_LEN, n_seqs=128, seed=12345)  # held out: not the training strings
    table = me.over_checkpoints(cps, lambda lm: measure(lm, tokens))
    analyse_s = time.perf_counter() - start
    xs = table.column("n_samples")
    jump_icl, jump_ind = first_crossing(xs, table.column("in_context_loss")), first_crossing(xs, table.column("best_induction_score"))
    last = table[-1]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    dp, mp = cps.params["data"], cps.params["model"]
    draw(table, args.out, f"{mp['n_layers']}-layer attention-only transformer (dim {mp['dim']}, {mp['n_heads']} heads)\nrepeat_random: "
         f"{len(dp['alphabet'])} symbols, strings of {dp['min_len']}-{dp['max_len']}; measured at length {SEQ_LEN}")
    table.to_csv(args.out.with_suffix(".csv"))
    print(f"run: {run}")
    if train_s is not None:
        print(f"training command (main.py, incl. start-up and saving): {train_s:.1f} s; 1-min load average now {load:.1f}")
    print(f"analysis of {len(table)} checkpoints: {analyse_s:.1f} s")
    print(f"in-context loss: {table[0]['in_context_loss']:+.3f} nats at init -> {last['in_context_loss']:+.3f} at {xs[-1]:,} samples; half-way at {jump_icl:,} samples")
    print(f"best induction score: {table[0]['best_induction_score']:.3f} at init -> {last['best_induction_score']:.3f} (head {last['induction_head']}); half-way at {jump_ind:,} samples")
    print(f"best previous-token score at the end: {last['best_previous_token_score']:.3f}")
    print(f"figure: {args.out}; table: {args.out.with_suffix('.csv')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
