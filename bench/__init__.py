"""Benchmarks: is the harness as fast as the loop you would write yourself?

`python -m bench` runs every contender in one process with the same model size, batch,
sequence length, dtype and thread count, and writes `docs/benchmarks.md` (figures, ratios
against the goals, machine) plus `docs/benchmarks.json` (raw numbers). Sections:

- throughput (bench/throughput.py): training tokens/s of the harness (torch and custom layer),
  a bare PyTorch loop over the same module and data, and a nanoGPT-style reference GPT;
- quality (bench/quality.py): nanoGPT's "baby GPT" CPU setting on Shakespeare, harness vs reference;
- sampling (bench/sampling.py): greedy generation with and without the KV cache, and vs HF `generate`;
- startup (bench/startup.py): `main.py --help` and `--dry-run` wall time.

`--quick` shrinks everything to seconds (used by tests/test_bench.py). `--device cuda
--precision bf16-mixed` measures a GPT-2-small-sized model and its MFU.
"""
