"""LM.sample: KV-cache decoding, batched prefixes, beam search, and the sampling options."""
from __future__ import annotations

import pytest
import torch

from data.tokenizer import CharTokenizer
from model.kv_cache import KVCache
from model.lm import LM
from model.model_params import ModelParams
from model.sampling import sequence_logprob

pytestmark = pytest.mark.usefixtures("one_thread")

TOK = CharTokenizer("abcdefgh>")


def make_lm(seed: int = 0, sharpen: float = 4.0, **kw) -> LM:
    """A random LM whose weights are scaled up, so its next-token choices are far from uniform."""
    torch.manual_seed(seed)
    params = dict(layer_architecture="custom-transformer", dim=32, n_heads=4, n_layers=2, max_seq_len=24)
    lm = LM(ModelParams(**{**params, **kw}), TOK).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(sharpen)
    return lm


ARCHS = [
    dict(layer_architecture="torch-transformer"),
    dict(layer_architecture="torch-transformer", norm_first=False),
    dict(layer_architecture="custom-transformer"),
    dict(layer_architecture="custom-transformer", norm_first=False),
    dict(layer_architecture="llama", pos_encoding="rotary", n_kv_heads=2),
    dict(layer_architecture="custom-transformer", pos_encoding="rotary"),
    dict(layer_architecture="custom-transformer", pos_encoding="sinusoidal"),
    dict(layer_architecture="custom-transformer", pos_encoding="random", max_posencs=64),
]


@pytest.mark.parametrize("kw", ARCHS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_incremental_forward_equals_full_forward(kw):
    lm = make_lm(sharpen=1.0, **kw)
    x = torch.randint(0, TOK.n_tokens, (3, 15))
    with torch.no_grad():
        full = lm(x)
        cache = KVCache()
        pieces = [lm(x[:, :6], kv_cache=cache)] + [lm(x[:, i : i + 1], kv_cache=cache) for i in range(6, 10)] + [lm(x[:, 10:], kv_cache=cache)]
    assert cache.length == 15
    assert (torch.cat(pieces, dim=1) - full).abs().max() < 1e-5


@pytest.mark.parametrize("kw", ARCHS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_kv_cache_greedy_equals_recomputing_the_prefix(kw):
    lm = make_lm(**kw)
    lengths = []
    for pref in ["ab", "c>d", ""]:
        cached = lm.sample(pref, max_seq_len=24, temperature=0, as_str=False)
        plain = lm.sample(pref, max_seq_len=24, temperature=0, as_str=False, use_cache=False)
        assert cached == plain
        lengths.append(len(cached))
    assert max(lengths) > 5, "the comparison covers several decoding steps"


def test_cached_decoding_feeds_one_token_per_step():
    lm = make_lm()
    seen = []
    real_forward = lm.forward
    lm.forward = lambda x, **kw: (seen.append(lm.as_batch(x).shape[1]), real_forward(x, **kw))[1]
    out = lm.sample("abc", max_seq_len=12, temperature=0, as_str=False)
    assert seen[0] == 4 and set(seen[1:]) <= {1} and len(seen) == len(out) - 4 + (out[-1] != TOK.eos_id and len(out) < 12)


@pytest.mark.parametrize("seed", range(6))
def test_beam_search(seed):
    lm = make_lm(seed)
    for pref in ["ab", "h", "c>"]:
        n_prefix = len(TOK(pref))
        greedy = lm.sample(pref, max_seq_len=14, temperature=0, as_str=False)
        (one,) = lm.sample(pref, max_seq_len=14, beam_size=1, as_str=False)
        assert one[0] == greedy, "beam 1 is greedy decoding"
        beams = lm.sample(pref, max_seq_len=14, beam_size=4, as_str=False)
        seqs, scores = [b[0] for b in beams], [b[1] for b in beams]
        assert len(beams) == 4 and len({tuple(s) for s in seqs}) == 4
        assert scores == sorted(scores, reverse=True)
        assert scores[0] >= one[1] - 1e-5, "the best beam scores at least as high as greedy"
        for s, score in beams:
            assert s[:n_prefix] == TOK(pref) and len(s) <= 14
            assert abs(sequence_logprob(lm, s, n_prefix) - score) < 1e-4, "scores are the sequences' log-probs"
        assert [b[0] for b in lm.sample(pref, max_seq_len=14, beam_size=4, as_str=False, use_cache=False)] == seqs


def test_beam_search_finds_better_than_greedy_somewhere():
    """Guards the test above against beam search that merely returns greedy."""
    better = 0
    for seed in range(6):
        lm = make_lm(seed)
        for pref in ["ab", "h", "c>"]:
            (one,) = lm.sample(pref, max_seq_len=14, beam_size=1)
            better += lm.sample(pref, max_seq_len=14, beam_size=4)[0][1] > one[1] + 1e-3
    assert better >= 3


def test_batched_prefixes_match_one_by_one():
    lm = make_lm()
    prefs = ["ab", "c>d", "h", [TOK.bos_id, 3, 4], "ba"]  # mixed lengths and formats
    batched = lm.sample(prefs, max_seq_len=16, temperature=0, as_str=False)
    assert batched == [lm.sample(p, max_seq_len=16, temperature=0, as_str=False) for p in prefs]
    as_text = lm.sample(prefs, max_seq_len=16, temperature=0)
    assert as_text == [TOK.decode(ids) for ids in batched]
    for ids in batched:  # nothing after the first generated EOS
        assert TOK.eos_id not in ids[:-1] and len(ids) <= 16
    beams = lm.sample(["ab", "h"], max_seq_len=12, beam_size=2)
    assert len(beams) == 2 and all(len(b) == 2 for b in beams)


def test_sampling_options():
    lm = make_lm()
    greedy = lm.sample("ab", max_seq_len=16, temperature=0, as_str=False)
    assert lm.sample("ab", max_seq_len=16, top_k=1, as_str=False) == greedy
    assert lm.sample("ab", max_seq_len=16, nucleus=1e-6, as_str=False) == greedy
    draws = [lm.sample(["ab", "cd"], max_seq_len=16, temperature=1.5, generator=torch.Generator().manual_seed(s), as_str=False) for s in (1, 1, 2)]
    assert draws[0] == draws[1], "a seeded generator reproduces a batch of samples"
    with pytest.raises(ValueError, match="beam_size"):
        lm.sample("ab", beam_size=0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        lm.sample("ab", nucleus=0.5, top_k=3)
