"""Code written against the seed README (shared/seeds/004-harness-readme.txt) runs unchanged.

`SNIPPETS` holds every code block of the seed's "Basics: Inspect Model" section exactly as the
seed writes it; only the placeholder `{timestamp}` is filled in. They run in order, in one
namespace, as a user pastes them into a notebook, on a tiny run trained here from a data-folder
task configured with the seed's key `dataset_name=`, and on a tiny GPT-2 standing in for
`gpt2.get_gpt2()` (no hub here), whose vocabulary is padded to GPT-2's 50257 ids so the seed's
`pref=[50256, 4053, 262, 6193]` is valid.

Of the seed's other code blocks, three are shell commands (`python3 main.py ...`, covered by
the CLI tests) and the rest are edits to make inside the harness' files (Customising). Two of
those edits are not valid Python on their own (`test_two_seed_edits_are_not_valid_python`):
the squared feed-forward edit (`return self.dropout_ff(x)` and `res = ...; return ...`: a
`return` outside a function, valid only inside `_ff_block`) and the input-corruption edit
(`\tdef apply_corruption(x):`, indented: valid only nested inside `training_step`).
"""
from __future__ import annotations

import functools
import json
import random

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from tests.explorer_helpers import train_tiny_run
from tests.task_runs import config_text, write_text_task
from tests.tiny_gpt2 import make_tiny_gpt2
from core.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

SNIPPETS = [
    ("load", '''
import model_explorer
timestamp = {timestamp}  # your timestamp here
results  = model_explorer.get_model_by_timestamp(timestamp)
'''),
    ("verify", '''
model_explorer.verify_stable_load(timestamp)
'''),
    ("metrics", '''
model_explorer.plot_metrics(timestamp ,"stat/val_loss:main")
'''),
    ("gpt2", '''
import gpt2
lm_gpt2 = gpt2.get_gpt2()
'''),
    ("generate", '''
lm_gpt2.sample(pref="Well the weather for the whole area will",max_seq_len=50,temperature=0.5,as_str=True)
lm_gpt2.sample(pref=[50256, 4053, 262, 6193])
lm.sample(pref="")
'''),
    ("outputs", '''
import torch 
a = lm_gpt2("hello") # string
b = lm_gpt2(lm_gpt2.tokenizer("hello")) # list of indices
assert torch.equal(a,b)

c = lm_gpt2(torch.Tensor(lm_gpt2.tokenizer("hello"))) # 1-D tensor
assert torch.equal(a,c)
d = lm_gpt2(torch.Tensor(lm_gpt2.tokenizer(["hello","hi"]))) # batch
assert False not in torch.isclose(a,d[0:1])
'''),
    ("mycollate", '''
from data.dataloader import mycollate
samples = ["hello","hi there"]
pim = mycollate(lm_gpt2.tokenizer(samples))
padded_indices, mask = pim["x_indices"], pim["mask"]
e = lm_gpt2(padded_indices)
'''),
    ("perplexity gpt2", '''
mean_p, max_p, min_p, total_tokens, per_token_res = lm_gpt2.perplexities(["hello","hi there"],per_token=True)
'''),
    ("perplexity lm", '''
mean_l, max_l, min_l, total_tokens, per_token_res = lm.perplexities(dataset.test_dataloader(16),per_token=True,before_exp=True)
'''),
    ("attention", '''
out_embeds, attns = model_explorer.show_lm_attns(lm,"as business managers know")
'''),
    ("attention saved", '''
out_embeds, attns = model_explorer.show_lm_attns(lm,lm.tokenizer("as business managers know"),layers=[0],heads=[0],folder_name="demo")
'''),
    ("embeddings", '''
from data.dataloader import mycollate
samples = ["hello","hi there"]
padded_indices = mycollate(lm_gpt2.tokenizer(samples))["x_indices"]
embeddings = lm_gpt2(padded_indices,get_embeddings=True)["embeddings"]  # len(samples) X n layers X max seq len X model dim
'''),
]

# What the seed's prose says to do with `results` (its code block stops at `results = ...`).
PROSE = '''
lm, dataset, train_stats, params = results
dataset.show_sample(1)
names = list(train_stats.keys())
'''

NOT_PYTHON = {  # seed edits that only make sense pasted inside a function of the harness
    "square_ff_1": "return self.dropout_ff(x)\n",
    "square_ff_2": "res = self.dropout_ff(x)\nreturn torch.pow(res,2) if self.model_params.square_ff else res\n",
    "corruption": (
        "\tdef apply_corruption(x):\n\t\tbsz,seq_len = x.shape\n\t\tdropout = torch.nn.Dropout(self.train_params.corruption_frac)\n"
        "\t\trand_replacement = torch.randint(0,self.model.n_tokens,x.shape).to(device=x.device)\n"
        "\t\tcorr_locs = (dropout(torch.ones(x.shape))==0).to(device=x.device)\n\t\treturn torch.where(corr_locs,rand_replacement,x)\n"
    ),
}


