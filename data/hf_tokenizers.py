"""Subword tokenizers backed by Hugging Face's Rust `tokenizers`: trained BPE and pretrained ones.

- `tokenizer="bpe"`: byte-level BPE trained on the train split (vocab `bpe_vocab_size`, PAD/BOS/
  EOS as ids 0..2). Byte-level means every string round-trips exactly:
  `decode(encode(s)) == s`. Training on a large corpus is cached in the data cache dir.
- any other value: a name or a local folder for `transformers.AutoTokenizer.from_pretrained`
  ("gpt2" on a connected machine, or a folder written by `save_pretrained`). Only the fast
  tokenizer's Rust backend is kept; missing BOS/EOS/PAD tokens are taken from the tokenizer's
  own special tokens (GPT-2: `<|endoftext|>` is BOS, EOS and PAD) or added.

Both serialise the backend's full `tokenizer.json` inside `to_json()`, so a saved run restores
the exact tokenizer without the hub and without `transformers`.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from data import token_cache
from data.data_params import DataParams
from data.tokenizer import Tokenizer, register_tokenizer
from core import hub
from core.errors import UserError

SPECIALS = ("<|pad|>", "<|bos|>", "<|eos|>")  # ids 0, 1, 2 in a trained BPE
MIN_BPE_VOCAB = 256 + len(SPECIALS)  # the byte alphabet plus the specials


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer` behind our interface (not registered: use a subclass)."""

    def __init__(self, backend: Any, bos_id: int, eos_id: int, pad_id: int):
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.bos_id, self.eos_id, self.pad_id = int(bos_id), int(eos_id), int(pad_id)

    @property
    def n_tokens(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def _encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def _decode_ids(self, ids: list[int]) -> str:
        return self.backend.decode(ids, skip_special_tokens=False)

    def token_str(self, i: int) -> str:
        return self.backend.decode([int(i)], skip_special_tokens=False)

    def _json_fields(self) -> dict[str, Any]:
        return {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id, "tokenizer_json": self.backend.to_str()}

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._json_fields()}

    @classmethod
    def _backend_from_json(cls, d: dict[str, Any]) -> Any:
        from tokenizers import Tokenizer as RustTokenizer

        return RustTokenizer.from_str(d["tokenizer_json"])


