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
    stride: int | None = param(None, "window stride for long text; None = max_seq_len - 1 for packed text (windows share one token, so every token is predicted exactly once), max_seq_len for long documents")
    tokenizer: str = param("char", "'char', 'bpe' (trained on the train split), or a pretrained name/path such as 'gpt2'")
    bpe_vocab_size: int = param(2000, "vocabulary size when tokenizer='bpe'")
    data_seed: int | None = param(None, "seed for generating/splitting data; None = the run's --seed")
    val_fraction: float = param(0.05, "corpora without their own splits (shakespeare, data.txt): share held out for val")
    test_fraction: float = param(0.05, "corpora without their own splits (shakespeare, data.txt): share held out for test")
    pack: bool | None = param(None, "text corpora: True joins documents with EOS into one stream cut into max_seq_len windows; False keeps one sample per document/line; None = the task's default (named corpora pack, data.txt lines don't)")
    token_cache: bool = param(True, "cache token ids of large corpora in the data cache dir ($HARNESS_DATA_CACHE, default ../data-cache)")

    # --- hmm / hmm_labelled (data/tasks_hmm.py); sequence lengths come from min_len/max_len ---
    hmm_random_tables: bool = param(False, "hmm tasks: draw random HMM tables (Dirichlet rows) instead of the seed's fixed 3-state/5-observation weather tables")
    hmm_n_states: int = param(3, "hmm tasks with hmm_random_tables: number of hidden states")
    hmm_n_obs: int = param(5, "hmm tasks with hmm_random_tables: number of observation symbols")
    hmm_table_seed: int = param(0, "hmm tasks with hmm_random_tables: seed of the random tables (fixed across splits and runs)")

    # --- arith (data/tasks_arithmetic.py): names follow the semantic-blotching generator ---
    max_num: int = param(20, "arith: largest number in a problem (inclusive; numbers start at 0)")
    max_ents: int = param(3, "arith: most entities in a problem (>= 2); a parenthetical counts as one and holds at most max_ents-1")
    p_mult: float = param(0.3, "arith: probability that an operator is '*' rather than '+'")
    max_mult_num: int = param(9, "arith: largest number that may stand next to a '*'")
    p_paren: float = param(0.2, "arith: probability that an entity is a parenthetical sub-problem")
    space_mults: bool = param(True, "arith: never multiply more than two numbers in a row (a*b*c)")
    zipf_order: float = param(0.0, "arith: numbers n are drawn with weight (n+1)^-zipf_order; 0 = uniform")
    p_ent: float = param(0.5, "arith: probability of each entity beyond the first two")
    blotch_p: float = param(0.0, "arith: probability of dropping each intermediate solution step (the problem and the answer are kept)")
    contig_blotches: bool = param(True, "arith: allow adjacent steps to be dropped together; False keeps a step between dropped ones")
    incl_intl_prob: bool = param(True, "tasks with an answer separator (arith: the first '='): include the question in the loss; False trains and measures the loss on the answer only")

    # --- tart (data/tasks_tart.py): in-context logistic regression on vectors ---
    n_positions: int = param(32, "tart: (x, y) pairs per sequence")
    n_dims: int = param(8, "tart: dimension of each x")
    weight_multiplier: float = param(5.0, "tart: scale alpha of the logistic weights (std of w.x); larger = less label noise")
    variable_noise: bool = param(False, "tart: draw alpha per sequence uniformly from [1, weight_multiplier]")
