"""One live `fdd run` per run directory: an exclusive lock (flock) on <run dir>/run.lock holding the owner's pid.

The kernel drops the lock when its holder dies, however it dies (SIGKILL included), so a killed run never blocks
the next one; a second live run of the same directory is refused with one line naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "run.lock"


class RunLocked(RuntimeError):
    """Another live process runs this run directory; str() names it and its pid."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the run directory's lock for the block; RunLocked at once when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunLocked(f"run {run_dir} is already running (pid {holder}): wait for it to end or stop it; "
                            "two runs of one run directory would buy the same teacher replies twice") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the last descriptor drops the lock
