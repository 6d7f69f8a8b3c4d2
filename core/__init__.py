"""The bottom layer: what `data/`, `model/` and `train/` all share (the user-facing error, the
parameter-dataclass machinery). It imports nothing from the harness; tests/test_layering.py checks."""
