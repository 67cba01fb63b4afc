"""Sandbox worker process: locks itself down, then runs untrusted programs one by one for fdd_core.sandbox.

Run as `python -I -S -B worker.py CONFIG_JSON`; never import this module from the parent process.
Protocol: 4-byte big-endian length + JSON, in both directions. JSON only, so an escaped program cannot
make the parent unpickle code. What a program may touch: policy_static.py (static), policy_runtime.py (run time).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import struct
import sys
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
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_NO_NEW_PRIVS = 38
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
        layers["uid_drop"] = attempt(lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY)))
    else:
        # An unprivileged user namespace is the only way to get a private network without root.
        layers["network"] = libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
        layers["chroot"] = layers["uid_drop"] = False
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
    """Cap this process: address space, file size, open files, core dumps, and (for non-root) child processes."""
    resource.setrlimit(resource.RLIMIT_AS, (baseline + memory_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def arm_cpu_backstop(timeout_s: float) -> None:
    """Let the kernel end a runaway program (SIGXCPU) even if the parent is gone; the parent's kill comes first."""
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


def write_frame(fd: int, message: dict) -> None:
    body = json.dumps(message).encode()
    view = memoryview(FRAME.pack(len(body)) + body)
    while view:
        view = view[os.write(fd, view) :]


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


def execute(source: str, stdout_chars: int) -> dict:
    """Check, run and answer one program; returns the result frame (retire=True asks for a fresh worker)."""
    try:
        code, stores_attributes = check.compile_checked(source)
    except check.Forbidden as error:
        return {"error": "forbidden", "message": str(error)}
    except MemoryError:
        return {"error": "memory", "message": "MemoryError while compiling", "retire": True}
    except Exception as error:  # SyntaxError, ValueError (null bytes), RecursionError (deep nesting), ...
        return {"error": "syntax", "message": describe(error)}
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
        frame = {"error": "memory", "message": "MemoryError: memory limit exceeded", "retire": True}
    except BaseException as error:  # SystemExit, KeyboardInterrupt, GeneratorExit too: the worker must survive
        frame = {"error": "runtime", "message": describe(error)}
    frame["stdout"] = clean_text(capture.text(), stdout_chars) + (TRUNCATED if capture.truncated else "")
    # Tear the program down inside its own time budget, so its finalizers cannot bill the next program.
    namespace.clear()
    del namespace
    gc.collect()
    if stores_attributes and policy.library_tampered():
        frame["retire"] = True
    return frame


def main() -> None:
    config = json.loads(sys.argv[1])
    commands, results = claim_pipes()
    policy.prepare()
    baseline = address_space_bytes()  # before isolate(): /proc is gone after a chroot
    layers = isolate()
    limit_resources(baseline, config["memory_mb"])
    sys.setrecursionlimit(config["recursion_limit"])
    sys.set_int_max_str_digits(INT_MAX_STR_DIGITS)  # str(10**10**6) must fail fast, whatever the parent's flags
    reserve = bytearray(2**20)  # freed on MemoryError so the error can still be reported
    gc.freeze()  # startup objects leave the collector's view: per-program collections stay cheap
    write_frame(results, {"ready": True, "pid": os.getpid(), "isolation": layers})
    while (batch := read_frame(commands)) is not None:
        for source in batch["programs"]:
            arm_cpu_backstop(config["timeout_s"])
            policy.reset_library_state()
            try:
                frame = execute(source, config["stdout_chars"])
            except MemoryError:
                frame = {"error": "memory", "message": "MemoryError: memory limit exceeded", "retire": True}
            if frame.get("retire"):
                reserve = None
            write_frame(results, frame)
            if frame.get("retire"):
                return
    del reserve


if __name__ == "__main__":
    main()
