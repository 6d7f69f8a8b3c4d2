"""Sampling speed: greedy generation of N tokens, batch 1 and 8, on one tiny GPT-2.

The model is a random `GPT2Config` written with `save_pretrained` to a temp folder (no hub) and
loaded twice: by `gpt2.get_gpt2(folder)` into our `LM` (sampled with and without the KV cache)
and by transformers as `GPT2LMHeadModel` (sampled with `generate`, its KV cache on). EOS is
switched off on both sides so every run makes exactly N tokens; greedy outputs must agree.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench.settings import BenchSettings
import gpt2

PROMPT_LEN = 8
BPE_TEXTS = [
    "to be, or not to be, that is the question: whether 'tis nobler in the mind to suffer",
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles",
    "now is the winter of our discontent made glorious summer by this sun of york",
    "all the world's a stage, and all the men and women merely players",
]


def make_tiny_gpt2(folder: Path, n_layer: int, n_head: int, n_embd: int, n_positions: int, seed: int = 0) -> Path:
    """A byte-level BPE tokenizer and a random GPT-2 in `folder`, as `save_pretrained` writes them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    eot = "<|endoftext|>"
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=[eot], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(BPE_TEXTS * 20, trainer=trainer)
    GPT2TokenizerFast(tokenizer_object=backend, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(folder)
    eot_id = backend.token_to_id(eot)
    config = GPT2Config(vocab_size=backend.get_vocab_size(), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=eot_id, eos_token_id=eot_id, initializer_range=0.1)
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


class NoEOS:
    """Our tokenizer with EOS unreachable, so `LM.sample` always runs to the length limit."""

    def __init__(self, tok: Any):
        self._tok = tok
        self.eos_id = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)


def _timed(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> tuple[float, float, Any]:
    """Median wall seconds, median process CPU seconds, and the output of the warm-up call."""
    out = fn()  # warm-up (and the output to check)
    times, cpu = [], []
    for _ in range(repeats):
        sync()
        t, c = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu), out


def run(s: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    from transformers import GPT2LMHeadModel  # heavy: only this section needs it

    n_new, device = s.sample_tokens, torch.device(s.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n_layer, n_head, n_embd = s.gpt2_size
    results: dict[str, Any] = {"n_new_tokens": n_new, "prompt_len": PROMPT_LEN, "tokens_per_s": {}, "tokens_per_cpu_s": {}, "seconds": {}, "same_tokens": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gpt2-") as tmp:
        folder = make_tiny_gpt2(Path(tmp), n_layer, n_head, n_embd, n_positions=PROMPT_LEN + n_new + 8)
        lm = gpt2.get_gpt2(tmp, device=s.device)
        hf = GPT2LMHeadModel.from_pretrained(str(folder)).to(device).eval()
    lm.tokenizer = NoEOS(lm.tokenizer)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    results["model"] = f"GPT-2 config: {n_layer} layers, {n_head} heads, dim {n_embd}, vocab {hf.config.vocab_size}, {sum(p.numel() for p in hf.parameters()):,} parameters"
    gen = torch.Generator().manual_seed(0)
    for batch in s.sample_batches:
        prompts = torch.randint(1, hf.config.vocab_size, (batch, PROMPT_LEN), generator=gen)
        rows = prompts.tolist()
        limit = PROMPT_LEN + n_new

        def ours(use_cache: bool) -> list[list[int]]:
            return lm.sample(rows, max_seq_len=limit, temperature=0, as_str=False, use_cache=use_cache)

        def theirs() -> list[list[int]]:
            x = prompts.to(device)
            with torch.no_grad():
                return hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n_new, do_sample=False, use_cache=True).tolist()

        contenders = {"ours_kv": lambda: ours(True), "ours_recompute": lambda: ours(False), "hf_generate": theirs}
        outputs = {}
        for name, fn in contenders.items():
            sec, cpu_sec, outputs[name] = _timed(fn, s.sample_repeats, sync)
            n_made = sum(len(r) - PROMPT_LEN for r in outputs[name])
            if n_made != batch * n_new:
                raise RuntimeError(f"sampling bench: {name} made {n_made} tokens, expected {batch * n_new}")
            key = f"{name}@b{batch}"
            results["seconds"][key] = sec
            results["tokens_per_s"][key] = batch * n_new / sec
            results["tokens_per_cpu_s"][key] = batch * n_new / max(cpu_sec, 1e-9)
            log(f"[sampling] {key}: {batch * n_new / sec:,.0f} tokens/s")
        results["same_tokens"][f"b{batch}"] = outputs["ours_kv"] == outputs["ours_recompute"] == outputs["hf_generate"]
    return results