@register_tokenizer
class BPETokenizer(HFTokenizer):
    """Byte-level BPE trained on the task's train split."""

    kind = "bpe"

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> "BPETokenizer":
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < MIN_BPE_VOCAB:
            raise UserError(f"bpe_vocab_size={vocab_size} is too small: byte-level BPE needs at least {MIN_BPE_VOCAB} (256 bytes + 3 specials)")
        backend = RustTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIALS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        pieces = [p for t in texts for p in split_for_batch(t)]
        backend.train_from_iterator(pieces, trainer=trainer, length=len(pieces))
        pad, bos, eos = (backend.token_to_id(t) for t in SPECIALS)
        return cls(backend, bos_id=bos, eos_id=eos, pad_id=pad)

    def _encode(self, text: str) -> list[int]:
        return self._encode_many([text])[0]

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Batch-encode ~16 KB pieces in parallel and stitch each document back together."""
        pieces = [split_for_batch(t) for t in texts]
        enc = self.backend.encode_batch([p for ps in pieces for p in ps], add_special_tokens=False)
        out, i = [], 0
        for ps in pieces:
            ids: list[int] = []
            for e in enc[i : i + len(ps)]:
                ids += e.ids
            out.append(ids)
            i += len(ps)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BPETokenizer":
        return cls(cls._backend_from_json(d), d["bos_id"], d["eos_id"], d["pad_id"])


@register_tokenizer
class PretrainedTokenizer(HFTokenizer):
    """A pretrained fast tokenizer loaded through `transformers.AutoTokenizer`."""

    kind = "pretrained"

    def __init__(self, backend: Any, bos_id: int, eos_id: int, pad_id: int, name: str = ""):
        super().__init__(backend, bos_id, eos_id, pad_id)
        self.name = name

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, **self._json_fields()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "PretrainedTokenizer":
        return cls(cls._backend_from_json(d), d["bos_id"], d["eos_id"], d["pad_id"], name=d.get("name", ""))

    @classmethod
    def load(cls, name_or_path: str) -> "PretrainedTokenizer":
        """Load by hub name or local folder; offline, only local folders and the HF cache work."""
        local = online = hub.is_local(name_or_path)
        try:
            from transformers import AutoTokenizer  # heavy: only when a pretrained tokenizer is asked for

            with hub.reach(local) as online:
                hf = AutoTokenizer.from_pretrained(str(Path(name_or_path).expanduser()) if local else name_or_path,
                                                   local_files_only=not online)
        except Exception as e:
            raise UserError(
                f"tokenizer {name_or_path!r}: could not load it from {hub.where(local, online)} ({type(e).__name__}); use 'char', 'bpe', "
                "a tokenizer name on the hub, or a folder written by save_pretrained"
            ) from None
        return cls.from_hf(hf, name=name_or_path)

    @classmethod
    def from_hf(cls, hf: Any, name: str = "") -> "PretrainedTokenizer":
        """Wrap a loaded transformers tokenizer: copy its Rust backend, resolve BOS/EOS/PAD."""
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as RustTokenizer

        rust = getattr(hf, "backend_tokenizer", None)
        if rust is None:
            raise UserError(f"tokenizer {name!r} has no fast (Rust) version; pick a tokenizer that ships tokenizer.json")
        backend = RustTokenizer.from_str(rust.to_str())  # our own copy: never mutate the caller's

        def first_id(*attrs: str) -> int | None:
            for a in attrs:
                v = getattr(hf, a, None)
                if v is not None:
                    return int(v)
            return None

        eos = first_id("eos_token_id", "sep_token_id")
        bos = first_id("bos_token_id", "cls_token_id")
        bos = bos if bos is not None else eos
        pad = first_id("pad_token_id")
        pad = pad if pad is not None else eos
        ids = {"bos": bos, "eos": eos, "pad": pad}
        for role, tok_str in zip(("pad", "bos", "eos"), SPECIALS):
            if ids[role] is None:  # the tokenizer defines none: add one
                backend.add_special_tokens([AddedToken(tok_str, special=True)])
                ids[role] = backend.token_to_id(tok_str)
        return cls(backend, bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["pad"], name=name)


# Cut only between "<non-space>\n" and a non-space character: the byte-level regex makes
# that "\n" its own pre-token whether or not the text continues, so encoding the pieces gives
# exactly the ids of encoding the whole text (a test checks this on the corpus).
_SAFE_CUT = re.compile(r"(?<=\S\n)(?=\S)")


def split_for_batch(text: str, size: int = 1 << 14) -> list[str]:
    """A long document → ~16 KB pieces at safe cut points, so the Rust side can use all cores."""
    pieces, start = [], 0
    while len(text) - start > 2 * size:
        m = _SAFE_CUT.search(text, start + size)
        if m is None:
            break
        pieces.append(text[start : m.start()])
        start = m.start()
    pieces.append(text[start:])
    return pieces


def bpe_for_corpus(texts: Sequence[str], vocab_size: int, use_cache: bool = True) -> BPETokenizer:
    """Train BPE on `texts`, or load the one trained before on the same texts and vocab size."""
    import tokenizers

    if not use_cache or sum(map(len, texts)) < token_cache.MIN_CACHED_CHARS:
        return BPETokenizer.train(texts, vocab_size)
    key = token_cache.cache_key("bpe", token_cache.FORMAT_VERSION, vocab_size, SPECIALS, tokenizers.__version__, token_cache.texts_digest(texts))
    path = token_cache.data_cache_dir() / "tokenizers" / f"bpe-{key}.json"
    if path.is_file():
        try:
            return BPETokenizer.from_json(json.loads(path.read_text(encoding="utf-8")))
        except Exception as e:  # a corrupt file: retrain and overwrite it
            print(f"data cache: ignoring unreadable {path} ({type(e).__name__})", file=sys.stderr)
    tok = BPETokenizer.train(texts, vocab_size)
    try:
        token_cache.atomic_write_bytes(path, json.dumps(tok.to_json(), ensure_ascii=False).encode("utf-8"))
    except OSError as e:
        print(f"data cache: could not write {path} ({e}); continuing without it", file=sys.stderr)
    return tok


def make_hf_tokenizer(dp: DataParams, train_texts: Sequence[str]) -> HFTokenizer:
    """The tokenizer DataParams.tokenizer names (anything but 'char')."""
    if dp.tokenizer == "bpe":
        if not train_texts:
            raise UserError(f"tokenizer='bpe' needs training text, but task {dp.task!r} has an empty train split")
        return bpe_for_corpus(train_texts, dp.bpe_vocab_size, use_cache=dp.token_cache)
    return PretrainedTokenizer.load(dp.tokenizer)
