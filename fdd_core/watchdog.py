"""A watchdog that stops the temporary Prefect server of `fdd run` when the run's process dies, even by SIGKILL
(which runs no exit handler: Prefect's own atexit stop never happens, and the server would live on).

The run starts the watchdog with the read end of a pipe whose write end only the run holds: the pipe reads EOF
once the run is gone, however it ended. Until then the watchdog notes the run's child processes that are the
server (their pid and start time, so a reused pid is never hit); then it sends them SIGTERM, and SIGKILL after a
grace period. Linux only (/proc); elsewhere start_watchdog does nothing.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVER_MARK = "prefect.server.api.server:create_app"  # in the command line of Prefect's temporary server
GRACE_S = 5.0
_keep: list[int] = []  # the write end of the pipe, held open for the life of this process


def start_watchdog(mark: str = SERVER_MARK) -> subprocess.Popen | None:
    if not Path("/proc/self/stat").exists():
        return None
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "fdd_core.watchdog", str(os.getpid()), str(read_end), mark],
                            pass_fds=(read_end,), start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(read_end)
    _keep.append(write_end)  # non-inheritable (PEP 446): children of the run do not keep the pipe open
    return proc


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[19]


def _children(parent: int, mark: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():  # the watchdog's own command names the mark
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[0] != parent:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if mark in cmdline:
            found[int(entry.name)] = stat[1]
    return found


def watch(parent: int, read_end: int, mark: str) -> None:
    seen: dict[int, str] = {}
    while True:
        ready, _, _ = select.select([read_end], [], [], 1.0)
        if ready and not os.read(read_end, 1):
            break  # EOF: the run has ended
        seen.update(_children(parent, mark))
    alive = {pid: start for pid, start in seen.items() if (_stat(pid) or (0, None))[1] == start}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline:
            alive = {pid: start for pid, start in alive.items() if (_stat(pid) or (0, None))[1] == start}
            if not alive:
                return
            time.sleep(0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
