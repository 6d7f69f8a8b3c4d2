"""Names that moved to break import cycles (issue 19): the old import says in one line where they live now."""
from __future__ import annotations

import importlib

import pytest

MOVED = [
    ("data.tokenizer", "load_tokenizer", "data.tokenizer_kinds"),
    ("data.tasks", "get_task_data", "data.task_resolver"),
    ("data.tasks", "check_task", "data.task_resolver"),
    ("train.saving", "load_lm", "train.loading"),
    ("train.init_from", "weights_sha256", "train.loading"),
]


@pytest.mark.parametrize("old, name, new", MOVED)
def test_an_old_import_names_the_new_home(old, name, new):
    with pytest.raises(ImportError) as e:
        exec(f"from {old} import {name}", {})
    assert str(e.value) == f"{old}.{name} moved to {new}: use `from {new} import {name}`"
    assert callable(getattr(importlib.import_module(new), name)), "the new home has it"


def test_other_missing_names_stay_plain_attribute_errors():
    import train.saving

    assert not hasattr(train.saving, "no_such_name")  # hasattr and mock.patch keep working
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        exec("from train.saving import no_such_name", {})
