"""Sandbox worker process: locks itself down, then runs each untrusted program in a child forked for it alone.

Run as `python -I -S -B worker.py CONFIG_JSON`; never import this module from the parent process.
Protocol: 4-byte big-endian length + JSON, in both directions. JSON only, so an escaped program cannot
make the parent unpickle code. What a program may touch: policy_static.py (static), policy_runtime.py (run time).

Isolation per program: the worker itself (a fork server) never runs program code. A program that could change
state a later program sees (a class, a match, an attribute set, a module other than math/itertools: see
policy_static.is_contained) runs in a child forked for it alone, which answers on a pipe of its own and is then
killed and reaped, so nothing it does to its interpreter (patched functions, library objects, module globals)
outlives it. Contained programs, which can only touch their own objects, run one after another in a session
child (a fork is ~1 ms of CPU on small VMs, the programs themselves ~0.1 ms); the session child declines any
other program, and is retired after a timeout, a memory error or memory growth. The worker reads each child's
answer size-bounded and within the program's time, and frames it as that program's result; the parent decodes
it as untrusted. Children have no pipe to the parent, cannot fork (RLIMIT_NPROC=0), and find the worker's
signals blocked.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import select
import signal
import struct
import sys
import time
from decimal import Decimal
from fractions import Fraction

if __package__:  # imported as part of fdd_core (tools that import every module); it only runs as a script
    from . import policy_runtime as policy, policy_static as check
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder off the path
    import policy_static as check
    import policy_runtime as policy

    del sys.path[0]

FRAME = struct.Struct(">I")
NOBODY = 65534
OWN_UID_BASE = 0x60000000  # a uid of its own per worker (base + pid), so a program cannot signal another worker
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_DUMPABLE = 4
ANSWER_CHARS = 1000
MESSAGE_CHARS = 300
INT_MAX_STR_DIGITS = 4300  # CPython's default
LARGEST_INT_BITS = 14_000  # ~4,200 digits: below the int->str limit on both sides of the pipe
TRUNCATED = "\n[... output truncated]"


def claim_pipes() -> tuple[int, int]:
    """Keep private copies of the pipes and point fds 0 and 1 at /dev/null, so nothing but results reach the parent."""
    commands, results = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    return commands, results


def isolate() -> dict[str, bool]:
    """Best-effort OS layers: no network namespace, no filesystem (root: chroot + nobody), no new privileges."""
    import ctypes  # imported here so it is gone from this module's names before any program runs

    libc = ctypes.CDLL(None, use_errno=True)
    layers = {"no_new_privs": libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0}
    if os.geteuid() == 0:
        layers["network"] = libc.unshare(CLONE_NEWNET) == 0
        layers["chroot"] = attempt(lambda: (os.chroot("."), os.chdir("/")))
        own = OWN_UID_BASE + os.getpid()
        layers["own_uid"] = attempt(lambda: (os.setgroups([]), os.setgid(own), os.setuid(own)))
        layers["uid_drop"] = layers["own_uid"] or attempt(
            lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY))
        )
        # not dumpable: a program's child of the same uid cannot ptrace this process or read its memory
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    else:
        # An unprivileged user namespace is the only way to get a private network without root.
        layers["network"] = libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
        layers["chroot"] = layers["uid_drop"] = layers["own_uid"] = False
    return layers


def attempt(action) -> bool:
    try:
        action()
        return True
    except OSError:
        return False


def address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def limit_resources(baseline: int, memory_mb: int) -> None:
    """Cap this process and the children it forks: address space, file size, open files, core dumps."""
    resource.setrlimit(resource.RLIMIT_AS, (baseline + memory_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def arm_cpu_backstop(timeout_s: float) -> None:
    """Let the kernel end a runaway program (SIGXCPU) even if the worker is gone; the worker's kill comes first."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    budget = int(usage.ru_utime + usage.ru_stime + 2 * timeout_s) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (budget, resource.RLIM_INFINITY))


