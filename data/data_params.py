"""DataParams: what to train on and how it is tokenized and split (the `DataParams` config section).

The settings every task shares live here; a task's own settings live in its file in
`data/tasks/` (`@task_settings`) and are added as fields when this module is imported.
"""
from __future__ import annotations

from dataclasses import dataclass

from data.task_registry import with_task_settings
from core.params_base import param


@dataclass
class DataParams:
    task: str = param("copy", "task name: a task in data/tasks/ (or $HARNESS_TASK_PATH), a corpus, or a folder under data-path.txt")
    n_train_samples: int = param(20000, "synthetic tasks: number of training samples", min=1, max=10**9)
    n_val_samples: int = param(500, "synthetic tasks: number of validation samples (disjoint from train)", min=1, max=10**9)
    n_test_samples: int = param(500, "synthetic tasks: number of test samples (disjoint from train and val)", min=0, max=10**9)
    min_len: int = param(4, "synthetic tasks: shortest input sequence", min=0, max=10**6)
    max_len: int = param(12, "synthetic tasks: longest input sequence", min=1, max=10**6)
    alphabet: str = param("abcdefghij", "synthetic tasks: symbols the inputs are drawn from")
    max_seq_len: int = param(128, "longest training sequence in tokens (BOS/EOS included); longer text is cut into windows", min=2, max=2**24)
    stride: int | None = param(None, "window stride for long text; None = max_seq_len - 1 for packed text (windows share one token, so every token is predicted exactly once), max_seq_len for long documents", min=1, max=2**24)
    tokenizer: str = param("char", "'char', 'bpe' (trained on the train split), or a pretrained name/path such as 'gpt2'")
    bpe_vocab_size: int = param(2000, "vocabulary size when tokenizer='bpe'", min=1, max=10**7)
    data_seed: int | None = param(None, "seed for generating/splitting data; None = the run's --seed")
    val_fraction: float = param(0.05, "corpora without their own splits (shakespeare, data.txt): share held out for val")
    test_fraction: float = param(0.05, "corpora without their own splits (shakespeare, data.txt): share held out for test")
    pack: bool | None = param(None, "text corpora: True joins documents with EOS into one stream cut into max_seq_len windows; False keeps one sample per document/line; None = the task's default (named corpora pack, data.txt lines don't)")
    token_cache: bool = param(True, "cache token ids of large corpora in the data cache dir ($HARNESS_DATA_CACHE, default ../data-cache)")
    incl_intl_prob: bool = param(True, "tasks with an answer separator (arith: the first '='): include the question in the loss; False trains and measures the loss on the answer only")


# Every task file's own settings (`@task_settings` in data/tasks/*.py) become fields too.
DataParams = with_task_settings(DataParams)  # type: ignore[misc]
