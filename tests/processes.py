"""Stopping the processes tests start (Prefect servers, workers, flows) and checking nothing of theirs is left."""

from __future__ import annotations

import signal
import subprocess

import psutil


def terminate(proc: subprocess.Popen, wait_s: float = 15) -> None:
    """SIGTERM by PID (a Prefect CLI turns the first into a graceful stop; the second ends it), each given wait_s
    seconds, then SIGKILL as a last resort."""
    for _ in range(2):
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def stop_process(proc: subprocess.Popen, family: list[psutil.Process]) -> list[int]:
    """terminate(proc); returns the PIDs of its children (`family`) still running 5 s after it ended (then
    terminated)."""
    terminate(proc)
    _, alive = psutil.wait_procs(family, timeout=5)
    left = [p.pid for p in alive if is_alive(p)]
    for child in alive:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    return left


def is_alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