def read_exactly(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int):
    header = read_exactly(fd, FRAME.size)
    if header is None:
        return None
    body = read_exactly(fd, FRAME.unpack(header)[0])
    return None if body is None else json.loads(body)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_frame(fd: int, message: dict | bytes) -> None:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    write_all(fd, FRAME.pack(len(body)) + body)


def clean_text(text: str, limit: int) -> str:
    """Cap a string and replace lone surrogates, so it survives UTF-8 on the other side."""
    return text[:limit].encode("utf-8", "replace").decode("utf-8")


def describe(error: BaseException) -> str:
    try:
        detail = str(error)
    except Exception:  # a program's exception may have a hostile __str__
        detail = "<unprintable>"
    text = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return clean_text(" ".join(text.split()), MESSAGE_CHARS)


def json_answer(value):
    """Make an answer JSON-safe: numbers stay numbers (Fraction/Decimal -> float, bool -> int), the rest -> repr."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if abs(int(value)).bit_length() > LARGEST_INT_BITS:
            return f"<int of {abs(int(value)).bit_length()} bits>"
        return int(value)
    if isinstance(value, (float, Fraction, Decimal)):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            return clean_text(repr(value), ANSWER_CHARS)
        return number if number == number and abs(number) != float("inf") else repr(number)
    if isinstance(value, str):
        return clean_text(value, ANSWER_CHARS)
    return clean_text(repr(value), ANSWER_CHARS)


def find_answer(namespace: dict):
    solution = namespace.get("solution")
    if callable(solution):
        return solution()
    return namespace.get("ans")


def execute(source: str, stdout_chars: int, contained_only: bool = False) -> dict | None:
    """Check, run and answer one program; returns the result frame, or None when `contained_only` and the
    program is not contained (it did not run)."""
    try:
        code, contained = check.compile_checked(source)
    except check.Forbidden as error:
        return {"error": "forbidden", "message": str(error)}
    except MemoryError:
        return {"error": "memory", "message": "MemoryError while compiling"}
    except Exception as error:  # SyntaxError, ValueError (null bytes), RecursionError (deep nesting), ...
        return {"error": "syntax", "message": describe(error)}
    if contained_only and not contained:
        return None
    namespace, capture = policy.fresh_namespace(stdout_chars)
    frame: dict = {}
    try:
        exec(code, namespace)
        answer = find_answer(namespace)
        if answer is None:
            frame = {"error": "no_answer", "message": "no `ans` variable and no solution() result"}
        else:
            frame = {"answer": json_answer(answer)}
    except check.Forbidden as error:
        frame = {"error": "forbidden", "message": str(error)}
    except MemoryError:
        frame = {"error": "memory", "message": "MemoryError: memory limit exceeded"}
    except BaseException as error:  # SystemExit, KeyboardInterrupt, GeneratorExit too: the program gets its answer
        frame = {"error": "runtime", "message": describe(error)}
    frame["stdout"] = clean_text(capture.text(), stdout_chars) + (TRUNCATED if capture.truncated else "")
    if contained_only:  # tear it down inside its own time budget, so its finalizers cannot bill the next program
        namespace.clear()
        del namespace
        gc.collect()
    return frame


MEMORY_FRAME = json.dumps({"error": "memory", "message": "MemoryError: memory limit exceeded"}).encode()
_reserve: bytearray | None = None  # freed in a child on MemoryError so the error can still be reported


def run_child(source: str, config: dict, result_fd: int, close_fds: tuple[int, ...]) -> None:
    """In the forked child: drop what the worker holds, run one program, write its frame, exit (never returns)."""
    global _reserve
    try:
        for fd in close_fds:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))  # no processes, no threads
        arm_cpu_backstop(config["timeout_s"])
        try:
            body = json.dumps(execute(source, config["stdout_chars"])).encode()
        except MemoryError:
            _reserve = None
            body = MEMORY_FRAME
        write_all(result_fd, body)
    finally:
        os._exit(0)


def ending_frame(status: int) -> dict:
    """The result of a child that wrote nothing: how it ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number == signal.SIGXCPU:
            return {"error": "timeout", "message": "CPU time limit exceeded"}
        if number == signal.SIGKILL:  # not the worker's: the kernel's OOM killer is the usual sender
            return {"error": "memory", "message": "the program was killed (out of memory?)"}
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        return {"error": "runtime", "message": f"the program crashed ({name}), e.g. C stack overflow"}
    return {"error": "runtime", "message": f"the program ended without a result (exit status {os.WEXITSTATUS(status)})"}


