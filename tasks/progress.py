"""Progress of long stages in the Prefect UI: a progress artifact per stage a task tracks (fdd_core.progress),
its bar and its one-line state (steps and loss, teacher requests and spend, problems) updated while it runs."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from fdd_core.progress import Update, describe, listening


def artifact_key(stage: str) -> str:
    """Prefect keys hold lowercase letters, digits and dashes: 'train' -> 'progress-train'."""
    return "progress-" + re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")


@contextlib.contextmanager
def progress_artifacts(every_s: float = 2.0) -> Iterator[None]:
    """While the block runs (inside a task): each stage it tracks gets a progress artifact, updated at most every
    `every_s` seconds and when it ends. A stage that failed keeps the bar where it stopped, its line says so.
    Only this thread's stages: an artifact belongs to the task run of the thread that creates it."""
    owner = threading.get_ident()
    ids: dict[str, UUID] = {}
    shown: dict[str, float] = {}

    def show(update: Update) -> None:
        if threading.get_ident() != owner:
            return
        if update.stage not in ids:
            ids[update.stage] = create_progress_artifact(100.0 * update.fraction, key=artifact_key(update.stage),
                                                         description=describe(update))
        elif update.finished or update.at - shown[update.stage] >= every_s:
            update_progress_artifact(ids[update.stage], 100.0 * update.fraction, description=describe(update))
        else:
            return
        shown[update.stage] = update.at

    with listening(show):
        yield
