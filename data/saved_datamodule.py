"""The dataset of a saved run, rebuilt only when something reads it.

A saved run holds its weights, tokenizer, params and stats, not its data: loading it must work
on any machine, even where the data it was trained on is gone. `SavedRunDataModule` is an
`LMDataModule` whose data is regenerated (synthetic tasks) or re-read (corpora, data folders)
on first use; when that is impossible the first use raises one `UserError` saying why.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from data.data_params import DataParams
from data.dataloader import LMDataModule
from data.tokenizer import Tokenizer
from core.errors import UserError

_BUILT_IN_INIT = ("task_data", "answer_sep_id", "datasets")  # what LMDataModule.__init__ derives from the data


class SavedRunDataModule(LMDataModule):
    def __init__(self, data_params: DataParams, tokenizer: Tokenizer, seed: int, batch_size: int, run_dir: Path):
        # Deliberately not LMDataModule.__init__ yet: that reads the data.
        self.__dict__.update(_lazy=(data_params, tokenizer, seed, batch_size), _run_dir=Path(run_dir))
        L.LightningDataModule.__init__(self)
        self.data_params, self.tokenizer, self.batch_size, self.num_workers = data_params, tokenizer, batch_size, 0
        self.seed = seed if data_params.data_seed is None else data_params.data_seed

    def __getattr__(self, name: str) -> Any:  # only called for attributes not set yet
        lazy = self.__dict__.get("_lazy")
        if name in _BUILT_IN_INIT and lazy is not None:
            self.__dict__["_lazy"] = None
            dp, tok, seed, batch_size = lazy
            try:
                LMDataModule.__init__(self, dp, tokenizer=tok, seed=seed, batch_size=batch_size)
            except (UserError, OSError) as e:
                self.__dict__["_lazy"] = lazy  # a later call may succeed (e.g. the data folder came back)
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise UserError(
                    f"the data of run {self.__dict__['_run_dir']} (task {dp.task!r}) can't be rebuilt here: {msg}; "
                    "the LM, tokenizer, params and train_stats load without it"
                ) from None
            return getattr(self, name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def is_built(self) -> bool:
        return self.__dict__.get("_lazy") is None
