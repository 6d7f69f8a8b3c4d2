"""What every contender shares: model size, batch, sequence length, dtype, threads, step counts.

One `BenchSettings` is built from the command line and handed to every section, so no
contender can run at a different size or precision than the others.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

CONTENDERS = ("a", "b", "c", "d", "a+snap", "l", "a+compile", "c+compile", "d+compile")  # bench/throughput.py
SECTIONS = ("throughput", "quality", "sampling", "startup", "health")


@dataclass(frozen=True)
class ModelSize:
    n_layers: int
    n_heads: int
    dim: int
    seq_len: int  # tokens the model reads per sample (the harness windows are seq_len + 1 long)
    batch_size: int
    vocab_size: int  # incl. the harness' 3 specials (PAD, BOS, EOS)

    def describe(self, vocab: bool = True) -> str:
        return (f"{self.n_layers} layers, {self.n_heads} heads, dim {self.dim}, seq {self.seq_len}, "
                f"batch {self.batch_size}" + (f", vocab {self.vocab_size}" if vocab else ""))


# nanoGPT's "baby GPT" CPU setting (README: shakespeare_char on a MacBook), vocab ≈ our char vocab.
BABY_GPT = ModelSize(n_layers=4, n_heads=4, dim=128, seq_len=64, batch_size=12, vocab_size=88)
# GPT-2 small (124M parameters) for the GPU table; vocab as GPT-2's BPE.
GPT2_SMALL = ModelSize(n_layers=12, n_heads=12, dim=768, seq_len=1024, batch_size=16, vocab_size=50257)
TINY = ModelSize(n_layers=2, n_heads=2, dim=32, seq_len=32, batch_size=8, vocab_size=40)


@dataclass(frozen=True)
class BenchSettings:
    device: str = "cpu"  # "cpu" or "cuda"
    precision: str = "32-true"  # Lightning's name; the bare loops use the same autocast
    threads: int = 2
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS
    size: ModelSize = BABY_GPT
    warmup_steps: int = 15  # steps before the first timed window (allocator, caches, first-step costs)
    window_steps: int = 20  # steps per timed window
    n_windows: int = 5  # timed windows per contender per round
    rounds: int = 3  # contenders run a, b, c, d, a, b, c, d, ... so load drift hits all alike (per-round ratios show how much)
    compile_contenders: bool = False  # also time torch.compile variants of (a), (c) and (d)
    contenders: tuple[str, ...] = ()  # throughput: only these (e.g. ("a", "c", "d")); empty = all
    big_batch_factor: int = 4  # also time (a), (c), (d) at this many times the batch, interleaved (0 = skip): is the overhead per step?
    # quality: nanoGPT baby GPT, 2000 iterations
    quality_iters: int = 2000
    quality_size: ModelSize = BABY_GPT
    # sampling
    sample_tokens: int = 256
    sample_batches: tuple[int, ...] = (1, 8)
    sample_repeats: int = 3
    gpt2_size: tuple[int, int, int] = (4, 4, 128)  # tiny GPT-2: layers, heads, dim
    # startup
    startup_repeats: int = 3
    peak_tflops: float | None = None  # for MFU; None = looked up from the GPU name
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_step(self) -> int:
        return self.size.batch_size * self.size.seq_len

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_settings(quick: bool, device: str, precision: str, threads: int, sections: tuple[str, ...] | None = None, **overrides: Any) -> BenchSettings:
    """Defaults per mode: CPU → baby GPT; CUDA → GPT-2 small; `quick` → tiny and few steps."""
    s = BenchSettings(device=device, precision=precision, threads=threads, quick=quick)
    if device == "cuda":
        s = replace(s, size=GPT2_SMALL, warmup_steps=10, window_steps=10, n_windows=5, rounds=1,
                    sections=("throughput", "sampling", "startup", "health"), compile_contenders=True, big_batch_factor=0)
    if quick:
        s = replace(s, size=TINY, warmup_steps=2, window_steps=3, n_windows=2, rounds=1, quality_iters=20,
                    quality_size=replace(TINY, seq_len=32), sample_tokens=16, sample_repeats=1, gpt2_size=(2, 2, 32),
                    startup_repeats=1, compile_contenders=False, big_batch_factor=2)
        s = replace(s, sections=tuple(x for x in s.sections if x != "quality"))  # quality needs the corpus
    if sections is not None:
        s = replace(s, sections=sections)
    return replace(s, **overrides) if overrides else s
