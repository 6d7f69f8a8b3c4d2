"""`python -m bench [--quick] [--out DIR] [--device cpu|cuda] [--precision P] [--threads N] [--sections S,...]`.

Runs the chosen sections in this one process and writes `{out}/benchmarks.md` and
`{out}/benchmarks.json` (`benchmarks-cuda.*` with `--device cuda`), then prints a compact table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if __name__ == "__main__":  # `python3 -m bench` without the venv active: rerun under .venv/bin/python
    from train.venv_python import ensure_venv_python

    ensure_venv_python()


def build_parser() -> argparse.ArgumentParser:
    from bench.settings import SECTIONS  # after the sys.path line and the .venv re-exec above, as every harness import here

    p = argparse.ArgumentParser(prog="python -m bench", description="Harness vs hand-written loops: throughput, quality, sampling, start-up.")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: checks that every contender runs (seconds); skips quality")
    p.add_argument("--out", default=None, help="folder for the .md and .json (default: docs/; with --quick a temp folder)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: GPT-2-small size (124M, seq 1024) and MFU")
    p.add_argument("--precision", default=None, choices=("32-true", "bf16-mixed", "16-mixed"), help="default: 32-true on cpu, bf16-mixed on cuda")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every contender (default: the number of CPU cores)")
    p.add_argument("--sections", default=None, help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; cuda skips quality)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds of the throughput contenders")
    p.add_argument("--contenders", default=None, help="throughput: comma-separated subset of a,b,c,d,a+snap,l (and the +compile ones) to time, e.g. a,c,d with more --rounds")
    p.add_argument("--batch-size", type=int, default=None, help="throughput batch size (default: 12 on cpu, 16 on cuda)")
    p.add_argument("--compile", dest="compile_contenders", action="store_true", default=None, help="also time torch.compile'd bare loop and reference (default on cuda)")
    p.add_argument("--no-compile", dest="compile_contenders", action="store_false", help="skip the torch.compile variants")
    p.add_argument("--peak-tflops", type=float, default=None, help="GPU peak for MFU (default: looked up from the GPU name)")
    p.add_argument("--notes", default=str(REPO / "bench" / "NOTES.md"), help="a markdown FILE appended to the report (the analysis of the figures)")
    p.add_argument("--conditions", default="", help="one line on the machine's state while measuring (e.g. 'idle', 'shared with the test suite'), shown in the report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    # after the .venv re-exec above, and not for `--help`: report reads torch's and lightning's versions
    from bench import report
    from bench.settings import CONTENDERS, SECTIONS, make_settings

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU; drop --device or run on a GPU machine", file=sys.stderr)
        return 2
    sections = None
    if args.sections:
        sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
        bad = [x for x in sections if x not in SECTIONS]
        if bad:
            print(f"error: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
    if not args.quick and not Path(args.notes).is_file():  # the analysis would be dropped without a word
        print(f"error: --notes {args.notes!r} is not a file; it names the markdown appended to the report (default bench/NOTES.md); "
              "describe the machine's state with --conditions TEXT", file=sys.stderr)
        return 2
    precision = args.precision or ("bf16-mixed" if args.device == "cuda" else "32-true")
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    contenders = tuple(x.strip() for x in args.contenders.split(",") if x.strip()) if args.contenders else None
    unknown = sorted(set(contenders or ()) - set(CONTENDERS))
    if unknown:
        print(f"error: unknown contender(s) {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}", file=sys.stderr)
        return 2
    overrides = {k: v for k, v in (("rounds", args.rounds), ("contenders", contenders), ("compile_contenders", args.compile_contenders), ("peak_tflops", args.peak_tflops)) if v is not None}
    s = make_settings(args.quick, args.device, precision, threads, sections, **overrides)
    if args.batch_size:
        s = replace(s, size=replace(s.size, batch_size=args.batch_size))
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else REPO / "docs")
    stem = "benchmarks-cuda" if args.device == "cuda" else "benchmarks"

    load_start = os.getloadavg()
    machine = report.machine_info(s)
    if args.conditions:
        machine["conditions"] = args.conditions
    print(f"bench: {', '.join(s.sections)} on {machine['device']} ({machine.get('gpu') or machine['cpu']}), {precision}, "
          f"{threads} threads, torch {machine['torch']}; load average {load_start[0]:.2f}", flush=True)
    results: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds")}
    t0 = time.perf_counter()
    failed: dict[str, str] = {}
    for name in s.sections:
        module = __import__(f"bench.{name}", fromlist=["run"])
        try:
            results[name] = module.run(s, log=lambda m: print(m, flush=True))
        except Exception as e:  # one broken section (e.g. no transformers on this machine) must not lose the others
            failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
            print(f"[{name}] FAILED: {failed[name]}", flush=True)
            traceback.print_exc()
        if torch.get_num_threads() != threads:  # nothing may change the thread count between contenders
            raise RuntimeError(f"section {name} changed torch threads from {threads} to {torch.get_num_threads()}")
    if failed:
        results["failed_sections"] = failed
    results["total_s"] = time.perf_counter() - t0
    load = {"start": list(load_start), "end": list(os.getloadavg())}
    command = report.python_command()
    notes_path = Path(args.notes)
    notes = notes_path.read_text() if notes_path.is_file() and not args.quick else ""
    md = report.markdown(results, s.as_dict(), machine, command, load, notes)
    payload = {"command": command, "machine": machine, "load_average": load, "settings": s.as_dict(), "ratios": report.ratios(results),
               "ratios_cpu_time": report.cpu_ratios(results),
               "ratios_cpu_time_by_round": report.round_ratios(results, s.n_windows), "results": results}
    md_path, json_path = report.write(out, stem, payload, md)
    print(report.compact_table(results))
    print(f"wrote {md_path} and {json_path}")
    if failed:
        print(f"error: section(s) failed: {', '.join(failed)} (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
