"""Where downloaded corpora and token ids are cached, so a second start skips the slow work.

Everything lives in one data cache dir: `$HARNESS_DATA_CACHE` if set, else `../data-cache`
beside the repository (outside it, so git never sees megabytes of ids). Token ids of a corpus
are stored as two `.npy` files (flat ids + per-document offsets), named by a hash of the
texts, the tokenizer's JSON and the encoding flags; any change to one of those gives a new
key, so a stale cache is never read. Files are loaded memory-mapped (copy-on-write), which
makes a cached 100M-token corpus open in milliseconds.

Small corpora (under `MIN_CACHED_CHARS`) are encoded directly: hashing and file I/O would
cost more than they save, and tests stay free of cache writes.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from data.tokenizer import Tokenizer

CACHE_ENV = "HARNESS_DATA_CACHE"
MIN_CACHED_CHARS = 1_000_000
FORMAT_VERSION = 1  # bump when the file layout or the encoding convention changes


def data_cache_dir() -> Path:
    """The data cache dir: `$HARNESS_DATA_CACHE`, else `../data-cache` beside the repo."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    repo_root = Path(__file__).resolve().parents[1]
    return repo_root.parent / "data-cache"


def texts_digest(texts: Sequence[str]) -> str:
    """Content hash of a list of documents (length-prefixed, so boundaries matter)."""
    h = hashlib.blake2b(digest_size=16)
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def cache_key(*parts: Any) -> str:
    """Stable short hash of JSON-able parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def id_dtype(n_tokens: int) -> np.dtype:
    return np.dtype(np.uint16) if n_tokens <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


def encode_flat(tok: "Tokenizer", texts: Sequence[str], add_bos: bool, add_eos: bool) -> tuple[np.ndarray, np.ndarray]:
    """Encode documents in one batch call → (flat ids, offsets of length len(texts)+1)."""
    ids = tok.encode_batch(list(texts), add_bos=add_bos, add_eos=add_eos)
    lengths = np.fromiter((len(d) for d in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=id_dtype(tok.n_tokens), count=int(offsets[-1]))
    return flat, offsets


def encode_cached(
    tok: "Tokenizer",
    texts: Sequence[str],
    add_bos: bool,
    add_eos: bool,
    use_cache: bool = True,
    cache_dir: Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`encode_flat`, read from / written to the data cache when the corpus is large."""
    if not use_cache or sum(map(len, texts)) < MIN_CACHED_CHARS:
        return encode_flat(tok, texts, add_bos, add_eos)
    key = cache_key(FORMAT_VERSION, tok.to_json(), add_bos, add_eos, texts_digest(texts))
    folder = (cache_dir or data_cache_dir()) / "tokens"
    ids_path, off_path = folder / f"{key}.ids.npy", folder / f"{key}.offsets.npy"
    if ids_path.is_file() and off_path.is_file():
        try:
            # mmap "c": copy-on-write, so torch sees a writable array and doesn't warn
            return np.load(ids_path, mmap_mode="c"), np.load(off_path)
        except (OSError, ValueError) as e:  # a corrupt file: re-encode and overwrite it
            print(f"data cache: ignoring unreadable {ids_path} ({e})", file=sys.stderr)
    flat, offsets = encode_flat(tok, texts, add_bos, add_eos)
    try:
        _atomic_save_npy(off_path, offsets)
        _atomic_save_npy(ids_path, flat)
    except OSError as e:  # a read-only cache must not stop training
        print(f"data cache: could not write {folder} ({e}); continuing without it", file=sys.stderr)
    return flat, offsets


def split_docs(flat: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    """Flat ids + offsets → one id list per document."""
    return [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
