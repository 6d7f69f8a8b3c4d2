"""pretrained.py: any-family loading by model_type, Pythia names and revisions, checkpoint trajectories; offline errors."""
from __future__ import annotations

import json

import pytest
import torch

from tests.tiny_gpt2 import TEXTS, make_tiny_gpt2
from core.errors import UserError


def test_get_hf_model_dispatches_on_model_type_and_iterates_checkpoints(tmp_path):
    import gpt2
    import pretrained

    a, b = make_tiny_gpt2(tmp_path / "a", seed=0), make_tiny_gpt2(tmp_path / "b", seed=1)
    lm = pretrained.get_hf_model(str(a))
    ids = torch.tensor([lm.tokenizer(TEXTS[0])])
    with torch.no_grad():
        assert torch.equal(lm(ids), gpt2.get_gpt2(str(a))(ids))
    got = list(pretrained.get_all_checkpoints([str(a), str(b)]))
    assert [label for label, _ in got] == [str(a), str(b)]
    with torch.no_grad():
        la, lb = (m(ids) for _, m in got)
    assert torch.equal(la, lm(ids)) and not torch.allclose(la, lb), "each source is its own weights"


def test_unsupported_family_and_bad_folder_are_one_line(tmp_path):
    import pretrained

    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    with pytest.raises(UserError, match="model_type 'mamba' is not supported yet; supported: gpt2"):
        pretrained.get_hf_model(str(tmp_path / "llama"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no readable config.json"):
        pretrained.get_hf_model(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="has no revision 'step1'"):
        pretrained.get_hf_model(str(tmp_path / "llama"), revision="step1")


def test_pythia_offline_names_the_revision_and_how_to_supply_a_folder(monkeypatch):
    import pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError) as e:
        next(pretrained.get_all_checkpoints([1000], size="70m"))
    msg = str(e.value)
    assert "'EleutherAI/pythia-70m'" in msg and "revision='step1000'" in msg and "save_pretrained(DIR)" in msg and "\n" not in msg
    with pytest.raises(UserError, match="no Pythia size '7m'"):
        pretrained.get_pythia("7m")


def test_show_head_progress_draws_a_pretrained_trajectory(tmp_path):
    """Local folders (a Pythia step list works the same way) through get_all_checkpoints: one panel
    each, titled by source, holding that model's own pattern for the head."""
    import matplotlib

    matplotlib.use("Agg")
    import dynamics
    import pretrained

    a, b = make_tiny_gpt2(tmp_path / "a", seed=0), make_tiny_gpt2(tmp_path / "b", seed=1)
    fig, patterns = dynamics.show_head_progress(pretrained.get_all_checkpoints([str(a), str(b)]), TEXTS[0], layer=1, head=2, show=False)
    assert [ax.get_title() for ax in fig.axes[:2]] == [str(a), str(b)]
    for folder, got in zip((a, b), patterns):
        lm = pretrained.get_hf_model(str(folder))
        _, cache = lm.run_with_cache(TEXTS[0], names_filter="blocks.1.attn.hook_pattern")
        assert torch.allclose(got, cache["blocks.1.attn.hook_pattern"][0, 2])
    assert not torch.allclose(patterns[0], patterns[1])
    with pytest.raises(UserError, match="no checkpoints"):
        dynamics.show_head_progress(iter(()), TEXTS[0], layer=0, head=0, show=False)
