"""Reading back what a run wrote, so that a damaged file is refused by name and never loaded silently.

Three kinds of file come back from disk: JSON (run state, saved-run metadata, the run index),
the saved run's `manifest.json` (sha256 and size of every other file), and a checkpoint's
`.sha256` sidecar. Every reader here either returns a value of the expected shape or raises
`UserError` naming the file and what to do. A checkpoint whose sidecar is missing or
unreadable is *unverified* and refused unless the user passes `--allow-unverified`.

Torch-free: used by `main.py` before any run starts.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import UserError

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ALLOW_UNVERIFIED_FLAG = "--allow-unverified"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path, fix: str) -> Any:
    """The JSON in `path`; any failure (missing, a folder, not UTF-8, not JSON, too deep) names the file and `fix`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {fix}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a file; {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (damaged); {fix}") from None
    except OSError as e:
        raise UserError(f"{path} can't be read ({e.strerror or e}); {fix}") from None
    if not text.strip():
        raise UserError(f"{path} is empty (damaged); {fix}")
    try:
        return json.loads(text)
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a file this harness wrote; {fix}") from None
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({str(e).splitlines()[0]}; truncated or altered); {fix}") from None


def expect(ok: bool, path: Path, what: str, fix: str) -> None:
    """Raise the one-line error for a file whose JSON parsed but has the wrong shape."""
    if not ok:
        raise UserError(f"{path} does not hold {what} (altered or from another program); {fix}")


def read_json_dict(path: Path, fix: str) -> dict[str, Any]:
    obj = read_json(path, fix)
    expect(isinstance(obj, dict), path, "a JSON object", fix)
    return obj


def inside(folder: Path, rel: Any) -> Path | None:
    """`folder/rel` when `rel` is a plain relative path that stays inside `folder`, else None (never touches the disk)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\x00" in rel:
        return None
    p = PurePosixPath(rel)
    if p.is_absolute() or any(part in ("..", "") for part in p.parts):
        return None
    return Path(folder) / p


# --- saved runs: manifest.json ---------------------------------------------------------------
def read_manifest(folder: Path, name: str, required: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The manifest of a saved run, checked for shape, for entries outside the folder and for the files every run has."""
    path = Path(folder) / name
    fix = f"the run in {folder} can't be trusted; copy it again from where it was trained, or retrain it"
    manifest = read_json_dict(path, fix)
    for rel, info in manifest.items():
        if inside(folder, rel) is None:
            raise UserError(f"{path} lists {rel!r}, which is not a file inside the run folder (altered); {fix}")
        ok = isinstance(info, dict) and isinstance(info.get("sha256"), str) and SHA256_HEX.match(info["sha256"]) is not None
        ok = ok and isinstance(info.get("bytes"), int) and not isinstance(info["bytes"], bool) and info["bytes"] >= 0
        expect(ok, path, f"a sha256 and a size for {rel!r}", fix)
    missing = [r for r in required if r not in manifest]
    if missing:
        raise UserError(f"{path} has no entry for {', '.join(missing)}, so it can't vouch for the run (altered); {fix}")
    return manifest


def verify_files(folder: Path, name: str, required: tuple[str, ...], only: tuple[str, ...] | None = None) -> None:
    """Refuse a saved run whose files are missing, truncated or altered, naming the file.

    `only`: check just these entries (a reader that needs a few small files need not hash the weights).
    """
    folder = Path(folder)
    if not (folder / name).exists():
        raise UserError(f"{folder} has no {name}: not a complete saved run (a run in progress resumes with --resume={folder})")
    manifest = read_manifest(folder, name, required)
    for rel, info in manifest.items():
        if only is not None and rel not in only:
            continue
        p = Path(folder) / rel
        if not p.is_file():
            raise UserError(f"{p} is missing from the saved run (listed in {name}); copy the run again or retrain it")
        size = p.stat().st_size
        if size != info["bytes"]:
            raise UserError(f"{p} is {size} bytes but was saved with {info['bytes']} per {name} (truncated or altered); copy the run again or retrain it")
        if sha256_file(p) != info["sha256"]:
            raise UserError(f"{p} does not match its sha256 in {name} (altered after saving); copy the run again or retrain it")


# --- checkpoints: last.ckpt.sha256 ------------------------------------------------------------
def accepted_hashes(sidecar: Path) -> list[str] | None:
    """The sha256 values a checkpoint may have, or None when its sidecar is missing, unreadable or malformed."""
    try:
        hashes = json.loads(Path(sidecar).read_text(encoding="utf-8"))["sha256"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(hashes, list) or not hashes or not all(isinstance(h, str) and SHA256_HEX.match(h) for h in hashes):
        return None
    return hashes


def verify_checkpoint_file(path: Path, sidecar: Path, allow_unverified: bool = False) -> None:
    """Refuse a checkpoint whose bytes don't match its recorded sha256, or that has no readable record at all."""
    path = Path(path)
    restart = f"delete {path.parent.parent} to restart the run from scratch"
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a folder, not a file; remove it and restore the checkpoint, or {restart}")
    if not path.is_file():
        raise UserError(f"checkpoint {path} is missing; restore it, or {restart}")
    accepted = accepted_hashes(sidecar)
    if accepted is None:
        if allow_unverified:
            print(f"warning: loading unverified checkpoint {path} ({sidecar.name} missing or unreadable), as {ALLOW_UNVERIFIED_FLAG} asks", flush=True)
            return
        state = "missing" if not sidecar.exists() else "unreadable"
        raise UserError(
            f"checkpoint {path} can't be verified: {sidecar} is {state}; restore it, pass {ALLOW_UNVERIFIED_FLAG} to load the "
            f"checkpoint anyway (still without executing pickled code), or {restart}"
        )
    if sha256_file(path) not in accepted:
        raise UserError(f"checkpoint {path} does not match its sha256 in {sidecar.name} (damaged or altered); {restart}")


# --- run_state.json: a checksum of its own content --------------------------------------------
CHECKSUM_KEY = "checksum"


def content_checksum(obj: dict[str, Any]) -> str:
    body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def with_checksum(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, CHECKSUM_KEY: content_checksum(obj)}


def check_checksum(obj: dict[str, Any], path: Path, fix: str) -> None:
    """A JSON file that carries its own checksum: refuse it when the content no longer matches."""
    if CHECKSUM_KEY in obj and obj[CHECKSUM_KEY] != content_checksum(obj):
        raise UserError(
            f"{path} was altered after it was written (its {CHECKSUM_KEY!r} no longer matches); {fix} "
            f"(if you edited it on purpose, delete its {CHECKSUM_KEY!r} entry)"
        )
