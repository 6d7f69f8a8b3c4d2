"""LMDataModule: task text → tokenizer → token sequences → batches.

Batches are dicts: `x_indices` (B × T long) and, only when some sample was padded, `mask`
(B × T bool, True on real tokens); tasks with an answer separator add `answer_mask` (True on
answer tokens). A batch without `mask` has nothing to mask: every token is real (packed text
windows, equal-length samples), so the loss is a plain mean and nothing is multiplied by ones.
The loss and every metric read the masks when present, so padding never counts.
"""
from __future__ import annotations

from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data.data_params import DataParams  # noqa: F401  (the seed imports it from here)
from data.hf_tokenizers import make_hf_tokenizer
from data.syntheticdata import SYNTHETIC_TASKS
from data.task_resolver import get_task_data
from data.tasks import TaskData
from data.token_cache import encode_cached, split_docs
from data.tokenizer import CharTokenizer, Tokenizer
from core.batch import mycollate  # noqa: F401  (the seed README imports it from here)
from core.errors import UserError

SPLITS = ("train", "val", "test")


def collate_ids(samples: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """`{"x_indices"}` stacked when every sample has the same length (nothing to mask), else `mycollate`."""
    if samples and len({len(s) for s in samples}) == 1:
        return {"x_indices": torch.as_tensor(np.stack([np.asarray(s) for s in samples]), dtype=torch.long)}
    return mycollate(samples, pad_id)


class SequenceDataset(Dataset):
    """One variable-length id sequence per item."""

    def __init__(self, seqs: list[list[int]]):
        self.seqs = seqs

    def __len__(self) -> int:
        return len(self.seqs)

    def __getitem__(self, i: int) -> list[int]:
        return self.seqs[i]


class WindowDataset(Dataset):
    """Windows of `seq_len` tokens over one long token stream, one every `stride` tokens (views, no copy).

    Windows start at 0, stride, 2·stride, ... while a token is left to predict; the last one is
    cut at the end of the stream (shorter), so no token is dropped. With `stride = seq_len - 1`
    (`packed_stride`) consecutive windows share one token, the last input of one being the first
    of the next, so every token after the first is a target exactly once: the mean loss over the
    windows is the loss of the whole stream.
    """

    def __init__(self, stream: np.ndarray, seq_len: int, stride: int):
        if stride < 1 or seq_len < 1:
            raise ValueError(f"WindowDataset needs seq_len >= 1 and stride >= 1, got seq_len={seq_len}, stride={stride}")
        self.stream, self.seq_len, self.stride = stream, seq_len, stride
        if len(stream) <= seq_len:  # short: kept whole (or nothing at all)
            self.n = 1 if len(stream) else 0
        else:  # starts 0, stride, ... below len - 1: the last window still has a token to predict
            self.n = -(-(len(stream) - 1) // stride)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.stream[i * self.stride : i * self.stride + self.seq_len]


def packed_stride(dp: DataParams) -> int:
    """Window stride for packed text: `stride`, or max_seq_len - 1 (every token predicted once)."""
    return dp.stride or max(1, dp.max_seq_len - 1)


def windows(ids: list[int], seq_len: int, stride: int) -> list[list[int]]:
    """Cut one sequence into windows of at most seq_len tokens; the last window ends at the end."""
    if len(ids) <= seq_len:
        return [ids]
    starts = list(range(0, len(ids) - seq_len + 1, stride))
    if starts[-1] + seq_len < len(ids):
        starts.append(len(ids) - seq_len)
    return [ids[s : s + seq_len] for s in starts]


def make_tokenizer(dp: DataParams, task_data: TaskData) -> Tokenizer:
    if dp.tokenizer == "char":
        texts = [t for split in task_data.splits.values() for t in split]
        return CharTokenizer.from_texts(texts)
    return make_hf_tokenizer(dp, task_data.splits["train"])


class LMDataModule(L.LightningDataModule):
    """Holds one task's tokenized splits and hands out dataloaders.

    `setup()` is idempotent and runs on construction, so a datamodule is usable from a
    notebook without a Trainer (`dataset.show_sample(1)`).
    """

    def __init__(
        self,
        data_params: DataParams,
        tokenizer: Tokenizer | None = None,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        task_data: TaskData | None = None,
    ):
        super().__init__()
        self.data_params = data_params
        self.seed = seed if data_params.data_seed is None else data_params.data_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.task_data = task_data if task_data is not None else get_task_data(data_params, self.seed)
        if tokenizer is None:  # a non-text task brings its own input interface (data/vector_input.py)
            tokenizer = self.task_data.tokenizer if self.task_data.tokenizer is not None else make_tokenizer(data_params, self.task_data)
        self.tokenizer = tokenizer
        self.answer_sep_id = self._answer_sep_id()
        self.datasets: dict[str, Dataset] = {s: self._build(s) for s in SPLITS}

    # --- building -----------------------------------------------------------------------
    def _answer_sep_id(self) -> int | None:
        sep = self.task_data.answer_sep
        if sep is None:
            return None
        ids = self.tokenizer.encode(sep, add_bos=False)
        return ids[0] if len(ids) == 1 else None

    def _build(self, split: str) -> Dataset:
        if self.task_data.datasets is not None:  # a non-text task (e.g. tart) brings its own
            return self.task_data.datasets[split]
        dp, tok = self.data_params, self.tokenizer
        texts = self.task_data.splits.get(split, [])
        stride = dp.stride or dp.max_seq_len
        use_cache = dp.token_cache and dp.task not in SYNTHETIC_TASKS  # large corpora: ids cached on disk
        if self.task_data.pack:
            stream, _ = encode_cached(tok, texts, add_bos=False, add_eos=True, use_cache=use_cache)
            return WindowDataset(stream, dp.max_seq_len, packed_stride(dp))
        seqs = split_docs(*encode_cached(tok, texts, add_bos=True, add_eos=True, use_cache=use_cache))
        if dp.task in SYNTHETIC_TASKS:
            longest = max((len(s) for s in seqs), default=0)
            if longest > dp.max_seq_len:
                raise UserError(
                    f"task {dp.task!r} makes samples of {longest} tokens but max_seq_len={dp.max_seq_len}; "
                    "raise max_seq_len (DataParams) or lower max_len"
                )
            return SequenceDataset(seqs)
        return SequenceDataset([w for s in seqs for w in windows(s, dp.max_seq_len, stride)])

    # --- batches ------------------------------------------------------------------------
    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        if self.task_data.collate is not None:
            return self.task_data.collate(list(samples))
        batch = collate_ids(samples, pad_id=self.tokenizer.pad_id)
        if self.answer_sep_id is not None:
            is_sep = batch["x_indices"] == self.answer_sep_id
            after_sep = (is_sep.cumsum(dim=1) - is_sep.long()) > 0  # strictly after the first sep
            batch["answer_mask"] = after_sep & batch["mask"] if "mask" in batch else after_sep
            if not self.data_params.incl_intl_prob:  # train (and measure the loss) on the answer only
                batch["loss_mask"] = batch["answer_mask"]
        return batch

    def _loader(self, split: str, batch_size: int | None, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=generator,
        )

    def train_dataloader(self, batch_size: int | None = None, shuffle: bool = True) -> DataLoader:
        return self._loader("train", batch_size, shuffle)

    def val_dataloader(self, batch_size: int | None = None) -> DataLoader:
        return self._loader("val", batch_size, False)

    def test_dataloader(self, batch_size: int | None = None) -> DataLoader:
        return self._loader("test", batch_size, False)

    # --- inspection ---------------------------------------------------------------------
    def sample_ids(self, i: int, split: str = "train") -> list[int]:
        return [int(t) for t in self.datasets[split][i]]

    def show_sample(self, i: int, split: str = "train") -> str:
        """Print (and return) sample i of a split as text, with its length in tokens."""
        if self.task_data.datasets is not None:  # not text (e.g. tart): show the arrays
            text = repr(self.datasets[split][i])
            print(f"[{split} #{i}] {text}")
            return text
        ids = self.sample_ids(i, split)
        text = self.tokenizer.decode(ids)
        print(f"[{split} #{i}, {len(ids)} tokens] {text}")
        return text

    def prompts(self, split: str = "val", n: int = 3) -> list[tuple[list[int], str | None]]:
        """Prompts for printed samples: the question part (ids) and the expected answer, if any."""
        out = []
        if self.task_data.datasets is not None:  # not text: nothing to print
            return out
        for i in range(min(n, len(self.datasets[split]))):
            ids = self.sample_ids(i, split)
            if self.answer_sep_id is not None and self.answer_sep_id in ids:
                cut = ids.index(self.answer_sep_id) + 1
                out.append((ids[:cut], self.tokenizer.decode(ids[cut:])))
            else:
                out.append(([self.tokenizer.bos_id], None))
        return out

    def unigram_entropy(self) -> float:
        """Cross-entropy (nats) of predicting train tokens from their unigram frequencies."""
        counts = np.zeros(self.tokenizer.n_tokens, dtype=np.float64)
        ds = self.datasets["train"]
        for i in range(min(len(ds), 20000)):
            s = np.asarray(ds[i])[1:]  # targets exclude the first token
            counts += np.bincount(s, minlength=len(counts))
        p = counts / counts.sum()
        nz = p[p > 0]
        return float(-(nz * np.log(nz)).sum())
