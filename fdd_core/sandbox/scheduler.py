"""Run untrusted program-of-thought code (teacher or student Python) in a pool of sandboxed worker processes.

Conventions: the answer is `solution()`'s return value when the program defines a callable `solution`
(PAL style), else the variable `ans`. Each program gets a result: a JSON-safe answer, or a typed error.

What it protects against (layers, each independent of the others):
- Runaway programs: a per-program wall-clock limit enforced by the parent (poll on the result pipe, then
  SIGKILL to the worker's process group and a fresh worker), plus an RLIMIT_CPU backstop in the worker;
  memory: RLIMIT_AS = worker baseline + memory_mb, so MemoryError -> `memory` and a fresh worker;
  output floods: print is captured into a capped buffer; deep recursion: a recursion limit, and a worker
  that crashes anyway is reported as `runtime` and replaced.
- One program changing another's result: no program runs in the worker process itself. A program that could
  change state a later program sees (a class, a match, an attribute set, a module beyond math/itertools)
  runs in a child forked for it alone and killed after its answer; contained programs share a session
  child, retired after a timeout, a memory error or memory growth (worker.py). Each child's answer is read
  size-bounded and within its time; the parent decodes it as untrusted (depth-bounded, no NaN, a known
  shape): any decoding failure is that program's runtime error, never the parent's.
- Escapes through Python: a static AST check (`forbidden`): imports outside math, fractions, decimal,
  datetime, itertools, functools, statistics, re; any dunder name or attribute; private attributes except
  on self/cls, and those only on the program's own classes and instances (checked at run time); frame,
  code and generator attributes; exec/eval/compile/open/getattr & co. Reads the interpreter does by itself
  with names a program could choose are closed: no metaclasses and no type() of a class (a metaclass's
  __instancecheck__/__getattr__ would feed a class pattern's __match_args__), positional class patterns only
  on builtin types, no `format` by match keyword. The program then runs with a restricted __builtins__ and
  read-only per-program copies of the allowed modules (public, non-module attributes only), and str.format
  templates are vetted at run time ('{0.__class__}').
- Secrets and the host: workers start from an empty environment (`python -I -S`), in a private temp dir,
  with fds 0/1 on /dev/null and JSON (never pickle) on private pipes. As root, each worker also moves to an
  empty network namespace, chroots into its temp dir and drops to uid/gid 65534, so it sees no files and
  RLIMIT_NPROC=0 really forbids child processes; as non-root it tries an unprivileged user+network
  namespace. PR_SET_NO_NEW_PRIVS is set; RLIMIT_FSIZE, RLIMIT_NOFILE and core dumps are capped.

What it does NOT protect against:
- It is not a security boundary against a determined attacker: a CPython bug or a crafted segfault that
  turns into code execution lands in the worker with whatever the OS layers above left it. There is no
  seccomp filter. `isolation` says which OS layers a worker actually got.
- Without root, there is no chroot and no uid drop: an escaped program could read the user's files, write
  where the user can (RLIMIT_FSIZE caps a file at 1 MiB), read /proc/<parent>/environ, and RLIMIT_NPROC=0
  only stops forks if the kernel counts that user (it is ignored for root, hence the uid drop).
- Without user namespaces (or CAP_SYS_ADMIN as root) there is no network namespace; only the absence of
  socket-capable modules stands between a program and the network.
- A bug in the contained-program rule (policy_static.is_contained) would let a program in a session child
  reach the contained programs after it in that session (not the others). An escaped program that stops its
  worker (SIGSTOP/SIGKILL; same uid) gets its own program a timeout or crash; as root each worker has a uid
  of its own, so it cannot signal another worker.
- CPU and memory are per worker: N workers may use N cores and N x (baseline + memory_mb).

Layout of fdd_core.sandbox: scheduler.py (this module: the API and the scheduler; no signals, so any thread may
call), pool.py (worker processes), worker.py (the worker's main loop and lockdown), policy_static.py (static
policy), policy_runtime.py (run-time policy).
"""

from __future__ import annotations

import atexit
import math
import os
import select
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from fdd_core.sandbox.pool import (
    STARTUP_LIMIT_S,
    SandboxClosed,
    SandboxError,
    Worker,
    WorkerLost,
    WorkerPool,
    checked_result,
    death_frame,
)

__all__ = ["ErrorKind", "ProgramResult", "Sandbox", "SandboxClosed", "SandboxError", "run_programs"]

CHUNK_PROGRAMS = 32  # programs per message: amortises the pipe round trip, small enough to balance the load
CHUNK_CHARS = 32_000
STARTUP_ATTEMPTS = 3  # per run() call: one unlucky start is retried, a broken setup fails loudly
WORKER_GRACE_S = 1.0  # a worker times its programs itself; the parent steps in only when the worker stalls


