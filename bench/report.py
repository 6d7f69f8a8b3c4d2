"""Turning the raw numbers into docs/benchmarks.md (figures, ratios against the goals, notes) and JSON."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

GOALS = {  # name: (description, threshold; 0 = no goal, for reading the others)
    "a/c": ("harness / bare loop, default layer (Lightning overhead ≤ 5 %)", 0.95),
    "a/d": ("harness (default layer) / nanoGPT-style reference", 1.0),
    "custom/torch": ("custom-transformer / torch-transformer", 0.9),
    "b/d": ("harness with the other layer / reference", 0.0),
    "a+snap/a": ("with / without checkpoints over training (train/snapshots.py)", 0.95),
    "l/a": ("Llama-style block / default layer (different parameter count)", 0.0),
    "a/c@big": ("harness / bare loop, default layer", 0.95),
    "a/d@big": ("harness (default layer) / nanoGPT-style reference", 1.0),
    "kv/recompute@b1": ("KV cache / recompute, batch 1", 5.0),
    "kv/recompute@b8": ("KV cache / recompute, batch 8", 5.0),
    "ours/hf@b1": ("our KV sampling / HF generate, batch 1", 1.0),
    "ours/hf@b8": ("our KV sampling / HF generate, batch 8", 1.0),
}
THROUGHPUT_RATIOS = ("a/c", "a/d", "custom/torch", "b/d", "l/a", "a+snap/a")
STARTUP_GOAL_S = 2.0
HEALTH_GOAL = 0.98  # tokens/s with the training-health stats on / off
MFU_GOAL = 0.45


def machine_info(s: Any) -> dict[str, Any]:
    import lightning
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "threads": torch.get_num_threads(),
        "device": s.device,
        "precision": s.precision,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        info["transformers"] = None
    if s.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def with_layer_names(by_contender: dict[str, Any], thr: dict[str, Any]) -> dict[str, Any]:
    """`by_contender` plus the two harness layers' entries under their short names ("custom", "torch")."""
    out = dict(by_contender)
    for key, layer in thr.get("layers", {}).items():
        if key in out:
            out[{"torch-transformer": "torch", "custom-transformer": "custom"}.get(layer, layer)] = out[key]
    return out


def ratios(results: dict[str, Any], rate: str = "tokens_per_s") -> dict[str, float]:
    """Contender ratios from one kind of rate: wall-clock `tokens_per_s` or `tokens_per_cpu_s`."""
    out: dict[str, float] = {}
    thr = results.get("throughput", {})
    tp = with_layer_names(thr.get(rate, {}), thr)
    for r in THROUGHPUT_RATIOS:
        x, y = r.split("/")
        if tp.get(x) and tp.get(y):
            out[r] = tp[x] / tp[y]
    big = (thr.get("big_batch") or {}).get(rate, {})
    for r in ("a/c", "a/d"):
        x, y = r.split("/")
        if big.get(x) and big.get(y):
            out[f"{r}@big"] = big[x] / big[y]
    smp = results.get("sampling", {}).get(rate, {})
    for b in (1, 8):
        kv, rec, hf = smp.get(f"ours_kv@b{b}"), smp.get(f"ours_recompute@b{b}"), smp.get(f"hf_generate@b{b}")
        if kv and rec:
            out[f"kv/recompute@b{b}"] = kv / rec
        if kv and hf:
            out[f"ours/hf@b{b}"] = kv / hf
    return out


def round_ratios(results: dict[str, Any], n_windows: int) -> dict[str, list[float]]:
    """Each throughput ratio per interleaved round (medians of that round's CPU-time windows): how far
    the machine moved the figure between rounds, i.e. how much a miss or a margin of a few % means."""
    import statistics

    thr = results.get("throughput", {})
    out: dict[str, list[float]] = {}
    for suffix, block in (("", thr), ("@big", thr.get("big_batch") or {})):
        win = block.get("cpu_windows", {})
        per = with_layer_names({k: [statistics.median(v[i:i + n_windows]) for i in range(0, len(v) - n_windows + 1, n_windows)]
                                for k, v in win.items() if v}, thr)
        for r in THROUGHPUT_RATIOS:
            x, y = r.split("/")
            if per.get(x) and per.get(y) and len(per[x]) == len(per[y]):
                out[r + suffix] = [a / b for a, b in zip(per[x], per[y])]
    return out


def cpu_ratios(results: dict[str, Any]) -> dict[str, float]:
    """The same ratios from process CPU time (steadier than the wall clock on a shared machine)."""
    return ratios(results, "tokens_per_cpu_s")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if x is not None and math.isfinite(x) else "—"