@pytest.fixture(scope="module")
def seed_world(tmp_path_factory):
    """A saved run of a data-folder task configured with `dataset_name=`, and a tiny 50257-id GPT-2."""
    root = tmp_path_factory.mktemp("seed")
    write_text_task(root / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_DATA_PATH", str(root / "data"))
        run = train_tiny_run(root, name="seedcfg", text=config_text("text", data_key="dataset_name"))
    gpt2_dir = make_tiny_gpt2(root / "gpt2", n_layer=1, n_head=2, n_embd=16, vocab_size=50257, logit_offset=-50.0)
    return root, run, gpt2_dir


def test_seed_snippets_run_unchanged(seed_world, monkeypatch, tmp_path, capsys):
    import gpt2

    root, run, gpt2_dir = seed_world
    monkeypatch.setenv("HARNESS_DATA_PATH", str(root / "data"))
    monkeypatch.setenv("HARNESS_SAVE_DIR", str(root / "saved-models"))
    monkeypatch.setenv("HARNESS_METRICS_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("HARNESS_ATTENTIONS_DIR", str(tmp_path / "attentions"))
    monkeypatch.setattr(gpt2, "get_gpt2", functools.partial(gpt2.get_gpt2, str(gpt2_dir)))  # "gpt2" from the hub, offline
    ns: dict = {}
    for title, code in SNIPPETS:
        code = code.replace("{timestamp}", json.dumps(run.name))
        exec(compile(code, f"<seed: {title}>", "exec"), ns)
        if title == "load":
            exec(PROSE, ns)
    # The snippets ran; now what they promise.
    assert json.loads((run / "params.json").read_text())["data"]["task"] == "mytext"  # dataset_name= set the task
    assert ns["params"]["model_params"].dim == 16 and ns["params"].data_params.task == "mytext"
    assert "stat/val_loss:main" in ns["names"]
    assert "stable load ok" in capsys.readouterr().out
    assert isinstance(ns["lm_gpt2"].sample(pref=[50256, 4053, 262, 6193]), str)
    assert ns["d"].shape[0] == 2 and ns["e"].shape[:2] == ns["padded_indices"].shape
    assert ns["attns"].shape[:3] == (1, 1, 2) and (tmp_path / "attentions" / "demo" / "layer0_head0.png").is_file()
    assert ns["embeddings"].shape == (2, 1, ns["padded_indices"].shape[1], 16)
    assert ns["total_tokens"] > 0 and ns["per_token_res"].shape[0] == len(ns["dataset"].datasets["test"])
    assert ns["mask"].dtype == torch.bool and ns["mask"][0].tolist() == [True, True, False, False]  # ours: True = token (docs/explorer.md)


def test_two_seed_edits_are_not_valid_python():
    for name, code in NOT_PYTHON.items():
        with pytest.raises(SyntaxError):
            compile(code, name, "exec")


def test_plot_metric_is_the_seeds_name_for_plot_metrics():
    import model_explorer

    assert model_explorer.plot_metric is model_explorer.plot_metrics


# --- config key, generators, params --------------------------------------------------------
def _parse(tmp_path, text):
    from train.config import expand_config_file

    p = tmp_path / "c.txt"
    p.write_text(text)
    return expand_config_file(p)


def test_dataset_name_is_the_seeds_name_for_task(tmp_path):
    (rc,) = _parse(tmp_path, 'DataParams\ndataset_name="reverse"\n')
    assert rc.data.task == "reverse"
    with pytest.raises(UserError, match=r"c.txt:3: dataset_name is the seed's name for task, which is already set"):
        _parse(tmp_path, 'DataParams\ntask="copy"\ndataset_name="reverse"\n')
    with pytest.raises(UserError, match=r"dataset_name \(our name: task\) belongs in section DataParams, not TrainParams"):
        _parse(tmp_path, 'TrainParams\ndataset_name="copy"\n')


@pytest.fixture
def registry():
    from data.syntheticdata import SYNTHETIC_TASKS

    before = set(SYNTHETIC_TASKS)
    yield SYNTHETIC_TASKS
    for name in set(SYNTHETIC_TASKS) - before:
        del SYNTHETIC_TASKS[name]


def test_zero_argument_and_rng_dp_generators_both_register(registry):
    from data.data_params import DataParams
    from data.dataloader import LMDataModule
    from data.syntheticdata import registered

    @registered
    def seedstyle():  # the seed's style: the global `random`, no arguments
        return "".join(random.choice("xyz") for _ in range(random.randint(2, 4))) + ">ok"

    @registered(answer_sep=None)
    def ourstyle(rng, dp):
        return "".join(rng.choice(dp.alphabet) for _ in range(3))

    dp = DataParams(task="seedstyle", n_train_samples=20, n_val_samples=4, n_test_samples=4, max_seq_len=16)
    random.seed(123)
    outside = random.random()
    random.seed(123)
    a = LMDataModule(dp, seed=5).task_data.splits
    assert random.random() == outside  # the global random state is left as it was
    assert a == LMDataModule(dp, seed=5).task_data.splits != LMDataModule(dp, seed=6).task_data.splits  # reproducible, seeded
    assert all(s.endswith(">ok") for s in a["train"])
    assert len(LMDataModule(DataParams(task="ourstyle", n_train_samples=8, n_val_samples=2, n_test_samples=2), seed=0).datasets["train"]) == 8
    with pytest.raises(TypeError, match=r"takes no arguments or \(rng: random.Random, dp: DataParams\)"):
        registered(lambda rng: "a")


def test_params_keep_todays_keys_and_answer_the_seeds(tmp_path):
    from data.data_params import DataParams
    from model.model_params import ModelParams
    from train.saving import RunParams
    from train.train_params import TrainParams

    raw = {"data": {"task": "copy"}, "train": {"lr": 0.01}, "model": {"dim": 24}, "seed": 3}
    params = RunParams(raw)
    assert params == raw and params["model"] == {"dim": 24} and list(params) == ["data", "train", "model", "seed"]
    assert isinstance(params["data_params"], DataParams) and params["data_params"].task == "copy"
    assert isinstance(params.train_params, TrainParams) and params.train_params.lr == 0.01
    assert isinstance(params.model_params, ModelParams) and params["model_params"].dim == 24 and "model_params" in params
    with pytest.raises(KeyError, match="params has keys 'data', 'train', 'model', 'seed'"):
        params["dataset_params"]
    with pytest.raises(AttributeError, match=r"use params\['data'\]"):
        params.data
