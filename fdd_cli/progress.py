"""Progress of long stages in the terminal while `fdd run` goes: live bars (rich) on a terminal, plain lines at a
steady pace when output goes to a file or a pipe (CI logs), where bars would be noise."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from fdd_core.progress import PlainLines, Update, describe, facts_text, listening

PLAIN_EVERY_S = 5.0  # a log line per running stage this often: well inside the 15 s a reader waits at most


@contextlib.contextmanager
def terminal_progress(stream: TextIO | None = None, every_s: float = PLAIN_EVERY_S) -> Iterator[None]:
    """Show every stage's progress on `stream` (stdout) while the block runs."""
    stream = stream or sys.stdout
    show = _bars if stream.isatty() else _plain
    with show(stream, every_s):
        yield


@contextlib.contextmanager
def _plain(stream: TextIO, every_s: float) -> Iterator[None]:
    lines, lock, stop = PlainLines(every_s), threading.Lock(), threading.Event()

    def write(texts: list[str]) -> None:  # not print(): inside a task Prefect would take it for a log line
        for text in texts:
            stream.write(text + "\n")
        stream.flush()

    def on_update(update: Update) -> None:
        with lock:
            write(lines.on_update(update))

    def tick() -> None:  # a line even when a step takes long: the reader sees the run is alive
        while not stop.wait(min(0.5, every_s / 4)):
            with lock:
                write(lines.due(time.monotonic()))

    ticker = threading.Thread(target=tick, name="fdd-progress-lines", daemon=True)
    ticker.start()
    try:
        with listening(on_update):
            yield
    finally:
        stop.set()
        ticker.join(timeout=5)


@contextlib.contextmanager
def _bars(stream: TextIO, every_s: float) -> Iterator[None]:
    """A bar per running stage, drawn only while a stage runs (Prefect's own log lines print between stages);
    a finished stage leaves its one-line summary above."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.progress import TimeRemainingColumn

    console = Console(file=stream)
    bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}", markup=False), TimeElapsedColumn(), TimeRemainingColumn(),
                    TextColumn("{task.fields[facts]}", markup=False), console=console, transient=True)
    running: dict[str, int] = {}
    lock = threading.Lock()

    def on_update(update: Update) -> None:
        with lock:
            if update.finished:
                task = running.pop(update.stage, None)
                if task is not None:
                    bars.remove_task(task)
                if not running:
                    bars.stop()
                console.print(describe(update), highlight=False, markup=False)
                return
            if update.stage not in running:
                if not running:
                    bars.start()
                running[update.stage] = bars.add_task(update.stage, total=update.total or None, unit=update.unit,
                                                      facts="")
            bars.update(running[update.stage], completed=update.done, total=update.total or None,
                        facts=facts_text(update))

    try:
        with listening(on_update):
            yield
    finally:
        bars.stop()
