"""Process liveness, for what a killed run leaves behind (partial folders, S3 leases, the
embedded server's owners): a pid only means something on the boot that recorded it."""

from __future__ import annotations

import os
from pathlib import Path


def boot_id() -> str:
    """This boot's id (Linux; empty elsewhere)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists (someone else's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
