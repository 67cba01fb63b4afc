"""The `gpu` tag, and when a run leaves it off its tasks.

On a shared server a tag concurrency limit (`prefect concurrency-limit create gpu 1`) runs at most that many `gpu`
tasks at once, across every run the server orchestrates; for that, Prefect asks the server for a slot before every
tagged task, limit or not. On `fdd run`'s own temporary server (fdd_cli.prefect_server) no one else can create a
limit, and the request alone cost about 2 s before a task on SQLite: the server answers 503 ("database is locked",
its writer busy with the previous task's events) and Prefect's client retries after 2 s. There the tag is left off.
"""

from __future__ import annotations

import os

GPU = "gpu"
OWN_SERVER_ENV = "FDD_OWN_PREFECT_API_URL"  # set by `fdd run` to the API URL of the temporary server it started


def on_own_server() -> bool:
    """True when this process talks to the temporary server its own `fdd run` started."""
    from prefect.settings import get_current_settings

    own = os.environ.get(OWN_SERVER_ENV)
    return bool(own) and get_current_settings().api.url == own


def local(task):
    """The task as given, or on the run's own server a copy without tags (no slot to ask for)."""
    if not task.tags or not on_own_server():
        return task
    untagged = task.with_options()
    untagged.tags = set()  # with_options(tags=set()) keeps the task's own tags
    return untagged
