"""SIGTERM and Ctrl-C stop a run even when they land inside a garbage collection.

Python drops an exception that a signal handler raises while a weakref callback or __del__ runs ("Exception
ignored in ..."); torch and accelerate collect garbage often, so `fdd run` sent SIGTERM during training went on to
the end and exited 0 (found by test_terminated_run_leaves_no_server_behind under load). Each script below ends up
in exactly that place: a __del__ that receives the signal."""

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.robustness

SCRIPT = """
import signal, sys, time
from fdd_core.interrupts import redeliver_swallowed_interrupts
{handler}
if sys.argv[1] == "hooked":
    redeliver_swallowed_interrupts()

class Collected:
    def __del__(self):
        signal.raise_signal(signal.{signal})  # the handler runs here, inside __del__

Collected()
for _ in range(200):  # the run going on: two seconds of ordinary work
    time.sleep(0.01)
print("went on to the end")
"""

CASES = {
    # `fdd run` outside a flow: its own handler
    "fdd's SIGTERM handler": ("from fdd_core.interrupts import exit_on_signal\n"
                              "signal.signal(signal.SIGTERM, exit_on_signal)", "SIGTERM", 128 + signal.SIGTERM),
    # inside a flow Prefect's handler is installed; it raises TerminationSignal
    "Prefect's SIGTERM handler": ("from prefect.utilities.engine import _prefect_sigterm_handler\n"
                                  "signal.signal(signal.SIGTERM, _prefect_sigterm_handler)", "SIGTERM", 1),
    "Ctrl-C": ("", "SIGINT", -signal.SIGINT),
}


def run(case: str, mode: str) -> subprocess.CompletedProcess:
    handler, name, _ = CASES[case]
    script = textwrap.dedent(SCRIPT).format(handler=handler, signal=name)
    return subprocess.run([sys.executable, "-c", script, mode], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", CASES)
def test_an_interrupt_landing_in_a_destructor_still_stops_the_process(case):
    unhooked = run(case, "plain")
    assert "went on to the end" in unhooked.stdout, "the script no longer reproduces Python dropping the signal"

    hooked = run(case, "hooked")
    assert "went on to the end" not in hooked.stdout, hooked.stderr[-2000:]
    assert hooked.returncode == CASES[case][2], hooked.stderr[-2000:]


def test_other_ignored_exceptions_are_still_reported():
    script = ("from fdd_core.interrupts import redeliver_swallowed_interrupts\n"
              "redeliver_swallowed_interrupts(); redeliver_swallowed_interrupts()\n"
              "class Broken:\n    def __del__(self): raise ValueError('broken destructor')\n"
              "Broken()\nprint('went on')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "went on" in done.stdout
    assert done.stderr.count("ValueError: broken destructor") == 1, done.stderr
