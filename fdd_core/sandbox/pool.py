"""Parent side of the program sandbox: the worker processes and the pool that lends them to callers."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fdd_core.bounded_json import JSONBoundsError, loads_bounded

FRAME = struct.Struct(">I")
FRAME_OVERHEAD_BYTES = 64 * 1024  # answer, message and JSON keys; a frame is bounded, so excess means foul play
STARTUP_LIMIT_S = 30.0
WORKER_SCRIPT = Path(__file__).with_name("worker.py")
ERROR_KINDS = frozenset({"syntax", "runtime", "timeout", "memory", "forbidden", "no_answer"})
MAX_FRAME_DEPTH = 2  # a result frame is a flat object; the ready frame holds one more (its isolation layers)


class UnreadableFrame(ValueError):
    """A frame that is not what a worker sends: too deep, not JSON, not a result."""


def decode_frame(body: bytes):
    """JSON-decode a frame read from a worker, as untrusted input: depth-bounded, no NaN/Infinity."""
    try:
        return loads_bounded(body, MAX_FRAME_DEPTH)
    except JSONBoundsError as error:
        raise UnreadableFrame(str(error)) from None
    except MemoryError:
        raise UnreadableFrame("MemoryError") from None


def checked_result(frame) -> dict:
    """A worker's result frame as the scheduler may use it; anything else becomes that program's runtime error."""
    try:
        if not isinstance(frame, dict):
            raise UnreadableFrame(f"a {type(frame).__name__}, not an object")
        if "unreadable" in frame and len(frame) == 1:
            raise UnreadableFrame(frame["unreadable"])
        result = {}
        for key in ("message", "stdout"):
            if not isinstance(frame.get(key, ""), str):
                raise UnreadableFrame(f"{key} is not a string")
            result[key] = frame.get(key, "")
        if frame.get("error") is not None:
            if frame["error"] not in ERROR_KINDS:
                raise UnreadableFrame("unknown error kind")
            result["error"] = frame["error"]
        else:
            answer = frame.get("answer")
            if isinstance(answer, bool) or not isinstance(answer, (int, float, str)):
                raise UnreadableFrame("no answer of a known type")
            if isinstance(answer, float) and not math.isfinite(answer):
                raise UnreadableFrame("answer is not finite")
            result["answer"] = answer
        result["retire"] = frame.get("retire") is True
        return result
    except UnreadableFrame as error:
        return {"error": "runtime", "message": f"the sandbox could not read this program's result ({error})"}


class SandboxError(RuntimeError):
    """The sandbox cannot run programs: its workers fail to start."""


class SandboxClosed(SandboxError):
    """The sandbox was closed."""


class WorkerLost(Exception):
    """The worker stopped talking: it exited, or broke the protocol."""


class Worker:
    """One sandbox process, in its own session and temp dir, with an empty environment."""

    def __init__(self, config_json: str, max_frame_bytes: int) -> None:
        self.tmpdir = tempfile.mkdtemp(prefix="fdd-sandbox-")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", str(WORKER_SCRIPT), config_json],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.tmpdir,
                env={},  # nothing inherited: no API keys, no PYTHON* variables
                start_new_session=True,  # its own process group, killed as one
                close_fds=True,
            )
        except BaseException:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            raise
        self.pid = self.proc.pid
        self.ready = False
        self.chunk: list[int] = []  # indices (into the caller's batch) of the programs sent and not answered
        self.deadline = time.monotonic() + STARTUP_LIMIT_S
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self._lock = threading.Lock()
        self._disposed = False

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, programs: list[str]) -> None:
        body = json.dumps({"programs": programs}).encode()
        view = memoryview(FRAME.pack(len(body)) + body)
        try:
            while view:
                view = view[os.write(self.proc.stdin.fileno(), view) :]
        except OSError as error:  # BrokenPipeError: it died before reading
            raise WorkerLost(str(error)) from error

    def receive(self) -> tuple[list, str | None]:
        """Read what is available (call only when poll says so): the complete frames, decoded, and why the
        stream broke (None while it holds). A frame that cannot be decoded comes back as {"unreadable": why}."""
        try:
            data = os.read(self.fd, 1 << 16)
        except OSError as error:
            return [], f"cannot read ({error.strerror})"
        if not data:
            return [], "end of output"
        self._buffer += data
        frames = []
        while len(self._buffer) >= FRAME.size:
            (size,) = FRAME.unpack_from(self._buffer)
            if size > self._max_frame_bytes:  # the worker bounds every frame: it broke the protocol
                return frames, f"oversized frame ({size} bytes)"
            if len(self._buffer) < FRAME.size + size:
                break
            body = bytes(self._buffer[FRAME.size : FRAME.size + size])
            del self._buffer[: FRAME.size + size]
            try:
                frames.append(decode_frame(body))
            except UnreadableFrame as error:
                frames.append({"unreadable": str(error)})
        return frames, None

    def exit_signal_or_status(self, wait_s: float = 1.0) -> tuple[str, int] | None:
        """How the process ended ('signal', n) or ('status', n), without reaping it; None if still running."""
        end = time.monotonic() + wait_s
        while True:
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                code = self.proc.returncode
                return None if code is None else (("signal", -code) if code < 0 else ("status", code))
            if info is not None:
                kind = "status" if info.si_code == os.CLD_EXITED else "signal"
                return kind, info.si_status
            if time.monotonic() >= end:
                return None
            time.sleep(0.005)

    def terminate(self) -> None:
        """SIGKILL the whole process group (the worker and anything it spawned), then reap."""
        with self._lock:
            if self.proc.returncode is None:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                self.proc.wait()

    def dispose(self) -> None:
        if self.proc.returncode is None and not self.chunk:  # idle: it ends itself (and its session child) on EOF
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.terminate()
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.stdout.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class WorkerPool:
    """A fixed number of workers shared by all callers; each call borrows some and gives them back."""

    def __init__(self, size: int, config: dict) -> None:
        self.size = size
        self.isolation: dict[str, bool] = {}
        # stdout is capped in characters; JSON's \uXXXX escapes take up to 12 bytes per character
        self._max_frame_bytes = 12 * config["stdout_chars"] + FRAME_OVERHEAD_BYTES
        self._config = json.dumps({**config, "max_result_bytes": self._max_frame_bytes})
        self._cond = threading.Condition()
        self._all: set[Worker] = set()
        self._idle: list[Worker] = []
        self._waiting = 0
        self._closed = False
        with self._cond:
            self._idle = [self._spawn() for _ in range(size)]

    def _spawn(self) -> Worker:
        worker = Worker(self._config, self._max_frame_bytes)
        self._all.add(worker)
        return worker

    @property
    def someone_waiting(self) -> bool:
        return self._waiting > 0

    def acquire(self, block: bool) -> Worker | None:
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxClosed("the sandbox is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.size:
                    return self._spawn()
                if not block:
                    return None
                self._waiting += 1
                try:
                    self._cond.wait()
                finally:
                    self._waiting -= 1

    def release(self, worker: Worker) -> None:
        with self._cond:
            keep = not self._closed and worker in self._all
            if keep:
                self._idle.append(worker)
                self._cond.notify()
        if not keep:
            worker.dispose()

    def discard(self, worker: Worker) -> None:
        with self._cond:
            self._all.discard(worker)
            self._cond.notify()
        worker.dispose()

    def replace(self, worker: Worker) -> Worker:
        """Dispose of a worker and start its successor, kept by the caller (one step, so the pool never overfills)."""
        with self._cond:
            self._all.discard(worker)
            successor = None if self._closed else self._spawn()
        worker.dispose()
        if successor is None:
            raise SandboxClosed("the sandbox is closed")
        return successor

    def check_open(self) -> None:
        if self._closed:
            raise SandboxClosed("the sandbox is closed")

    def note_ready(self, frame: dict) -> None:
        layers = frame.get("isolation")
        if not self.isolation and isinstance(layers, dict):
            self.isolation = {str(k): v is True for k, v in layers.items()}

    def pids(self) -> list[int]:
        with self._cond:
            return sorted(worker.pid for worker in self._all)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, busy = list(self._idle), [w for w in self._all if w not in self._idle]
            self._all.clear()
            self._idle.clear()
            self._cond.notify_all()
        for worker in idle:
            worker.dispose()
        for worker in busy:  # their callers close the pipes when they give them back
            worker.terminate()


def death_frame(ending: tuple[str, int] | None) -> dict:
    """Explain a worker that died mid-program."""
    if ending is None:
        return {"error": "runtime", "message": "the sandbox worker stopped answering"}
    kind, number = ending
    if kind == "status":
        return {"error": "runtime", "message": f"the sandbox worker exited with status {number}"}
    if number == signal.SIGXCPU:
        return {"error": "timeout", "message": "CPU time limit exceeded"}
    if number == signal.SIGKILL:  # not ours: the kernel's OOM killer is the usual sender
        return {"error": "memory", "message": "the sandbox worker was killed (out of memory?)"}
    name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
    return {"error": "runtime", "message": f"the sandbox worker crashed ({name}), e.g. C stack overflow"}