def timeout_frame(timeout_s: float) -> dict:
    return {"error": "timeout", "message": f"TimeoutError: exceeded the {timeout_s:g} s time limit"}


def wait_until(pid: int, deadline: float) -> int | None:
    """The child's wait status once it has ended, or None if it still runs at the deadline."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.001)


def collect(fd: int, pid: int, timeout_s: float, limit: int) -> dict | bytes:
    """Read one child's answer (at most `limit` bytes, within its time), then kill and reap it."""
    deadline = time.monotonic() + timeout_s
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    size, outcome = 0, None
    while True:
        wait_ms = math.ceil((deadline - time.monotonic()) * 1000)
        if wait_ms <= 0 or not poller.poll(wait_ms):
            outcome = timeout_frame(timeout_s)
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            outcome = {"error": "runtime", "message": f"the program's result is larger than {limit} bytes"}
            break
        chunks.append(chunk)
    os.close(fd)
    if outcome is None and not chunks:  # it closed its pipe without a word: learn how it ended, in its time
        status = wait_until(pid, deadline)
        if status is not None:
            return ending_frame(status)
        outcome = timeout_frame(timeout_s)
    os.kill(pid, signal.SIGKILL)  # finished or not, it goes: a program cannot outlive its answer
    os.waitpid(pid, 0)
    return b"".join(chunks) if outcome is None else outcome


SESSION_REPLY = struct.Struct(">IB")  # body length, then what the session does next
RETIRE, KEEP, DECLINE = 0, 1, 2
SESSION_GROWTH_KB = 64 * 1024  # a session child whose peak memory grew this much is retired


def run_session(config: dict, commands_fd: int, replies_fd: int, close_fds: tuple[int, ...]) -> None:
    """In a session child: run contained programs one by one, decline the others (never returns)."""
    global _reserve
    try:
        for fd in close_fds:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for number in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGXCPU, signal.SIGSEGV}:
            try:
                signal.signal(number, signal.SIG_IGN)  # no program's signal may end it between programs
            except (OSError, ValueError):
                pass
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        while (header := read_exactly(commands_fd, FRAME.size)) is not None:
            source = read_exactly(commands_fd, FRAME.unpack(header)[0])
            if source is None:
                break
            arm_cpu_backstop(config["timeout_s"])
            try:
                frame = execute(source.decode("utf-8", "surrogatepass"), config["stdout_chars"], contained_only=True)
                body = b"" if frame is None else json.dumps(frame).encode()
            except MemoryError:
                _reserve = None
                frame, body = {"error": "memory"}, MEMORY_FRAME
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb > SESSION_GROWTH_KB
            status = DECLINE if frame is None else RETIRE if grown or frame.get("error") == "memory" else KEEP
            write_all(replies_fd, SESSION_REPLY.pack(len(body), status) + body)
            if status == RETIRE:
                break
    finally:
        os._exit(0)


