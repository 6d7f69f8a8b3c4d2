"""HMM tasks: sampling, registration, and the exact loss floor against brute-force enumeration."""
from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from data.data_params import DataParams
from data.syntheticdata import SYNTHETIC_TASKS
from data.task_resolver import get_task_data
from data.tasks.hmm import (
    SEED_TABLES,
    HMMTables,
    encode_obs,
    encode_states,
    end_hazard,
    hmm_tables,
    loss_floor,
    obs_predictive,
    random_tables,
    sample_hmm,
    sequence_nll,
)

TINY = HMMTables(initial=(0.6, 0.4), transition=((0.7, 0.3), (0.2, 0.8)), emission=((0.9, 0.1), (0.3, 0.7)))


def brute_joint(t: HMMTables, obs, states=None) -> float:
    """P(o_1..L) by summing over every state path, or P(o, s) for a given path."""
    paths = [states] if states is not None else itertools.product(range(t.n_states), repeat=len(obs))
    total = 0.0
    for path in paths:
        p = t.initial[path[0]] * t.emission[path[0]][obs[0]]
        for k in range(1, len(obs)):
            p *= t.transition[path[k - 1]][path[k]] * t.emission[path[k]][obs[k]]
        total += p
    return total


def p_length(L: int, lo: int, hi: int) -> float:
    return 1 / (hi - lo + 1) if lo <= L <= hi else 0.0


@pytest.mark.parametrize("tables", [TINY, random_tables(3, 3, seed=4)])
def test_predictive_matches_prefix_ratios(tables):
    for obs in itertools.product(range(tables.n_obs), repeat=3):
        pred = obs_predictive(tables, obs)
        for k in range(4):
            prefix = brute_joint(tables, obs[:k]) if k else 1.0
            for o in range(tables.n_obs):
                assert pred[k, o] == pytest.approx(brute_joint(tables, (*obs[:k], o)) / prefix, rel=1e-9)


@pytest.mark.parametrize("lo,hi", [(3, 3), (1, 4)])
def test_sequence_nll_is_minus_log_of_the_brute_force_probability(lo, hi):
    """Chain rule: summed per-token optimal losses = -log P(length) P(obs) [P(states | obs)]."""
    for L in range(lo, hi + 1):
        for obs in itertools.product(range(2), repeat=L):
            text = encode_obs(obs)
            nll = sequence_nll(TINY, text, lo, hi)
            p_obs = brute_joint(TINY, obs)
            assert nll.n_targets == L + 1 and nll.n_obs == L and nll.n_answer == 0
            assert nll.obs == pytest.approx(-math.log(p_obs), rel=1e-9)
            assert nll.total == pytest.approx(-math.log(p_length(L, lo, hi) * p_obs), rel=1e-9)
            for states in itertools.product(range(2), repeat=L):
                p_joint = brute_joint(TINY, obs, states)
                if p_joint == 0:
                    continue
                lab = sequence_nll(TINY, text + ">" + encode_states(states), lo, hi)
                assert lab.n_targets == 2 * L + 2 and lab.n_answer == L + 1
                assert lab.total == pytest.approx(-math.log(p_length(L, lo, hi) * p_joint), rel=1e-9)
                assert lab.states == pytest.approx(-math.log(p_joint / p_obs), rel=1e-9)  # -log P(states | obs)


def test_floor_is_the_exact_expected_loss_on_a_tiny_hmm():
    """The floor of a split holding every sequence in proportion to its probability is the entropy."""
    L = 4
    seqs = list(itertools.product(range(2), repeat=L))
    probs = np.array([brute_joint(TINY, s) for s in seqs])
    entropy_per_token = float(-(probs * np.log(probs)).sum()) / (L + 1)  # L observations + EOS (free)
    per_seq = [sequence_nll(TINY, encode_obs(s), L, L).total / (L + 1) for s in seqs]
    assert float(np.dot(probs, per_seq)) == pytest.approx(entropy_per_token, rel=1e-9)
    # and on sampled data the floor converges to it
    rng = random.Random(0)
    texts = [encode_obs(sample_hmm(rng, TINY, L)[1]) for _ in range(4000)]
    assert loss_floor(TINY, texts, L, L)["loss_floor"] == pytest.approx(entropy_per_token, rel=0.03)


