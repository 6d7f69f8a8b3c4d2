"""Fails, naming the member, when a Lightning upgrade moves one of the private members we use."""
from __future__ import annotations

import importlib

import lightning
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel

from train import lightning_compat
from train.lightning_compat import PRIVATE_MEMBERS


def _instance_or_class(path: str):
    """Members set in __init__ exist only on instances: build one of the cheap classes."""
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if name == "Trainer":
        return lightning.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    if name == "_FitLoop":
        return _instance_or_class("lightning.pytorch.trainer.trainer.Trainer").fit_loop
    if name in ("LightningModule", "ModelCheckpoint"):
        return cls()
    return cls


@pytest.mark.parametrize("where,member", PRIVATE_MEMBERS, ids=[m for _, m in PRIVATE_MEMBERS])
def test_private_lightning_member_still_exists(where, member):
    obj = _instance_or_class(where)
    assert hasattr(obj, member), (
        f"lightning {lightning.__version__} has no {where}.{member}; update train/lightning_compat.py before widening the pin in requirements.txt"
    )


def test_accessors_answer_on_a_real_fit(tmp_path):
    """Each accessor runs inside a real (tiny) fit and returns what it promises."""
    seen: dict[str, list] = {"hook": [], "trainer": [], "writes": [], "val_follows": []}

    class Probe(BoringModel):
        def training_step(self, batch, batch_idx):
            seen["hook"].append(lightning_compat.current_hook(self))
            seen["trainer"].append(lightning_compat.attached_trainer(self) is self.trainer)
            seen["writes"].append(lightning_compat.loggers_write_this_step(self.trainer))
            seen["val_follows"].append(lightning_compat.validation_follows(self.trainer))
            return super().training_step(batch, batch_idx)

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    trainer = lightning.Trainer(
        default_root_dir=tmp_path, max_steps=4, limit_val_batches=1, val_check_interval=3, log_every_n_steps=2, logger=False, callbacks=[ckpt],
        enable_progress_bar=False, enable_model_summary=False,
    )
    assert lightning_compat.attached_trainer(Probe()) is None
    trainer.fit(Probe())
    assert seen == {"hook": ["training_step"] * 4, "trainer": [True] * 4, "writes": [False, True, False, True], "val_follows": [False, False, True, False]}
    step, path = lightning_compat.checkpoint_saved_at(ckpt)
    assert step == 4 and path.endswith("last.ckpt")
    (tmp_path / "last.ckpt").unlink()
    lightning_compat.save_last_checkpoint(ckpt, trainer)
    assert (tmp_path / "last.ckpt").exists()