def read_within(fd: int, size: int, deadline: float) -> tuple[bytes, bool]:
    """Up to `size` bytes from fd by the deadline: (data, timed out); fewer bytes without a timeout mean EOF."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks, remaining = [], size
    while remaining:
        wait_ms = math.ceil((deadline - time.monotonic()) * 1000)
        if wait_ms <= 0 or not poller.poll(wait_ms):
            return b"".join(chunks), True
        chunk = os.read(fd, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks), False


class Session:
    """The worker's handle on its session child."""

    def __init__(self, config: dict, keep_from_child: tuple[int, ...]) -> None:
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (commands_r, commands_w, replies_r, replies_w):
                os.close(fd)
            raise
        if pid == 0:
            run_session(config, commands_r, replies_w, (commands_w, replies_r, *keep_from_child))
        os.close(commands_r)
        os.close(replies_w)
        self.pid, self.commands, self.replies = pid, commands_w, replies_r
        self.config = config
        self.status: int | None = None

    def run(self, source: str) -> tuple[dict | bytes | None, bool]:
        """(the program's answer, or None if the session declined it or died idle; whether the session goes on)."""
        data = source.encode("utf-8", "surrogatepass")
        timeout_s, limit = self.config["timeout_s"], self.config["max_result_bytes"]
        deadline = time.monotonic() + timeout_s
        try:
            write_all(self.commands, FRAME.pack(len(data)) + data)
        except OSError:  # it ended before this program: not this program's doing
            return None, False
        header, timed_out = read_within(self.replies, SESSION_REPLY.size, deadline)
        if timed_out:
            return timeout_frame(timeout_s), False
        if len(header) < SESSION_REPLY.size:  # it died running this program
            self.close()
            return ending_frame(self.status), False
        size, status = SESSION_REPLY.unpack(header)
        if size > limit:
            return {"error": "runtime", "message": f"the program's result is larger than {limit} bytes"}, False
        body, timed_out = read_within(self.replies, size, deadline)
        if timed_out or len(body) < size:
            if timed_out:
                return timeout_frame(timeout_s), False
            self.close()
            return ending_frame(self.status), False
        if status == DECLINE:  # it goes before that program runs: no other program's child lives beside it
            return None, False
        return body, status == KEEP

    def close(self) -> None:
        """Kill and reap it (once); its wait status stays in self.status."""
        if self.status is not None:
            return
        for fd in (self.commands, self.replies):
            os.close(fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.status = os.waitpid(self.pid, 0)[1]


def run_isolated(source: str, config: dict, keep_from_child: tuple[int, ...]) -> dict | bytes:
    """Fork a child for one program and return its raw answer bytes, or the worker's own frame about it."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        os.close(read_end)
        os.close(write_end)
        return {"error": "runtime", "message": f"cannot start the program ({error.strerror})", "retire": True}
    if pid == 0:
        run_child(source, config, write_end, (read_end, *keep_from_child))
    os.close(write_end)
    return collect(read_end, pid, config["timeout_s"], config["max_result_bytes"])


def main() -> None:
    global _reserve
    config = json.loads(sys.argv[1])
    commands, results = claim_pipes()
    policy.prepare()
    baseline = address_space_bytes()  # before isolate(): /proc is gone after a chroot
    layers = isolate()
    limit_resources(baseline, config["memory_mb"])
    sys.setrecursionlimit(config["recursion_limit"])
    sys.set_int_max_str_digits(INT_MAX_STR_DIGITS)  # str(10**10**6) must fail fast, whatever the parent's flags
    # A program's child shares this uid: whatever it sends (SIGINT, SIGTERM, SIGUSR1...) waits blocked here.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    _reserve = bytearray(2**20)
    gc.freeze()  # startup objects leave the collector's view: children's collections stay cheap
    write_frame(results, {"ready": True, "pid": os.getpid(), "isolation": layers})
    serve(config, commands, results)


def serve(config: dict, commands: int, results: int) -> None:
    """Answer each program of each batch, in order, until the parent closes the pipe."""
    session: Session | None = None
    try:
        while (batch := read_frame(commands)) is not None:
            for source in batch["programs"]:
                answer = None
                if session is None:
                    try:
                        session = Session(config, (commands, results))
                    except OSError:
                        pass
                if session is not None:
                    answer, goes_on = session.run(source)
                    if not goes_on:
                        session.close()
                        session = None
                if answer is None:  # not contained (or no session): a child of its own
                    answer = run_isolated(source, config, (commands, results))
                write_frame(results, answer)
                if isinstance(answer, dict) and answer.get("retire"):
                    return
    finally:
        if session is not None:  # nothing outlives a worker that ends
            session.close()


if __name__ == "__main__":
    main()
