"""Reaching the Hugging Face hub without waiting through the libraries' retries (~25 s offline).

A 3 s TCP check decides; when it fails, the block runs in offline mode, which still finds copies
in the local HF cache. Datasets (`data/hf_datasets.py`), tokenizers (`data/hf_tokenizers.py`) and
models (`model/from_hf.py` via `train/hf_models.py`, `gpt2.py`) all come through here, so one
monkeypatch of `hub_reachable` takes every one of them offline in a test.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from core.errors import UserError

HUB_CHECK_TIMEOUT_S = 3.0
TRUE_VALUES = {"1", "true", "yes", "on"}
OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = HUB_CHECK_TIMEOUT_S) -> bool:
    """False when offline mode is set or a TCP connection to the hub endpoint fails quickly."""
    if any(os.environ.get(v, "").lower() in TRUE_VALUES for v in OFFLINE_VARS):
        return False
    if any(os.environ.get(v) for v in PROXY_VARS):
        return True  # can't test through a proxy cheaply; let the library try
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextmanager
def hub_offline() -> Iterator[None]:
    """Switch huggingface_hub / datasets to offline mode (local cache only) for a block."""
    # imported here, not at the top: `main.py --help` imports this module and must stay fast
    import datasets.config as dconf
    import huggingface_hub.constants as hconst

    targets = [(hconst, "HF_HUB_OFFLINE"), (dconf, "HF_HUB_OFFLINE"), (dconf, "HF_DATASETS_OFFLINE")]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr in targets if hasattr(mod, attr)]
    try:
        for mod, attr, _ in saved:
            setattr(mod, attr, True)
        yield
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).expanduser().is_dir()


@contextmanager
def reach(local: bool = False) -> Iterator[bool]:
    """Yields whether the hub is used; when it is unreachable (and `local` is False) the block runs offline."""
    online = local or hub_reachable()
    with nullcontext() if online else hub_offline():
        yield online


def where(local: bool, online: bool) -> str:
    """Where a failed load looked, for its one-line error."""
    return "the local folder" if local else ("the Hugging Face hub" if online else "the local HF cache (the hub is unreachable)")


def from_pretrained(cls: Any, name_or_path: str, revision: str | None = None, what: str = "model") -> Any:
    """`cls.from_pretrained` on a folder, the hub, or (offline) the local HF cache; a failure is one line."""
    local = online = is_local(name_or_path)
    try:
        with reach(local) as online:
            return cls.from_pretrained(str(Path(name_or_path).expanduser()) if local else name_or_path, local_files_only=not online, revision=revision)
    except (OSError, ValueError) as e:
        raise UserError(f"{what} {name_or_path!r}: could not load it from {where(local, online)} ({type(e).__name__}); pass a hub name or a save_pretrained folder") from None


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
    from transformers import AutoConfig  # heavy: only when a hub name is actually asked for

    online = False
    try:
        with reach() as online:
            return AutoConfig.from_pretrained(name_or_folder, revision=revision, local_files_only=not online).model_type
    except (OSError, ValueError) as e:
        rev = f", revision={revision!r}" if revision else ""
        raise UserError(
            f"{name_or_folder!r}: not a local folder, and it could not be loaded from {where(False, online)} ({type(e).__name__}); "
            f"on a connected machine save it with AutoModelForCausalLM.from_pretrained({name_or_folder!r}{rev}).save_pretrained(DIR) "
            "and AutoTokenizer likewise, then pass DIR"
        ) from None
