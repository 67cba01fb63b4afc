"""The unit tier is pure, and this file enforces it: during each unit test, starting a process or reading
the shared benchmark data fails loudly. A test that needs either belongs in tests/integration.

- Processes: subprocess.Popen (so run/check_output/asyncio subprocesses too), os.fork/forkpty/posix_spawn/
  system/exec*, and multiprocessing's Process.start (so Pool, ProcessPoolExecutor and the sandbox workers)
  raise UnitTierViolation. An audit hook backs this up for callers that bound those functions before the
  patch (`from os import fork`); it is installed once and is idle outside unit tests.
- Shared data: FDD_DATA_DIR is removed from the environment, the suite's `data_dir` fixture fails, and
  opening a file under the shared data folder raises.

Threads are allowed: they are not processes, and the teacher client and response store use them.
"""

import multiprocessing.process
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NO_PROCESS = "unit tests start no process: move this test to tests/integration"
NO_DATA = "unit tests read no shared data (FDD_DATA_DIR): move this test to tests/integration"

# the folders the suite's data_dir fixture may point at, resolved, with a trailing separator
_SHARED = REPO.parent / "shared" / "data"
_DATA_DIRS = {str(p.resolve()) + os.sep for p in (_SHARED, Path(os.environ.get("FDD_DATA_DIR") or _SHARED))}
_PROCESS_EVENTS = {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system", "os.exec"}


class UnitTierViolation(RuntimeError):
    """A unit test did what only an integration test may do."""


_guarding = False
_violations: list[str] = []  # also recorded: code that swallows the error still fails its test


def _violate(message: str):
    _violations.append(message)
    raise UnitTierViolation(message)


def _audit(event: str, args: tuple) -> None:
    if not _guarding:
        return
    if event in _PROCESS_EVENTS:
        _violate(f"{NO_PROCESS} ({event})")
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        try:
            path = os.path.realpath(os.fsdecode(args[0]))
        except (TypeError, ValueError):
            return
        if any((path + os.sep).startswith(d) for d in _DATA_DIRS):
            _violate(f"{NO_DATA}: {path}")


sys.addaudithook(_audit)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        _violate(f"{NO_PROCESS} ({what})")
    return refuse


def _warm_library_caches() -> None:
    """Let libraries start the processes they start once per machine, before the guard is on.

    matplotlib builds its font cache on first import by running `fc-list`; on a fresh machine (CI, a new
    container) that would fail whichever unit test first draws a plot (the run report), though the test
    itself starts nothing.
    """
    try:
        import matplotlib.font_manager  # noqa: F401  (builds ~/.cache/matplotlib/fontlist-*.json if missing)
    except ImportError:
        pass


@pytest.fixture(scope="package", autouse=True)
def _unit_tier_is_pure():
    """No process, no shared data, from the first unit test to the last (module fixtures included)."""
    global _guarding
    _warm_library_caches()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess.Popen, "__init__", _refuse("subprocess.Popen"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                mp.setattr(os, name, _refuse(f"os.{name}"))
        mp.setattr(multiprocessing.process.BaseProcess, "start", _refuse("multiprocessing start"))
        mp.delenv("FDD_DATA_DIR", raising=False)
        _guarding = True
        try:
            yield
        finally:
            _guarding = False


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A unit test whose code caught the guard's error (`except Exception`) still fails, naming what it tried."""
    report = (yield).get_result()
    found, _violations[:] = list(dict.fromkeys(_violations)), []
    if found and report.passed:
        report.outcome, report.longrepr = "failed", "; ".join(found)


@pytest.fixture(scope="session")
def data_dir():
    """Overrides the suite's fixture: unit tests get no benchmark folder."""
    pytest.fail(NO_DATA)
