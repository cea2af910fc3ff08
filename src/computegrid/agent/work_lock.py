"""One agent per work directory: two agents driving the same attempts would race (both submit a gang, and
each stops the other's attempts as orphans). `computegrid agent` holds an exclusive lock on
`WORK/agent.lock` for as long as it runs; a second agent on the same directory is refused at once.
(flock: it guards agents on one machine; a work directory shared over NFS may not honour it.)"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO


class WorkDirTaken(RuntimeError):
    """Another agent already runs on this work directory."""


def hold_work_dir(where: Path) -> IO[str]:
    """Lock `where` for this process; keep the returned handle open as long as the agent runs."""
    where.mkdir(parents=True, exist_ok=True)
    handle = open(where / "agent.lock", "a")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise WorkDirTaken(f"another agent already runs on {where}; give each agent its own --node-name "
                           "or --work-dir") from exc
    return handle
