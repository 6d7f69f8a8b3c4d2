"""CPU threads for a run (`TrainParams.threads`) and a warning when the machine is already busy.

On a shared machine a run can take ten times longer than on an idle one; the warning says why
before the first step, instead of leaving a researcher to guess.
"""
from __future__ import annotations

import os

_warned = False


def default_threads() -> int:
    """torch's own count (which follows $OMP_NUM_THREADS, or a `torch.set_num_threads` made earlier in this
    process, e.g. by the bench or a notebook), but never more than the cores this process may use."""
    import torch

    return min(torch.get_num_threads(), usable_cores())


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all cores where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_warning(cores: int | None = None, load: float | None = None) -> str | None:
    """One line when the 1-minute load average exceeds the machine's cores, else None."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    if load <= cores:
        return None
    return f"warning: load average {load:.1f} on {cores} cores: other processes compete for the CPU, so training and its timings will be slower than on an idle machine; TrainParams.threads=1 is often faster then"


def apply_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 = `default_threads()`); warn once per process about an overloaded machine."""
    import torch

    global _warned
    n = threads or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    msg = None if _warned else load_warning()
    if msg:
        print(msg, flush=True)
        _warned = True
    return n
