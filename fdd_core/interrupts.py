"""SIGTERM and Ctrl-C that Python would drop, sent again.

An exception raised by a signal handler while a weakref callback, a __del__ or a gc callback runs is printed as
"Exception ignored in ..." and discarded. Prefect turns SIGTERM into TerminationSignal, `fdd run` into SystemExit,
Python turns Ctrl-C into KeyboardInterrupt; torch and accelerate collect garbage often, so a signal landing there
was lost and the run went on to its end. The hook sends such a signal again from a short-lived thread, a moment
later, and the handler then runs on an ordinary line of the main thread.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

_RESEND_AFTER_S = 0.05  # long enough for the main thread to leave the hook (a handler raising in it is lost too)


def exit_on_signal(signum: int, _frame) -> None:
    """A signal handler that ends the process as SystemExit(128 + signum), so exit handlers and `finally` blocks run."""
    raise SystemExit(128 + signum)


def interrupt_signal(error: BaseException | None) -> int | None:
    """The signal an exception stands for: Ctrl-C, Prefect's TerminationSignal, exit_on_signal's SIGTERM."""
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(error, SystemExit) and error.code == 128 + signal.SIGTERM:
        return signal.SIGTERM
    number = getattr(error, "signal", None)  # prefect.exceptions.TerminationSignal; fdd_core never imports prefect
    if isinstance(error, BaseException) and not isinstance(error, Exception) and isinstance(number, int):
        return number
    return None


def redeliver_swallowed_interrupts() -> None:
    """Install (once per process) the unraisable hook that re-sends a dropped interrupt; others go on as before."""
    previous = sys.unraisablehook
    if getattr(previous, "fdd_redelivers", False):
        return

    def hook(unraisable) -> None:
        number = interrupt_signal(unraisable.exc_value)
        if number is None:
            previous(unraisable)
            return
        timer = threading.Timer(_RESEND_AFTER_S, os.kill, (os.getpid(), number))
        timer.daemon = True
        timer.start()

    hook.fdd_redelivers = True
    sys.unraisablehook = hook
