"""DataParams: what to train on and how it is tokenized and split (the `DataParams` config section)."""
from __future__ import annotations

from dataclasses import dataclass

from train.params_base import param


@dataclass
class DataParams:
    task: str = param("copy", "task name: a synthetic task in data/syntheticdata.py, a corpus, or a folder under data-path.txt")
    n_train_samples: int = param(20000, "synthetic tasks: number of training samples")
    n_val_samples: int = param(500, "synthetic tasks: number of validation samples (disjoint from train)")
    n_test_samples: int = param(500, "synthetic tasks: number of test samples (disjoint from train and val)")
    min_len: int = param(4, "synthetic tasks: shortest input sequence")
    max_len: int = param(12, "synthetic tasks: longest input sequence")
    alphabet: str = param("abcdefghij", "synthetic tasks: symbols the inputs are drawn from")
    max_seq_len: int = param(128, "longest training sequence in tokens (BOS/EOS included); longer text is cut into windows")
    stride: int | None = param(None, "window stride for long text; None = max_seq_len (no overlap)")
    tokenizer: str = param("char", "'char', 'bpe' (trained on the train split), or a pretrained name/path such as 'gpt2'")
    bpe_vocab_size: int = param(2000, "vocabulary size when tokenizer='bpe'")
    data_seed: int | None = param(None, "seed for generating/splitting data; None = the run's --seed")
