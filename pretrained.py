"""Pretrained Hugging Face models in our `LM` interface, whatever the family.

    import pretrained
    lm = pretrained.get_hf_model("gpt2")                       # a hub name, or a save_pretrained folder
    lm = pretrained.get_pythia("70m", step=1000)               # EleutherAI/pythia-70m at revision step1000
    for label, lm in pretrained.get_all_checkpoints([folder_a, folder_b]):   # a training trajectory
        ...

`get_hf_model` reads the model's `config.json` and hands it to the loader registered for its
`model_type` in `FAMILIES` (GPT-2: `gpt2.get_gpt2`). Each loader maps the pretrained weights into
our own layers, so sampling, perplexities, hooks and attention plots work as on our runs.
Offline, a hub name that is not in the local cache stops with one line saying how to supply a
folder instead.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from train.errors import UserError

# model_type (config.json) → loader(name_or_folder, revision) returning our LM in eval mode
FAMILIES: dict[str, Callable[[str, str | None], Any]] = {}

PYTHIA_SIZES = ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")


def family(model_type: str) -> Callable:
    """Register a loader for a `model_type`."""
    def add(fn: Callable) -> Callable:
        FAMILIES[model_type] = fn
        return fn
    return add


@family("gpt2")
def _gpt2(name: str, revision: str | None) -> Any:
    import gpt2

    return gpt2.get_gpt2(name, revision=revision)


def hf_model_type(name_or_folder: str, revision: str | None = None) -> str:
    """`model_type` from config.json (a local folder, the hub, or the local HF cache when offline)."""
    folder = Path(name_or_folder).expanduser()
    if folder.is_dir():
        if revision is not None:
            raise UserError(f"{name_or_folder!r} is a local folder: it has no revision {revision!r}")
        try:
            return json.loads((folder / "config.json").read_text()).get("model_type", "")
        except (OSError, ValueError):
            raise UserError(f"{folder} has no readable config.json; pass a folder written by save_pretrained") from None
    from transformers import AutoConfig

    from data.hf_datasets import hub_offline, hub_reachable

    online = hub_reachable()
    try:
        with nullcontext() if online else hub_offline():
            return AutoConfig.from_pretrained(name_or_folder, revision=revision, local_files_only=not online).model_type
    except (OSError, ValueError) as e:
        where = "the Hugging Face hub" if online else "the local HF cache (the hub is unreachable)"
        rev = f", revision={revision!r}" if revision else ""
        raise UserError(
            f"{name_or_folder!r}: not a local folder, and it could not be loaded from {where} ({type(e).__name__}); "
            f"on a connected machine save it with AutoModelForCausalLM.from_pretrained({name_or_folder!r}{rev}).save_pretrained(DIR) "
            "and AutoTokenizer likewise, then pass DIR"
        ) from None


def get_hf_model(name_or_folder: str, revision: str | None = None, device: str | None = None) -> Any:
    """A pretrained causal LM (hub name or save_pretrained folder) as our `LM`, in eval mode."""
    model_type = hf_model_type(name_or_folder, revision)
    loader = FAMILIES.get(model_type)
    if loader is None:
        raise UserError(f"{name_or_folder!r}: model_type {model_type!r} is not supported yet; supported: {', '.join(sorted(FAMILIES))}")
    lm = loader(str(Path(name_or_folder).expanduser()) if Path(name_or_folder).expanduser().is_dir() else name_or_folder, revision)
    return lm.to(device) if device else lm


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
