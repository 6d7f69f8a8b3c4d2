"""A pretrained HF causal LM (hub name or `save_pretrained` folder) as our `LM`: the one place that
joins the hub (`core/hub.py`), the tokenizer (`data/hf_tokenizers.py`) and the weight conversion
(`model/from_hf.py`). `pretrained.get_hf_model`, `gpt2.get_gpt2` and `init_from=<HF model>` call it.

`config.json` is read first, so an unsupported `model_type` is refused before any weights load;
offline, a hub name missing from the local cache stops with one line saying how to supply a folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core import hub
from data.hf_tokenizers import PretrainedTokenizer
from model.from_hf import family, lm_from_hf
from model.lm import LM


def load_hf_causal_lm(name_or_folder: str, revision: str | None = None, what: str | None = None) -> Any:
    """The transformers model itself (weights as HF stores them), after its family is checked."""
    from transformers import AutoModelForCausalLM  # heavy; this module is imported by `init_from`, which --help reaches

    fam = family(name_or_folder, hub.hf_model_type(name_or_folder, revision))
    return hub.from_pretrained(AutoModelForCausalLM, name_or_folder, revision, what or fam.label)


def get_hf_model(name_or_folder: str, revision: str | None = None, device: str | None = None) -> LM:
    """Our `LM`, in eval mode, with the model's own tokenizer."""
    name = str(Path(name_or_folder).expanduser()) if hub.is_local(name_or_folder) else name_or_folder
    hf = load_hf_causal_lm(name, revision)
    lm = lm_from_hf(hf, PretrainedTokenizer.load(name), name)
    return lm.to(device) if device else lm