def markdown(results: dict[str, Any], settings: dict[str, Any], machine: dict[str, Any], command: str, load: dict[str, Any], notes: str = "") -> str:
    r = ratios(results)
    L: list[str] = ["# Benchmarks", ""]
    L += [f"Made by one run of `{command}` ({results.get('date', '')}, {results.get('total_s', 0):.0f} s).", ""]
    L += ["| machine | |", "| --- | --- |"]
    L += [f"| CPU | {machine['cpu']} ({machine['cpu_count']} cores) |"]
    if machine.get("gpu"):
        L += [f"| GPU | {machine['gpu']} (CUDA {machine.get('cuda')}) |"]
    L += [f"| software | Python {machine['python']}, torch {machine['torch']}, lightning {machine['lightning']}, transformers {machine.get('transformers')} |"]
    L += [f"| threads | `torch.set_num_threads({machine['threads']})` for every contender |"]
    L += [f"| device, precision | {machine['device']}, {machine['precision']} |"]
    if machine.get("conditions"):
        L += [f"| conditions | {machine['conditions']} |"]
    L += [f"| load average (1 min) | {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end ({machine['cpu_count']} cores; other work was running when this exceeds ~0.5) |", ""]

    tp = results.get("throughput")
    if tp:
        size = settings["size"]
        L += ["## Training throughput", ""]
        same = "all contenders equal" + (" but (l)" if "l" in tp["info"] else "")
        L += [f"Model: {size['n_layers']} layers, {size['n_heads']} heads, dim {size['dim']}, seq {size['seq_len']}, batch "
              f"{size['batch_size']}, vocab {size['vocab_size']} ({_f(next(iter(tp['info'].values()))['n_params'])} parameters; {same}). "
              f"Tokens/s = batch × seq / step time, median of {settings['n_windows']} windows × {settings['window_steps']} steps after "
              f"{settings['warmup_steps']} warm-up steps, × {settings['rounds']} interleaved rounds. Tokens per CPU-second uses the process' CPU "
              "time instead of the wall clock (steadier when other programs share the cores).", ""]
        mfu = tp.get("mfu")
        head = "| contender | tokens/s | ms/step | tokens per CPU-s |" + (" MFU |" if mfu else "")
        L += [head, "| --- | ---: | ---: | ---: |" + (" ---: |" if mfu else "")]
        for k, v in tp["tokens_per_s"].items():
            params = f" ({_f(tp['info'][k]['n_params'])} parameters)" if k == "l" else ""
            row = f"| ({k}) {tp['names'][k]}{params} | {_f(v)} | {_f(tp['ms_per_step'][k], 1)} | {_f(tp['tokens_per_cpu_s'].get(k, float('nan')))} |"
            L += [row + (f" {100 * mfu[k]:.1f} % |" if mfu else "")]
        for k, e in tp.get("errors", {}).items():
            L += [f"| ({k}) {tp['names'][k]} | failed: {e} | | |" + (" |" if mfu else "")]
        if "l" not in tp["tokens_per_s"]:
            L += ["", "(l) the Llama-style block: not timed, no block of that name is registered in this checkout."]
        if mfu:
            L += ["", f"MFU = tokens/s × (6 N + 12 · layers · dim · seq) / peak, N = parameters without position embeddings, "
                  f"peak = {tp['peak_tflops']} TFLOPS dense bf16. Goal ≥ {100 * MFU_GOAL:.0f} %."]
        big = tp.get("big_batch") or {}
        if big.get("tokens_per_s"):
            L += ["", f"At batch {big['batch_size']} ({big['batch_size'] // size['batch_size']}× the tokens per step, same model, "
                  f"(a), (c), (d) interleaved the same way):", ""]
            L += ["| contender | tokens/s | ms/step | tokens per CPU-s |", "| --- | ---: | ---: | ---: |"]
            for k, v in big["tokens_per_s"].items():
                L += [f"| ({k}) {tp['names'][k]} | {_f(v)} | {_f(1000 * big['tokens_per_step'] / v, 1)} | {_f(big['tokens_per_cpu_s'].get(k, float('nan')))} |"]
        cr, rr = cpu_ratios(results), round_ratios(results, settings["n_windows"])
        L += ["", "| ratio | measured (wall) | measured (CPU time) | each round (CPU time) | goal | met |", "| --- | ---: | ---: | ---: | ---: | --- |"]
        for k in (*THROUGHPUT_RATIOS, "a/c@big", "a/d@big"):
            if k in r:
                desc, goal = GOALS[k]
                at = f" at batch {big['batch_size']}" if k.endswith("@big") else f" at batch {size['batch_size']}"
                met = _met(cr.get(k, r[k]) >= goal) if goal else ""
                rounds = ", ".join(f"{x:.3f}" for x in rr.get(k, []))
                L += [f"| {k.replace('@big', '')}: {desc}{at} | {r[k]:.3f} | {cr.get(k, float('nan')):.3f} | {rounds} | {f'≥ {goal}' if goal else ''} | {met} |"]
        L += ["", "Goals are judged on the CPU-time ratio (the steadier of the two on a shared machine); the spread of "
              "a ratio over the rounds says how much of a miss or a margin the machine's drift could make.", ""]

    q = results.get("quality")
    if q:
        vl, ws = q["val_loss"], q["wall_s"]
        L += ["## Sample quality at a fixed budget", ""]
        sep = q.get("separate_run")
        if sep:
            la = sep["load_average"]
            L += [f"From a separate run, `{sep['command']}` ({sep['date']}, {sep['total_s']:.0f} s; load average "
                  f"{la['start'][0]:.2f} at start, {la['end'][0]:.2f} at end).", ""]
        L += [f"nanoGPT's baby-GPT CPU setting on `--task=shakespeare` (char vocab {q['vocab_size']}): {q['setting']}. "
              f"Both scored by one function on the same {q['val_windows']} val windows ({_f(q['val_tokens'])} predicted tokens). "
              "Wall time = `trainer.fit` for the harness (Lightning's set-up, logging, checkpoints every 200 steps, end-of-epoch "
              "samples) and the loop for the reference; CPU time = the process' CPU seconds in the training loop only.", ""]
        cs = q.get("train_loop_cpu_s", {})
        L += ["| contender | val loss | train wall time | training loop CPU time |", "| --- | ---: | ---: | ---: |"]
        L += [f"| harness (`run_one`, {q.get('layer', 'torch-transformer')}) | {vl['harness']:.4f} | {ws['harness']:.1f} s | {cs.get('harness', float('nan')):.1f} s |"]
        L += [f"| (d) nanoGPT-style reference | {vl['reference']:.4f} | {ws['reference']:.1f} s | {cs.get('reference', float('nan')):.1f} s |", ""]
        ok_loss, ok_time = vl["harness"] <= vl["reference"], ws["harness"] <= ws["reference"]
        L += [f"Goal: harness loss ≤ reference: {_met(ok_loss)} ({vl['harness'] - vl['reference']:+.4f}; one seed each, "
              "the seed-to-seed spread was not measured); "
              f"harness wall time ≤ reference: {_met(ok_time)} (ratio {ws['harness'] / ws['reference']:.3f}"
              + (f"; CPU-time ratio {cs['harness'] / cs['reference']:.3f}" if cs.get("reference") else "") + "). "
              "nanoGPT's README reports val loss 1.88 for this setting on its smaller tiny-shakespeare (different split and corpus, "
              "so only the side-by-side numbers above are comparable).", ""]

    smp = results.get("sampling")
    if smp:
        t = smp["tokens_per_s"]
        L += ["## Sampling speed", ""]
        L += [f"{smp['model']}, loaded by `gpt2.get_gpt2(folder)` and by transformers from the same `save_pretrained` folder. "
              f"Greedy, {smp['prompt_len']}-token prompts, exactly {smp['n_new_tokens']} new tokens (EOS off), median of "
              f"{settings['sample_repeats']} after a warm-up. Same tokens from all three: {smp['same_tokens']}.", ""]
        c = smp.get("tokens_per_cpu_s", {})
        nan = float("nan")
        L += ["| sampler | batch 1 tokens/s | batch 8 tokens/s | batch 1 tokens per CPU-s | batch 8 tokens per CPU-s |", "| --- | ---: | ---: | ---: | ---: |"]
        for name, label in (("ours_kv", "ours, KV cache (`lm.sample`)"), ("ours_recompute", "ours, recompute (`use_cache=False`)"), ("hf_generate", "HF `generate` (KV cache)")):
            L += [f"| {label} | {_f(t.get(name + '@b1', nan))} | {_f(t.get(name + '@b8', nan))} | {_f(c.get(name + '@b1', nan))} | {_f(c.get(name + '@b8', nan))} |"]
        cr = cpu_ratios(results)
        L += ["", "| ratio | measured (wall) | measured (CPU time) | goal | met |", "| --- | ---: | ---: | ---: | --- |"]
        for k in ("kv/recompute@b1", "kv/recompute@b8", "ours/hf@b1", "ours/hf@b8"):
            if k in r:
                desc, goal = GOALS[k]
                L += [f"| {desc} | {r[k]:.2f} | {cr.get(k, nan):.2f} | ≥ {goal} | {_met(r[k] >= goal)} |"]
        L += [""]

    st = results.get("startup")
    if st:
        L += ["## Start-up", "", "| command | wall time | goal | met |", "| --- | ---: | ---: | --- |"]
        for k, sec in st["seconds"].items():
            goal = f"< {STARTUP_GOAL_S} s" if k != "python_bare" else "(scale)"
            met = _met(sec < STARTUP_GOAL_S) if k != "python_bare" else ""
            L += [f"| `{st['commands'][k]}` | {sec:.2f} s | {goal} | {met} |"]
        L += [""]

    hl = results.get("health")
    if hl:
        L += ["## Cost of the training-health stats", ""]
        L += ["Contender (a) trained with `log_health=True` and `False`, interleaved (bench/health.py): gradient and weight "
              "norms on every logged step, update/weight ratios at validation.", ""]
        L += ["| logging | tokens/s on | tokens/s off | on/off (wall) | on/off (CPU time) | goal | met |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for c, m in hl["tokens_per_s"].items():
            ratio = hl["ratio_on_off"][c]
            L += [f"| {c} | {_f(m['on'])} | {_f(m['off'])} | {ratio:.3f} | {hl['ratio_on_off_cpu'][c]:.3f} | ≥ {HEALTH_GOAL} | {_met(ratio >= HEALTH_GOAL)} |"]
        mc = hl.get("micro_cpu_ms")
        if mc:
            L += ["", f"In isolation (process CPU time, no Lightning): the norms of one logged step take {mc['norms_ms']:.3f} ms against "
                  f"{mc['step_ms']:.1f} ms for a training step of the same model and batch ({100 * mc['norms_ms'] / mc['step_ms']:.2f} %)."]
        L += [""]

    for name, err in results.get("failed_sections", {}).items():
        L += [f"## {name}: failed", "", f"`{err}` — no figures from this section in this run.", ""]
    L += measured_notes(results)
    if notes:
        L += [notes.rstrip(), ""]
    return "\n".join(L)


def measured_notes(results: dict[str, Any]) -> list[str]:
    """What the figures above say, computed from them (so a rerun can't leave stale numbers here)."""
    out: list[str] = []
    tp = results.get("throughput")
    if tp and all(k in tp["ms_per_step"] for k in "abcd"):
        lay = tp.get("layers", {"a": "?", "b": "?"})
        ms = tp["ms_per_step"]
        cpu = {k: 1000 * tp["tokens_per_step"] / v for k, v in tp.get("tokens_per_cpu_s", {}).items()}

        def gap(x: str, y: str, ms: dict, cpu: dict) -> str:
            if cpu:
                return f"{ms[x] - ms[y]:+.1f} ms wall, {cpu[x] - cpu[y]:+.1f} ms CPU on a {cpu[y]:.1f} ms-CPU step ({100 * (cpu[x] - cpu[y]) / cpu[y]:+.1f} %)"
            return f"{ms[x] - ms[y]:+.1f} ms wall on a {ms[y]:.1f} ms step ({100 * (ms[x] - ms[y]) / ms[y]:+.1f} %)"

        out += [f"- **Lightning's cost per step** (a − c): {gap('a', 'c', ms, cpu)}. A fixed cost per optimizer step would "
                "shrink relative to the step as batch × model grows; the batch-" + str((tp.get('big_batch') or {}).get('batch_size', '')) + " line tests that."]
        out += [f"- **The harness against the reference** (a − d): {gap('a', 'd', ms, cpu)}; the bare loop against the reference "
                f"(c − d, the model and loss alone): {gap('c', 'd', ms, cpu)}."]
        big = tp.get("big_batch") or {}
        bt = big.get("tokens_per_s", {})
        if all(k in bt for k in "acd"):
            bms = {k: 1000 * big["tokens_per_step"] / v for k, v in bt.items()}
            bcpu = {k: 1000 * big["tokens_per_step"] / v for k, v in big.get("tokens_per_cpu_s", {}).items()}
            rises = bt["a"] / bt["c"] > tp["tokens_per_s"]["a"] / tp["tokens_per_s"]["c"]
            out += [f"- At batch {big['batch_size']}: a − c {gap('a', 'c', bms, bcpu)}, a − d {gap('a', 'd', bms, bcpu)}; "
                    + ("a/c rises with the work per step, as a fixed cost per step predicts." if rises else
                       "a/c did not rise with the work per step here, so not all of the gap is a fixed cost per step (or the machine was noisy).")]
        out += [f"- **{lay['b']} vs {lay['a']}** (b − a): {gap('b', 'a', ms, cpu)}, same weights and maths."]
    q = results.get("quality")
    if q:
        vl, ws = q["val_loss"], q["wall_s"]
        ad = (tp or {}).get("tokens_per_s", {})
        expect = f" (the throughput table predicts d/a = {ad['d'] / ad['a']:.3f})" if ad.get("a") and ad.get("d") else ""
        out += [f"- **Quality:** harness − reference val loss = {vl['harness'] - vl['reference']:+.4f}; wall time ratio "
                f"{ws['harness'] / ws['reference']:.3f}{expect}."]
    smp = results.get("sampling")
    if smp:
        sec = smp["seconds"]
        n = smp["n_new_tokens"]
        for b in (1, 8):
            kv, rec = sec.get(f"ours_kv@b{b}"), sec.get(f"ours_recompute@b{b}")
            if kv and rec:
                out += [f"- **Sampling, batch {b}:** {1000 * kv / n:.2f} ms per step with the KV cache, {1000 * rec / n:.2f} ms recomputing "
                        "(recomputing costs more with every token generated; a cached step costs about the same at any length)."]
    return (["## Notes on the figures (computed from them)", "", *out, ""]) if out else []


def compact_table(results: dict[str, Any]) -> str:
    """A few lines for the terminal: every figure a reader would paste."""
    lines = ["", "=== bench summary ==="]
    tp = results.get("throughput")
    if tp:
        mfu = tp.get("mfu") or {}
        for k, v in tp["tokens_per_s"].items():
            extra = f"  MFU {100 * mfu[k]:.1f}%" if k in mfu else ""
            lines.append(f"  throughput ({k:9s}) {v:12,.0f} tokens/s  {tp['ms_per_step'][k]:8.1f} ms/step{extra}  {tp['names'][k]}")
    q = results.get("quality")
    if q:
        for k in ("harness", "reference"):
            lines.append(f"  quality    {k:9s}  val loss {q['val_loss'][k]:.4f}  wall {q['wall_s'][k]:.1f} s")
    smp = results.get("sampling")
    if smp:
        for k, v in smp["tokens_per_s"].items():
            lines.append(f"  sampling   {k:20s} {v:10,.0f} tokens/s")
    hl = results.get("health")
    if hl:
        lines.append("  health     on/off " + ", ".join(f"{c} {v:.3f}" for c, v in hl["ratio_on_off"].items()))
    st = results.get("startup")
    if st:
        lines.append("  startup    " + ", ".join(f"{k} {v:.2f} s" for k, v in st["seconds"].items()))
    r = ratios(results)
    if r:
        lines.append("  ratios     " + ", ".join(f"{k} {v:.3f}" + ("" if v >= GOALS[k][1] else " (MISSED)") for k, v in r.items()))
    mfu = (tp or {}).get("mfu")
    if mfu:
        lines.append("  MFU        " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in mfu.items()) + f"  (goal {100 * MFU_GOAL:.0f}%, peak {tp['peak_tflops']} TFLOPS)")
    return "\n".join(lines)


def write(out_dir: Path, stem: str, results: dict[str, Any], md: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md_path.write_text(md)
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    return md_path, json_path


def python_command() -> str:
    """The command line as it can be pasted back into a shell (quoted where an argument has spaces)."""
    import shlex

    return shlex.join(["python", "-m", "bench", *sys.argv[1:]])


def rerender(json_path: Path, notes_path: Path) -> Path:
    """Rewrite the .md beside `json_path` from its raw numbers and the current notes (no re-measuring)."""
    payload = json.loads(Path(json_path).read_text())
    notes = Path(notes_path).read_text() if Path(notes_path).is_file() else ""
    md = markdown(payload["results"], payload["settings"], payload["machine"], payload["command"], payload["load_average"], notes)
    md_path = Path(json_path).with_suffix(".md")
    md_path.write_text(md)
    return md_path


if __name__ == "__main__":  # python -m bench.report docs/benchmarks.json: re-render the .md after editing bench/NOTES.md
    here = Path(__file__).resolve().parent
    print(rerender(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else here / "NOTES.md"))
