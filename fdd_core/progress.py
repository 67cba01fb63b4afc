"""How far a long stage is: the stage reports (done of total, and a few facts such as the loss or the spend);
whoever listens shows it. The command line draws it in the terminal, the Prefect tasks as progress artifacts.

The library knows nothing of its listeners (they register with `listening`), and a listener that fails never
stops the stage: a broken progress bar must not cost a training run or a paid reply.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from fdd_core.results import format_usd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """One report of a stage: `done` of `total` `unit` (steps, requests, problems) and the stage's facts."""

    stage: str
    unit: str
    done: int
    total: int
    started: float  # time.monotonic() when the stage began
    at: float  # time.monotonic() of this report
    facts: Mapping[str, object] = field(default_factory=dict)
    finished: bool = False
    failed: bool = False

    @property
    def fraction(self) -> float:
        """0..1; a finished stage is 1 whatever it counted."""
        if self.finished and not self.failed:
            return 1.0
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


Listener = Callable[[Update], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[Listener]:
    """Send every stage's updates to `listener` while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _lock:
            _listeners.remove(listener)


def _emit(update: Update) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(update)
        except Exception:  # noqa: BLE001 - shown once per failure, never raised into the stage
            log.warning("a progress listener failed on %s", update.stage, exc_info=True)


class Tracker:
    """tracker(done, total=None, **facts): a stage's report; it doubles as a progress(done, total) callback."""

    def __init__(self, stage: str, unit: str, total: int, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        now = clock()
        self.last = Update(stage=stage, unit=unit, done=0, total=total, started=now, at=now)

    def __call__(self, done: int, total: int | None = None, **facts: object) -> None:
        self.last = replace(self.last, done=done, total=self.last.total if total is None else total,
                            at=self._clock(), facts={**self.last.facts, **facts})
        _emit(self.last)

    def _end(self, failed: bool) -> None:
        self.last = replace(self.last, at=self._clock(), finished=True, failed=failed)
        _emit(self.last)


@contextlib.contextmanager
def track(stage: str, unit: str, total: int = 0, **facts: object) -> Iterator[Tracker]:
    """A tracker for the block: reported started on entry, finished (or failed, on an exception) on exit."""
    tracker = Tracker(stage, unit, total)
    tracker(0, total, **facts)
    try:
        yield tracker
    except BaseException:
        tracker._end(failed=True)
        raise
    tracker._end(failed=False)


# ------------------------------------------------------------------------------------------------- what users read
def duration(seconds: float) -> str:
    """'42s', '3m05s', '1h02m'."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


# How a fact reads; a fact of another name reads 'name value'. A cost of None is unknown (the price is not known).
FACTS = {"loss": "loss {:.4g}", "bought": "{:,} bought", "stored": "{:,} from the store"}


def _fact(name: str, value: object) -> str | None:
    if name == "cost_usd":
        return f"spent {format_usd(value)}"  # type: ignore[arg-type]
    if name == "run_cost_usd":
        return f"run total {format_usd(value)}"  # type: ignore[arg-type]
    if value is None:
        return None
    return FACTS[name].format(value) if name in FACTS else f"{name} {value}"


def facts_text(update: Update) -> str:
    """The stage's facts in words: 'loss 1.234', or '640 bought, 12 from the store, spent $0.0210, run total
    $0.0500'."""
    return ", ".join(text for name, value in update.facts.items() if (text := _fact(name, value)))


def describe(update: Update, now: float | None = None) -> str:
    """One line: 'train: 120/800 steps (15%), loss 1.234, 12s, ~1m08s left'; finished: '..., done in 1m20s'."""
    now = update.at if now is None else now
    if update.total > 0:
        head = f"{update.stage}: {update.done:,}/{update.total:,} {update.unit} ({update.done / update.total:.0%})"
    else:
        head = f"{update.stage}: {update.done:,} {update.unit}"
    parts = [head] + ([facts] if (facts := facts_text(update)) else [])
    elapsed = now - update.started
    if update.failed:
        parts.append(f"stopped after {duration(elapsed)}")
    elif update.finished:
        parts.append(f"done in {duration(elapsed)}")
    else:
        parts.append(duration(elapsed))
        if 0 < update.done < update.total:
            parts.append(f"~{duration(elapsed * (update.total - update.done) / update.done)} left")
    return ", ".join(parts)


class PlainLines:
    """Progress as plain lines for a log (CI, a file, a pipe): a line when a stage starts and when it ends, and
    the latest state of each running stage every `every_s` seconds, whether it moved or not. Pure: the caller
    feeds it updates (on_update) and asks it on a timer (due)."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self._running: dict[str, Update] = {}
        self._last_line: dict[str, float] = {}

    def on_update(self, update: Update) -> list[str]:
        if update.finished:
            self._running.pop(update.stage, None)
            self._last_line.pop(update.stage, None)
            return [describe(update)]
        new = update.stage not in self._running
        self._running[update.stage] = update
        if new:
            self._last_line[update.stage] = update.at
            return [describe(update)]
        return []

    def due(self, now: float) -> list[str]:
        lines = []
        for stage, update in self._running.items():
            if now - self._last_line[stage] >= self.every_s:
                self._last_line[stage] = now
                lines.append(describe(update, now))
        return lines