class ErrorKind(str, Enum):
    SYNTAX = "syntax"
    RUNTIME = "runtime"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    FORBIDDEN = "forbidden"
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class ProgramResult:
    """One program's outcome: `answer` is set exactly when `error` is None.

    `stdout` is whatever the program printed before it ended; a program killed for time or by a crash
    loses it. `message` is one line, e.g. "ZeroDivisionError: division by zero".
    """

    answer: int | float | str | None
    error: ErrorKind | None
    message: str = ""
    stdout: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None


class Sandbox:
    """A pool of warm, locked-down worker processes; thread-safe; use as a context manager or call close()."""

    def __init__(
        self, workers: int | None = None, timeout_s: float = 2.0, memory_mb: int = 256, stdout_chars: int = 2000
    ) -> None:
        if sys.platform != "linux":  # rlimits, /proc and namespaces as used here are Linux-only
            raise RuntimeError("the program sandbox needs Linux")
        if timeout_s <= 0 or memory_mb <= 0 or stdout_chars < 0:
            raise ValueError("timeout_s and memory_mb must be positive, stdout_chars non-negative")
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        config = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "stdout_chars": stdout_chars,
            "recursion_limit": 2000,
        }
        self._pool = WorkerPool(max(1, workers or os.cpu_count() or 1), config)
        self._finalizer = weakref.finalize(self, self._pool.close)

    @classmethod
    def from_config(cls, cfg) -> "Sandbox":
        """A sandbox with the limits of a run's config (`FDDConfig.sandbox`: workers, timeout_s, memory_mb)."""
        return cls(workers=cfg.workers, timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb)

    def run(self, programs: Sequence[str]) -> list[ProgramResult]:
        """Run each program in a fresh namespace; results come back in input order."""
        if isinstance(programs, str):
            raise TypeError("run() takes a sequence of programs, not one string")
        sources = list(programs)
        for source in sources:
            if not isinstance(source, str):
                raise TypeError(f"a program must be a str, not {type(source).__name__}")
        if not sources:
            return []
        frames = _Batch(self._pool, sources, self.timeout_s).run()
        return [_result(frame) for frame in frames]

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for monitoring and tests)."""
        return self._pool.pids()

    @property
    def isolation(self) -> dict[str, bool]:
        """OS layers the workers got ({'network': ..., 'chroot': ..., 'uid_drop': ..., 'no_new_privs': ...});
        empty until a worker has started."""
        return dict(self._pool.isolation)

    def close(self) -> None:
        """Kill and reap every worker and remove their temp dirs; later run() calls raise SandboxClosed."""
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _result(frame: dict) -> ProgramResult:
    error = frame.get("error")
    return ProgramResult(
        answer=None if error else frame.get("answer"),
        error=ErrorKind(error) if error else None,
        message=frame.get("message", ""),
        stdout=frame.get("stdout", ""),
    )


class _Batch:
    """One run() call: hands chunks of programs to borrowed workers and enforces each program's deadline.

    Deadlines are kept with poll() on the result pipes in the calling thread, never with signals, so any
    thread may call in. A worker that overruns, dies or retires is SIGKILLed with its process group and replaced.
    """

    def __init__(self, pool: WorkerPool, sources: list[str], timeout_s: float) -> None:
        self.pool = pool
        self.sources = sources
        self.timeout_s = timeout_s
        self.pending = deque(range(len(sources)))
        self.results: list[dict | None] = [None] * len(sources)
        self.workers: list[Worker] = []
        self.chunk_size = max(1, min(CHUNK_PROGRAMS, math.ceil(len(sources) / (4 * pool.size))))
        self.failed_starts = 0

    def run(self) -> list[dict]:
        self.workers.append(self.pool.acquire(block=True))
        try:
            while self.pending or any(w.chunk for w in self.workers):
                self._borrow_idle_workers()
                self._dispatch()
                self._give_back_spare_workers()
                self._collect()
        finally:
            for worker in self.workers:  # a worker with answers still in flight cannot serve anyone else
                (self.pool.discard if worker.chunk else self.pool.release)(worker)
        return self.results  # type: ignore[return-value]

    def _borrow_idle_workers(self) -> None:
        while len(self.pending) > len(self.workers) * self.chunk_size and not self.pool.someone_waiting:
            worker = self.pool.acquire(block=False)
            if worker is None:
                return
            self.workers.append(worker)

    def _next_chunk(self) -> list[int]:
        chunk, chars = [], 0
        while self.pending and len(chunk) < self.chunk_size and chars < CHUNK_CHARS:
            chunk.append(self.pending.popleft())
            chars += len(self.sources[chunk[-1]])
        return chunk

    def _dispatch(self) -> None:
        for worker in list(self.workers):
            if worker.ready and not worker.chunk and self.pending:
                worker.chunk = self._next_chunk()
                worker.deadline = time.monotonic() + self.timeout_s + WORKER_GRACE_S
                try:
                    worker.send([self.sources[i] for i in worker.chunk])
                except WorkerLost as error:
                    self._lose(worker, str(error))

    def _give_back_spare_workers(self) -> None:
        for worker in [w for w in self.workers if not w.chunk]:
            if not self.pending or (self.pool.someone_waiting and len(self.workers) > 1):
                self.workers.remove(worker)
                self.pool.release(worker)

    def _collect(self) -> None:
        watched = {w.fd: w for w in self.workers if w.chunk or not w.ready}
        if not watched:
            return
        poller = select.poll()
        for fd in watched:
            poller.register(fd, select.POLLIN)
        wait_s = min(w.deadline for w in watched.values()) - time.monotonic()
        for fd, _ in poller.poll(max(0, math.ceil(wait_s * 1000))):
            self._read(watched[fd])
        now = time.monotonic()
        for worker in list(self.workers):
            # a worker that only just said it is ready, with no program yet, is past its start-up deadline
            # when it waited in the pool that long: it has nothing to overrun
            busy = worker.chunk or not worker.ready
            if worker in watched.values() and busy and worker.deadline <= now:
                self._overrun(worker)

    def _read(self, worker: Worker) -> None:
        frames, broken = worker.receive()
        try:
            for frame in frames:  # the complete frames count, even when the stream broke after them
                if worker not in self.workers:  # swapped out after its last answer
                    return
                self._accept(worker, frame)
            if broken:
                raise WorkerLost(broken)
        except WorkerLost as error:
            self._lose(worker, str(error))

    def _accept(self, worker: Worker, frame) -> None:
        if not worker.ready:
            if not (isinstance(frame, dict) and frame.get("ready") is True):
                raise WorkerLost("no ready frame")
            worker.ready = True
            self.pool.note_ready(frame)
            return
        if not worker.chunk:
            raise WorkerLost("unexpected frame")
        result = checked_result(frame)  # what the worker forwards comes from a program: untrusted
        self.results[worker.chunk.pop(0)] = result
        worker.deadline = time.monotonic() + self.timeout_s + WORKER_GRACE_S
        if result.get("retire"):  # it exits after this answer (it could not fork a program's child)
            self._swap(worker)

    def _overrun(self, worker: Worker) -> None:
        if not worker.ready:
            return self._failed_start(worker, f"not ready within {STARTUP_LIMIT_S:g} s")
        message = f"TimeoutError: exceeded the {self.timeout_s:g} s time limit"
        self.results[worker.chunk.pop(0)] = {"error": "timeout", "message": message}
        self._swap(worker)

    def _lose(self, worker: Worker, why: str = "") -> None:
        if not worker.ready:
            return self._failed_start(worker, f"{why}, {worker.exit_signal_or_status()}")
        if worker.chunk:
            self.results[worker.chunk.pop(0)] = death_frame(worker.exit_signal_or_status())
        self._swap(worker)

    def _failed_start(self, worker: Worker, why: str) -> None:
        self.failed_starts += 1
        if self.failed_starts >= STARTUP_ATTEMPTS:
            self.workers.remove(worker)
            self.pool.discard(worker)
            self.pool.check_open()
            raise SandboxError(f"sandbox workers fail to start ({why})")
        self._swap(worker)

    def _swap(self, worker: Worker) -> None:
        """Requeue the worker's unanswered programs and put a fresh worker in its place."""
        self.pending.extendleft(reversed(worker.chunk))
        worker.chunk = []
        self.workers.remove(worker)
        self.workers.append(self.pool.replace(worker))


_shared: dict[tuple[float, int], Sandbox] = {}
_shared_lock = threading.Lock()


def run_programs(programs: Sequence[str], *, timeout_s: float = 2.0, memory_mb: int = 256) -> list[ProgramResult]:
    """Convenience: uses a shared module-level Sandbox (created lazily, thread-safe, closed atexit)."""
    key = (float(timeout_s), int(memory_mb))
    with _shared_lock:
        sandbox = _shared.get(key)
        if sandbox is None:
            sandbox = _shared[key] = Sandbox(timeout_s=timeout_s, memory_mb=memory_mb)
    return sandbox.run(programs)


@atexit.register
def _close_shared() -> None:
    with _shared_lock:
        sandboxes = list(_shared.values())
        _shared.clear()
    for sandbox in sandboxes:
        sandbox.close()

