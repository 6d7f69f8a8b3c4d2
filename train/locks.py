"""What a run owns, claimed atomically so that concurrent processes never share or overwrite it.

* Folders: `claim_folder` creates a run's folder with one `mkdir` (atomic); when another process
  got there first it takes `NAME-1`, `NAME-2`, ... So N identical runs started in the same second
  get N run folders and N log folders.
* Runs in progress: `RunLocks.acquire` puts `.lock` (JSON: pid, host, start time, command) in the
  run's state folder, created with `os.link` so it appears complete or not at all. A second
  process on the same run stops at once, naming the holder. A lock whose process no longer exists
  on this host is stale and taken over. The lock goes when the run ends (or when a finished
  `--save` run is swapped in, since the folder it sat in is replaced).

Torch-free.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import UserError

LOCK = ".lock"


def claim_folder(path: Path) -> Path:
    """Create `path`, or `path-1`, `path-2`, ... when taken; returns the folder this process now owns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 0
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": " ".join(sys.argv)[:300]}


def read_holder(lock: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(Path(lock).read_text())
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _stale(holder: dict[str, Any]) -> bool:
    return holder.get("host") == socket.gethostname() and not pid_alive(holder["pid"])


def _describe(holder: dict[str, Any]) -> str:
    return f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('since', '?')}: {holder.get('command', '?')})"


class RunLocks:
    """The lock files this process holds; a context manager that releases them all."""

    def __init__(self) -> None:
        self.held: list[Path] = []

    def __enter__(self) -> "RunLocks":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self, folder: Path) -> None:
        """Own the run in `folder`, or raise UserError naming the process that does."""
        lock = Path(folder) / LOCK
        mine = _me()
        tmp = lock.with_name(f"{LOCK}.{mine['pid']}.tmp")
        try:
            tmp.write_text(json.dumps(mine))
        except OSError as e:
            raise UserError(f"cannot lock the run in {folder}: {e.strerror or e}; make the folder writable") from None
        try:
            for _ in range(5):
                try:
                    os.link(tmp, lock)  # atomic: fails if a lock exists; the new one is complete at once
                    self.held.append(lock)
                    return
                except FileExistsError:
                    pass
                holder = read_holder(lock)
                if holder is not None and holder["pid"] == mine["pid"] and holder.get("host") == mine["host"]:
                    return  # already ours
                if holder is None:
                    if not lock.exists():
                        continue
                    raise UserError(f"{lock} is unreadable, so the run in {folder} may be in use; if no process runs it, delete {lock}")
                if not _stale(holder):
                    raise UserError(f"{folder} is in use by {_describe(holder)}; wait for it to finish or stop it (pid {holder['pid']})")
                self._take_over(lock, holder)
            raise UserError(f"could not lock {folder}: other processes keep taking {lock}; try again")
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _take_over(lock: Path, holder: dict[str, Any]) -> None:
        """Move a dead process's lock aside; if another process replaced it meanwhile, put that one back."""
        aside = lock.with_name(f"{LOCK}.stale-{os.getpid()}")
        try:
            os.rename(lock, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside)
        if moved is not None and moved["pid"] != holder["pid"] and not _stale(moved):
            try:
                os.link(aside, lock)  # a live lock taken by mistake goes back
            except FileExistsError:
                pass
        else:
            print(f"note: took over {lock} from {_describe(holder)}, which no longer runs", flush=True)
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        for lock in self.held:
            holder = read_holder(lock)
            if holder is not None and holder["pid"] == os.getpid():
                lock.unlink(missing_ok=True)
        self.held = []
