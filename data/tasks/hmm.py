"""HMM "weather" tasks with an exact loss floor.

Samples come from a hidden Markov model (initial, transition and emission tables). By default
the tables are the 3-state / 5-observation ones of the weather exercise in the LxMLS notebook;
`hmm_random_tables=True` draws random tables (Dirichlet rows) from `hmm_table_seed`.

Two tasks are registered:

- `hmm`: the observations only, one character each (`abcde`), e.g. `acbbe`.
- `hmm_labelled`: the observations, `>`, then the hidden states (`ABC`), e.g. `acbbe>ABBBC`.

Because the generating process is known exactly, the best possible next-token cross-entropy
on a split can be computed (the *floor*). It is reported in the units the trainer uses for
`stat/val_loss:main`: nats per predicted token, averaged over every target token of the split
(each observation, the `>` of the labelled task, each state and the closing EOS; the BOS is
never a target). The optimal predictor

- predicts observation k+1 from the forward algorithm, p(o_k+1 | o_1..k), times the
  probability that the sequence goes on (sequence lengths are uniform on [min_len, max_len]
  and independent of the HMM, so ending after k observations has hazard
  P(L = k | L >= k));
- predicts EOS (or `>`) with that hazard;
- predicts state t of the labelled task from p(s_t | s_t-1, o_1..L), which needs the
  backward algorithm because all observations are visible by then; EOS after the last state
  is certain (the model can count), so it costs nothing.

With `min_len == max_len` the length terms vanish. The trainer logs the val floor as
`stat/val_loss_floor`, and `stat/val_loss_floor_obs`, the floor over observation tokens only.
With `incl_intl_prob=False` the labelled task's loss covers only what follows `>`, and so does
its floor.

This module is torch-free; numpy is imported only where the floor is computed.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Sequence

from core.errors import UserError
from data.syntheticdata import registered
from data.task_registry import task_settings, task_summary
from core.params_base import param

if TYPE_CHECKING:
    from data.data_params import DataParams

OBS_SYMBOLS = "abcdefghijklmnopqrstuvwxyz"
STATE_SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LABEL_SEP = ">"

# The weather exercise's fixed tables: states are weather, observations are activities.
SEED_INITIAL = (0.5, 0.3, 0.2)
SEED_TRANSITION = ((0.5, 0.5, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5))
SEED_EMISSION = (
    (0.5, 0.0, 0.2, 0.0, 0.3),
    (0.0, 0.5, 0.4, 0.0, 0.1),
    (0.0, 0.0, 0.1, 0.5, 0.4),
)


@dataclass(frozen=True)
class HMMTables:
    """Rows are probability distributions: initial[s], transition[s][s'], emission[s][o]."""

    initial: tuple[float, ...]
    transition: tuple[tuple[float, ...], ...]
    emission: tuple[tuple[float, ...], ...]

    @property
    def n_states(self) -> int:
        return len(self.initial)

    @property
    def n_obs(self) -> int:
        return len(self.emission[0])

    def check(self) -> None:
        rows = [self.initial, *self.transition, *self.emission]
        for row in rows:
            if any(p < 0 for p in row) or abs(sum(row) - 1) > 1e-6:
                raise ValueError(f"HMM table row {row} is not a probability distribution")
        if len(self.transition) != self.n_states or any(len(r) != self.n_states for r in self.transition):
            raise ValueError("HMM transition table must be n_states x n_states")
        if len(self.emission) != self.n_states or any(len(r) != self.n_obs for r in self.emission):
            raise ValueError("HMM emission table must be n_states x n_obs")

    def arrays(self):
        import numpy as np

        return np.array(self.initial, float), np.array(self.transition, float), np.array(self.emission, float)


SEED_TABLES = HMMTables(SEED_INITIAL, SEED_TRANSITION, SEED_EMISSION)


@task_settings
class HMMSettings:
    """`hmm` / `hmm_labelled` settings (DataParams); sequence lengths come from min_len/max_len."""

    hmm_random_tables: bool = param(False, "hmm tasks: draw random HMM tables (Dirichlet rows) instead of the seed's fixed 3-state/5-observation weather tables")
    hmm_n_states: int = param(3, "hmm tasks with hmm_random_tables: number of hidden states", min=1, max=26)
    hmm_n_obs: int = param(5, "hmm tasks with hmm_random_tables: number of observation symbols", min=1, max=26)
    hmm_table_seed: int = param(0, "hmm tasks with hmm_random_tables: seed of the random tables (fixed across splits and runs)")


def random_tables(n_states: int, n_obs: int, seed: int, concentration: float = 1.0) -> HMMTables:
    """Tables with Dirichlet(concentration) rows, reproducible from `seed` (pure Python)."""
    rng = random.Random(seed)

    def row(n: int) -> tuple[float, ...]:
        g = [rng.gammavariate(concentration, 1.0) for _ in range(n)]
        total = sum(g) or 1.0
        return tuple(x / total for x in g)

    return HMMTables(row(n_states), tuple(row(n_states) for _ in range(n_states)), tuple(row(n_obs) for _ in range(n_states)))


@lru_cache(maxsize=32)
def _tables_for(random_: bool, n_states: int, n_obs: int, seed: int) -> HMMTables:
    return random_tables(n_states, n_obs, seed) if random_ else SEED_TABLES


def hmm_tables(dp: DataParams) -> HMMTables:
    """The run's tables: the seed's fixed ones, or random ones from `hmm_table_seed`."""
    if dp.hmm_random_tables:
        if not 1 <= dp.hmm_n_states <= len(STATE_SYMBOLS) or not 1 <= dp.hmm_n_obs <= len(OBS_SYMBOLS):
            raise UserError(f"hmm_n_states and hmm_n_obs must be in 1..26 (got {dp.hmm_n_states}, {dp.hmm_n_obs}); lower them")
    return _tables_for(dp.hmm_random_tables, dp.hmm_n_states, dp.hmm_n_obs, dp.hmm_table_seed)


# --- sampling ---------------------------------------------------------------------------
def _draw(rng: random.Random, probs: Sequence[float]) -> int:
    u, acc = rng.random(), 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # float round-off at the top end


def sample_hmm(rng: random.Random, tables: HMMTables, length: int) -> tuple[list[int], list[int]]:
    """(states, observations) of one sequence of `length` steps."""
    states, obs = [], []
    s = _draw(rng, tables.initial)
    for t in range(length):
        if t:
            s = _draw(rng, tables.transition[s])
        states.append(s)
        obs.append(_draw(rng, tables.emission[s]))
    return states, obs


def encode_obs(obs: Sequence[int]) -> str:
    return "".join(OBS_SYMBOLS[o] for o in obs)


def encode_states(states: Sequence[int]) -> str:
    return "".join(STATE_SYMBOLS[s] for s in states)


def parse_sample(text: str) -> tuple[list[int], list[int] | None]:
    """Observations (and states, for the labelled task) back from a sample string."""
    obs_part, _, state_part = text.partition(LABEL_SEP)
    obs = [OBS_SYMBOLS.index(c) for c in obs_part]
    states = [STATE_SYMBOLS.index(c) for c in state_part] if LABEL_SEP in text else None
    return obs, states


def _check_lengths(dp: DataParams) -> None:
    if not 1 <= dp.min_len <= dp.max_len:
        raise UserError(f"HMM tasks need 1 <= min_len <= max_len (got {dp.min_len}, {dp.max_len}); fix them in DataParams")


def _hmm_sample(rng: random.Random, dp: DataParams, labelled: bool) -> str:
    _check_lengths(dp)
    states, obs = sample_hmm(rng, hmm_tables(dp), rng.randint(dp.min_len, dp.max_len))
    return encode_obs(obs) + (LABEL_SEP + encode_states(states) if labelled else "")


# --- the exact floor --------------------------------------------------------------------
def obs_predictive(tables: HMMTables, obs: Sequence[int]):
    """(L+1, n_obs) array: row k is p(o_k+1 = . | o_1..k) from the forward algorithm."""
    import numpy as np

    pi, A, B = tables.arrays()
    out = np.empty((len(obs) + 1, B.shape[1]))
    belief = pi  # p(s_k+1 | o_1..k)
    for k in range(len(obs) + 1):
        out[k] = belief @ B
        if k < len(obs):
            filt = belief * B[:, obs[k]]
            total = filt.sum()
            if total <= 0:
                raise ValueError(f"observation sequence {obs} has probability 0 under these tables")
            belief = (filt / total) @ A
    return out


def state_step_probs(tables: HMMTables, obs: Sequence[int], states: Sequence[int]):
    """Length-L array: p(s_t | s_1..t-1, o_1..L) of the given states (forward-backward chain rule).

    The states form a Markov chain given all observations:
    p(s_t | s_t-1, o) ∝ A[s_t-1, s_t] B[s_t, o_t] beta_t(s_t), with beta_t(s) = p(o_t+1..L | s_t = s).
    """
    import numpy as np

    pi, A, B = tables.arrays()
    L = len(obs)
    beta = np.ones((L, len(pi)))
    for t in range(L - 2, -1, -1):
        b = A @ (B[:, obs[t + 1]] * beta[t + 1])
        beta[t] = b / b.max() if b.max() > 0 else b  # rescaling cancels in the normalisation
    out = np.empty(L)
    for t in range(L):
        prior = pi if t == 0 else A[states[t - 1]]
        w = prior * B[:, obs[t]] * beta[t]
        out[t] = w[states[t]] / w.sum()
    return out


def end_hazard(k: int, min_len: int, max_len: int) -> float:
    """P(L = k | L >= k) for L uniform on [min_len, max_len]: the chance the sequence ends now."""
    if k < min_len:
        return 0.0
    if k >= max_len:
        return 1.0
    return 1.0 / (max_len - k + 1)


def _log(p: float) -> float:
    return math.log(p) if p > 0 else float("-inf")


@dataclass
class SequenceNLL:
    """Bayes-optimal NLL of one sample, split by kind of target (nats; counts are targets)."""

    total: float  # every target: observations, the end of the observations, states, EOS
    obs: float  # the observations alone
    states: float  # the states alone (0 for the unlabelled task)
    n_targets: int
    n_obs: int
    n_answer: int  # targets after '>' (states and EOS): what the loss sees with incl_intl_prob=False


def sequence_nll(tables: HMMTables, text: str, min_len: int, max_len: int) -> SequenceNLL:
    """Bayes-optimal NLL of one sample, by the chain rule over its targets (see the module doc)."""
    obs, states = parse_sample(text)
    L = len(obs)
    pred = obs_predictive(tables, obs)
    obs_nll = -sum(_log(pred[k, obs[k]]) for k in range(L))
    length_nll = -sum(_log(1 - end_hazard(k, min_len, max_len)) for k in range(L)) - _log(end_hazard(L, min_len, max_len))
    state_nll, n_answer = 0.0, 0
    if states is not None:
        if len(states) != L:
            raise ValueError(f"labelled sample {text!r} has {L} observations but {len(states)} states")
        state_nll = -sum(_log(p) for p in state_step_probs(tables, obs, states))
        n_answer = L + 1  # states, then EOS (certain: cost 0)
    return SequenceNLL(obs_nll + length_nll + state_nll, obs_nll, state_nll, L + 1 + n_answer, L, n_answer)


def loss_floor(tables: HMMTables, texts: Sequence[str], min_len: int, max_len: int, answer_only: bool = False) -> dict[str, float]:
    """Token-mean Bayes-optimal cross-entropy of a split, in the trainer's units (see module doc).

    `answer_only`: the labelled task trained with incl_intl_prob=False, whose loss covers only
    the states and the EOS after '>'.
    """
    parts = [sequence_nll(tables, t, min_len, max_len) for t in texts]
    obs = sum(p.obs for p in parts) / max(sum(p.n_obs for p in parts), 1)
    if answer_only:
        floor = sum(p.states for p in parts) / max(sum(p.n_answer for p in parts), 1)
    else:
        floor = sum(p.total for p in parts) / max(sum(p.n_targets for p in parts), 1)
    return {"loss_floor": floor, "loss_floor_obs": obs}


def hmm_extras(splits: dict[str, list[str]], dp: DataParams) -> dict[str, Any]:
    """`val_stats`/`test_stats`: the floors of each held-out split.

    The trainer logs every `val_stats` entry as `stat/val_{name}` beside the val loss, so the
    floor appears as `stat/val_loss_floor` (and `stat/val_loss_floor_obs`).
    """
    tables = hmm_tables(dp)
    answer_only = not dp.incl_intl_prob and any(LABEL_SEP in t for t in splits.get("val", [])[:1])
    return {
        f"{split}_stats": loss_floor(tables, splits[split], dp.min_len, dp.max_len, answer_only)
        for split in ("val", "test")
        if splits.get(split)
    }


def _obs_key(sample: str) -> str:
    return sample.partition(LABEL_SEP)[0]


@registered(name="hmm", answer_sep=None, extras=hmm_extras)
def hmm(rng: random.Random, dp: DataParams) -> str:
    """acbbe: observations of an HMM (tables: the seed's weather HMM, or random ones)."""
    return _hmm_sample(rng, dp, labelled=False)


@registered(name="hmm_labelled", answer_sep=LABEL_SEP, extras=hmm_extras, dedup_key=_obs_key)
def hmm_labelled(rng: random.Random, dp: DataParams) -> str:
    """acbbe>ABBBC: observations, then the hidden states that produced them."""
    return _hmm_sample(rng, dp, labelled=True)


@task_summary("hmm")
def hmm_summary(val: dict, last: dict) -> tuple[str, str, str]:
    """docs/tasks.md: the val loss against the Bayes floor."""
    floor, loss = last["stat/val_loss_floor"], val["loss:main"]
    return f"Bayes floor {floor:.4f} nats/token (forward algorithm)", f"val loss {loss:.4f}", f"{100 * (loss - floor) / floor:+.1f} % above the floor"
