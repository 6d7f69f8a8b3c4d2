"""Head scores: the definitions on hand-built patterns, and the cache path on our LM and GPT-2."""
from __future__ import annotations

import math

import pytest
import torch

from data.tokenizer import CharTokenizer
from model.head_scores import best_head, head_scores, repeated_halves_loss, repeated_random_tokens, scores_from_patterns
from model.lm import LM
from model.model_params import ModelParams

pytestmark = pytest.mark.usefixtures("one_thread")

T = 5
N = 1 + 2 * T


def pattern(target) -> torch.Tensor:
    """N × N attention where query q attends fully to target(q) (or to BOS when that is None)."""
    p = torch.zeros(N, N)
    for q in range(N):
        k = target(q)
        p[q, k if k is not None and 0 <= k <= q else 0] = 1.0
    return p


PREV = pattern(lambda q: q - 1)
DUP = pattern(lambda q: q - T if q > T else None)
IND = pattern(lambda q: q - T + 1 if q > T else None)
UNIFORM = torch.tril(torch.ones(N, N)) / torch.arange(1, N + 1)[:, None]


def test_each_kind_of_head_scores_one_on_its_own_measure_only():
    patterns = torch.stack([PREV, DUP, IND, UNIFORM])[None, None]  # batch × layers × heads × q × k
    s = {k: v[0] for k, v in scores_from_patterns(patterns, T).items()}
    # DUP and IND send the first copy's queries to BOS, which for q = 1 is also the previous token
    assert s["previous_token"][:3].tolist() == pytest.approx([1.0, 1 / (N - 1), 1 / (N - 1)])
    assert s["duplicate_token"][:3].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert s["induction"][:3].tolist() == pytest.approx([0.0, 0.0, 1.0])
    # a head spreading its attention evenly gets 1 / (positions it sees) on each measure
    assert s["induction"][3].item() == pytest.approx(sum(1 / (q + 1) for q in range(T + 1, N)) / T)
    assert s["previous_token"][3].item() == pytest.approx(sum(1 / (q + 1) for q in range(1, N)) / (N - 1))
    assert best_head(scores_from_patterns(patterns, T)["induction"]) == (pytest.approx(1.0), 0, 2)


def test_wrong_length_is_refused():
    with pytest.raises(ValueError, match="seq_len=4"):
        scores_from_patterns(torch.stack([PREV])[None, None], 4)


def tiny_lm(arch: str = "custom-transformer") -> LM:
    torch.manual_seed(0)
    tok = CharTokenizer.from_texts(["abcdefghijklmnop"])
    return LM(ModelParams(layer_architecture=arch, dim=16, n_layers=2, n_heads=2, max_seq_len=2 * T + 3), tok).eval()


def test_repeated_random_tokens_are_bos_then_the_same_half_twice():
    lm = tiny_lm()
    x = repeated_random_tokens(lm, T, n_seqs=7, seed=3)
    assert x.shape == (7, N) and (x[:, 0] == lm.tokenizer.bos_id).all()
    assert torch.equal(x[:, 1 : T + 1], x[:, T + 1 :])
    assert not set(x[:, 1:].flatten().tolist()) & lm.tokenizer.special_ids
    assert torch.equal(x, repeated_random_tokens(lm, T, n_seqs=7, seed=3)) and not torch.equal(x, repeated_random_tokens(lm, T, 7, seed=4))
    with pytest.raises(ValueError, match="seq_len=9 does not fit"):
        repeated_random_tokens(lm, 9)


def planted(layer: int, head: int, p: torch.Tensor):
    """A forward hook that replaces one head's attention pattern with `p` (what a real head of that kind does)."""

    def fn(x, hook):
        x[:, head] = p.to(x.dtype)

    return (f"blocks.{layer}.attn.hook_pattern", fn)


@pytest.mark.parametrize("arch", ["custom-transformer", "torch-transformer"])
def test_scores_read_the_models_attention_through_the_cache(arch):
    lm = tiny_lm(arch)
    plain = head_scores(lm, seq_len=T)
    assert plain["induction"].shape == (2, 2) and (plain["induction"] < 0.5).all()  # a random model has no such head
    s = head_scores(lm, seq_len=T, fwd_hooks=[planted(1, 0, IND), planted(0, 1, PREV)])
    assert s["induction"][1, 0] == pytest.approx(1.0) and s["previous_token"][0, 1] == pytest.approx(1.0)
    assert best_head(s["induction"])[1:] == (1, 0)
    assert torch.equal(s["induction"][0, 0], plain["induction"][0, 0])  # heads nobody planted into are read as they are


def test_gpt2_heads_are_scored_the_same_way(tmp_path):
    import gpt2
    from tests.tiny_gpt2 import make_tiny_gpt2

    lm = gpt2.get_gpt2(str(make_tiny_gpt2(tmp_path / "g")))
    t = 8
    dup = torch.zeros(2 * t + 1, 2 * t + 1)
    for q in range(2 * t + 1):
        dup[q, q - t if q > t else 0] = 1
    s = head_scores(lm, seq_len=t, n_seqs=4, fwd_hooks=[planted(1, 3, dup)])
    assert s["duplicate_token"].shape == (2, 4)
    assert s["duplicate_token"][1, 3] == pytest.approx(1.0) and (s["duplicate_token"][0] < 0.9).all()


def test_halves_loss_matches_the_per_token_perplexity_table():
    lm = tiny_lm()
    x = repeated_random_tokens(lm, T, n_seqs=6)
    first, second = repeated_halves_loss(lm, x)
    *_, per_token = lm.perplexities(x.tolist(), per_token=True, before_exp=True)
    assert first == pytest.approx(per_token[:, :T].mean().item(), rel=1e-5)
    assert second == pytest.approx(per_token[:, T : 2 * T].mean().item(), rel=1e-5)
    assert abs(first - math.log(lm.n_tokens)) < 0.5  # an untrained model is near uniform on both halves
