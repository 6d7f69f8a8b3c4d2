"""Pretrained Hugging Face models in our `LM` interface: GPT-2, GPT-NeoX/Pythia, Llama.

    import pretrained
    lm = pretrained.get_hf_model("gpt2")                       # a hub name, or a save_pretrained folder
    lm = pretrained.get_pythia("70m", step=1000)               # EleutherAI/pythia-70m at revision step1000
    for label, lm in pretrained.get_all_checkpoints([folder_a, folder_b]):   # a training trajectory
        ...
    table = pretrained.over_checkpoints([0, 1000, 143000], fn)   # dynamics.Table → plot_over_checkpoints

`get_hf_model` reads the model's `config.json` and converts the weights with the converter
registered for its `model_type` (`model/from_hf.py`: how each family maps onto our registered
components, and how to add one); loading joins the hub, tokenizer and conversion in
`train/hf_models.py`. Sampling (KV cache), perplexities, hooks and attention plots then run
through the same code as our own runs. Offline, a hub name that is not in the local cache stops
with one line saying how to supply a folder instead.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from core.errors import UserError

PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")


def get_hf_model(name_or_folder: str, revision: str | None = None, device: str | None = None) -> Any:
    """A pretrained causal LM (hub name or save_pretrained folder) as our `LM`, in eval mode."""
    from train.hf_models import get_hf_model as load  # torch and transformers: not at import time

    return load(name_or_folder, revision, device)


def pythia_name(size: str, deduped: bool = False) -> str:
    if size not in PYTHIA_SIZES:
        raise UserError(f"no Pythia size {size!r}; sizes: {', '.join(PYTHIA_SIZES)}")
    return f"EleutherAI/pythia-{size}{'-deduped' if deduped else ''}"


def get_pythia(size: str = "70m", step: int | None = None, deduped: bool = False, device: str | None = None) -> Any:
    """Pythia at training step `step` (hub revision `step{N}`; None = the final weights)."""
    return get_hf_model(pythia_name(size, deduped), revision=None if step is None else f"step{step}", device=device)


def get_all_checkpoints(sources: Iterable[str | int], size: str = "70m", deduped: bool = False) -> Iterator[tuple[str, Any]]:
    """(label, LM) for each source in order, loaded one at a time: ints are Pythia steps of `size`,
    strings are local folders or hub names. Feed it to the training-dynamics tools."""
    for s in sources:
        if isinstance(s, int):
            yield f"step{s}", get_pythia(size, step=s, deduped=deduped)
        else:
            yield str(s), get_hf_model(str(s))


PYTHIA_BATCH = 1024  # sequences per Pythia optimizer step: step N has seen N * 1024 sequences


def over_checkpoints(sources: Iterable[str | int], fn: Callable[[Any], Any], size: str = "70m", name: str = "value") -> Any:
    """`dynamics.over_checkpoints` for a pretrained trajectory: `fn(lm)` at each source → a `dynamics.Table`
    that `plot_over_checkpoints` draws. Pythia steps give `step` and `n_samples` (step × 1024 sequences);
    folders and hub names are numbered 0, 1, ... in the order given (their `checkpoint` column names them)."""
    from dynamics import Table  # torch and lightning: on first use

    table = Table()
    for i, (label, lm) in enumerate(get_all_checkpoints(sources, size=size)):
        step = int(label[4:]) if label.startswith("step") and label[4:].isdigit() else i
        table.add(fn(lm), name, checkpoint=label, n_samples=step * PYTHIA_BATCH if label.startswith("step") else i, step=step)
    return table
