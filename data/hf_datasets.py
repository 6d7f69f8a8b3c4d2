"""Tasks backed by Hugging Face `datasets`: `ptb`, `wikitext-2`, `wikitext-103`.

`load_hf_task` calls `datasets.load_dataset` with the real hub names. When the hub can't be
reached it does not wait through the library's retries (~25 s): a 3 s TCP check decides,
then the load runs in offline mode, which still finds copies in the local HF cache; if there
is none the user gets one line naming the task, the dataset, and how to supply the text as
custom files instead (`<data folder>/<task>/train.txt, val.txt, test.txt`, see
`data/custom_files.py`). Such a local folder, when present, is used before the hub.

`dataset_to_splits` is the part that turns any loaded `DatasetDict` into our split texts;
tests run it on a `Dataset` built in memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from data.custom_files import custom_task_dir, describe_data_folder, load_custom_task
from data.data_params import DataParams
from data.tasks import TaskData
from core import hub
from core.errors import UserError


@dataclass(frozen=True)
class HFSpec:
    """Where a task lives on the hub and how its rows become documents."""

    path: str
    name: str | None
    column: str
    docs: str  # "lines": each non-empty row is a document; "wikitext": rows grouped into articles

    def describe(self) -> str:
        return f"{self.path}" + (f" ({self.name})" if self.name else "")


HF_TASKS: dict[str, HFSpec] = {
    "ptb": HFSpec("ptb-text-only/ptb_text_only", "penn_treebank", "sentence", "lines"),
    "wikitext-2": HFSpec("Salesforce/wikitext", "wikitext-2-raw-v1", "text", "wikitext"),
    "wikitext-103": HFSpec("Salesforce/wikitext", "wikitext-103-raw-v1", "text", "wikitext"),
}
SPLIT_ALIASES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}


def local_data_hint(task: str) -> str:
    return (f"to train offline, put train.txt, val.txt, test.txt (one document per line) or data.txt into "
            f"a folder {task}/ inside your data folder, named by {describe_data_folder()}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_hub_dataset(task: str, spec: HFSpec) -> Any:
    """`datasets.load_dataset(spec.path, spec.name)`, failing fast with a UserError offline."""
    import datasets

    try:
        with hub.reach() as online:
            return datasets.load_dataset(spec.path, spec.name)
    except Exception as e:  # the library raises many types (ConnectionError, DatasetNotFoundError, ...)
        if online:
            raise UserError(f"task {task!r}: loading {spec.describe()} from the Hugging Face hub failed ({_first_line(e)}); {local_data_hint(task)}") from None
        raise UserError(f"task {task!r}: the Hugging Face hub is unreachable and {spec.describe()} is not in the local datasets cache; {local_data_hint(task)}") from None


# --- loaded dataset → split texts ---------------------------------------------------------
def _column(ds: Any, column: str) -> list[str]:
    if column not in ds.column_names:
        raise UserError(f"dataset has no column {column!r} (columns: {', '.join(ds.column_names)})")
    try:
        return ds.data.column(column).to_pylist()  # Arrow: much faster than row iteration
    except AttributeError:
        return list(ds[column])


_WIKI_TITLE = re.compile(r"^ = [^=].* = \n?$")


def wikitext_articles(rows: list[str]) -> list[str]:
    """Group wikitext rows (one line each; '' stands for a blank line) into articles at ' = Title = ' lines."""
    articles: list[list[str]] = []
    for row in rows:
        if _WIKI_TITLE.match(row) or not articles:
            articles.append([])
        articles[-1].append(row if row else "\n")
    out = ["".join(a).strip("\n") for a in articles]
    return [a for a in out if a.strip()]


def rows_to_docs(rows: list[str], docs: str) -> list[str]:
    if docs == "wikitext":
        return wikitext_articles(rows)
    if docs == "lines":
        return [r.rstrip("\n") for r in rows if r and r.strip()]
    raise ValueError(f"unknown document grouping {docs!r}")


def dataset_to_splits(dsd: Mapping[str, Any], column: str, docs: str = "lines") -> dict[str, list[str]]:
    """A DatasetDict (or dict of Datasets) → {'train','val','test': documents}.

    Split names are matched through `SPLIT_ALIASES` ('validation' → 'val', ...). A missing test
    split becomes empty; train and val are required.
    """
    out: dict[str, list[str]] = {}
    for ours, aliases in SPLIT_ALIASES.items():
        name = next((a for a in aliases if a in dsd), None)
        if name is None:
            if ours == "test":
                out[ours] = []
                continue
            raise UserError(f"dataset has no {ours} split (looked for {', '.join(aliases)}; it has {', '.join(dsd)})")
        out[ours] = rows_to_docs(_column(dsd[name], column), docs)
    return out


def load_hf_task(dp: DataParams, seed: int, task: str) -> TaskData:
    """A local custom folder named like the task wins; else the hub (or the HF cache)."""
    spec = HF_TASKS[task]
    pack = dp.pack if dp.pack is not None else True
    if custom_task_dir(task) is not None:
        return load_custom_task(dp, seed, default_pack=True, task=task)
    splits = dataset_to_splits(load_hub_dataset(task, spec), spec.column, spec.docs)
    return TaskData(splits, pack=pack, extras={"source": spec.describe()})