def test_wrong_tables_do_worse_than_the_floor():
    rng = random.Random(1)
    texts = [encode_obs(sample_hmm(rng, SEED_TABLES, 20)[1]) for _ in range(300)]
    uniform = HMMTables((1 / 3,) * 3, ((1 / 3,) * 3,) * 3, ((0.2,) * 5,) * 3)
    assert loss_floor(SEED_TABLES, texts, 20, 20)["loss_floor"] < loss_floor(uniform, texts, 20, 20)["loss_floor"] - 0.05


def test_end_hazard_gives_the_uniform_length_distribution():
    lo, hi = 2, 6
    for L in range(lo, hi + 1):
        p = math.prod(1 - end_hazard(k, lo, hi) for k in range(L)) * end_hazard(L, lo, hi)
        assert p == pytest.approx(1 / (hi - lo + 1))


def test_seed_tables_and_random_tables():
    SEED_TABLES.check()
    assert (SEED_TABLES.n_states, SEED_TABLES.n_obs) == (3, 5)
    assert hmm_tables(DataParams()) is SEED_TABLES
    t = hmm_tables(DataParams(hmm_random_tables=True, hmm_n_states=4, hmm_n_obs=6, hmm_table_seed=3))
    t.check()
    assert (t.n_states, t.n_obs) == (4, 6)
    assert t == hmm_tables(DataParams(hmm_random_tables=True, hmm_n_states=4, hmm_n_obs=6, hmm_table_seed=3))
    assert t != hmm_tables(DataParams(hmm_random_tables=True, hmm_n_states=4, hmm_n_obs=6, hmm_table_seed=4))


def test_samples_follow_the_tables():
    """Impossible transitions/emissions of the seed tables never occur; labelled samples line up."""
    rng = random.Random(0)
    dp = DataParams(min_len=5, max_len=9)
    A, B = np.array(SEED_TABLES.transition), np.array(SEED_TABLES.emission)
    for _ in range(200):
        text = SYNTHETIC_TASKS["hmm_labelled"].generate(rng, dp)
        obs_s, _, st_s = text.partition(">")
        obs = ["abcde".index(c) for c in obs_s]
        st = ["ABC".index(c) for c in st_s]
        assert len(obs) == len(st) and 5 <= len(obs) <= 9
        assert all(B[s, o] > 0 for s, o in zip(st, obs))
        assert all(A[a, b] > 0 for a, b in zip(st, st[1:]))
        assert set(SYNTHETIC_TASKS["hmm"].generate(rng, dp)) <= set("abcde")


@pytest.mark.parametrize("task", ["hmm", "hmm_labelled"])
def test_task_data_carries_the_floor(task):
    dp = DataParams(task=task, min_len=10, max_len=14, n_train_samples=50, n_val_samples=40, n_test_samples=30)
    td = get_task_data(dp, seed=0)
    floor = loss_floor(SEED_TABLES, td.splits["val"], 10, 14)
    val = td.extras["val_stats"]
    assert val["loss_floor"] == pytest.approx(floor["loss_floor"])
    assert td.extras["test_stats"]["loss_floor"] > 0
    assert 0 < val["loss_floor"] < math.log(5)
    if task == "hmm_labelled":  # states are more predictable than observations, so the floor drops
        assert val["loss_floor"] < val["loss_floor_obs"]
        assert td.answer_sep == ">"


def test_answer_only_floor_covers_the_states_and_eos():
    dp = DataParams(task="hmm_labelled", min_len=8, max_len=8, n_train_samples=20, n_val_samples=30, n_test_samples=5, incl_intl_prob=False)
    td = get_task_data(dp, seed=0)
    parts = [sequence_nll(SEED_TABLES, t, 8, 8) for t in td.splits["val"]]
    expected = sum(p.states for p in parts) / sum(9 for _ in parts)  # 8 states + EOS per sample
    assert td.extras["val_stats"]["loss_floor"] == pytest.approx(expected)
    full = get_task_data(DataParams(**{**dp.__dict__, "incl_intl_prob": True}), seed=0)
    assert full.extras["val_stats"]["loss_floor"] != pytest.approx(expected)
