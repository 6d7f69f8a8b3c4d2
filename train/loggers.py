"""Lightning loggers for a run: a local CSV log always, wandb when enabled (offline if unreachable)."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

WANDB_HOST = ("api.wandb.ai", 443)


def wandb_reachable(timeout: float = 2.0) -> bool:
    """A logged-in, reachable wandb; otherwise we go offline rather than hang."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            import netrc

            has_key = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        return False
    try:
        with socket.create_connection(wandb_host(), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_host() -> tuple[str, int]:
    """api.wandb.ai, or the server WANDB_BASE_URL names (self-hosted wandb)."""
    from urllib.parse import urlparse

    url = os.environ.get("WANDB_BASE_URL")
    if not url:
        return WANDB_HOST
    u = urlparse(url if "//" in url else f"https://{url}")
    return (u.hostname or WANDB_HOST[0], u.port or (80 if u.scheme == "http" else 443))


_said_offline = False


def make_loggers(log_dir: Path, use_wandb: bool, project: str, run_name: str | None, config: dict[str, Any], wandb_id: str | None = None) -> list:
    """`wandb_id` (kept in the run's state) makes a resumed run continue the same wandb run."""
    from lightning.pytorch.loggers import CSVLogger

    global _said_offline
    log_dir.mkdir(parents=True, exist_ok=True)
    loggers: list = [CSVLogger(save_dir=str(log_dir), name="", version="")]
    if use_wandb:
        from lightning.pytorch.loggers import WandbLogger

        online = wandb_reachable()
        if not online and not _said_offline:
            print("wandb: no login or no network; logging offline to", log_dir, "(sync later with `wandb sync`)", flush=True)
            _said_offline = True
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(
            WandbLogger(project=project, name=run_name, save_dir=str(log_dir), offline=not online, config=config, id=wandb_id, **({"resume": "allow"} if online and wandb_id else {}))
        )
    return loggers
