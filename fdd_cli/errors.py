"""Every user mistake ends as one `error:` line on stderr and exit status 2."""

from __future__ import annotations

import functools
import sys

import typer


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(command):
    """Turn the errors a user can cause (config, input files) into one line and exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from fdd_core.benchmarks import BenchmarkError
        from fdd_core.config_files import ConfigError
        from fdd_core.store import DataFileError

        try:
            return command(*args, **kwargs)
        except (ConfigError, DataFileError, BenchmarkError, *_teacher_errors()) as e:
            fail(str(e))

    return wrapper


class _NotRaised(Exception):
    """Stands for an error class whose module was never imported (so nothing can have raised it)."""


def _teacher_errors() -> tuple[type[Exception], ...]:
    """TeacherConfigError (a teacher setting that makes the run impossible: a missing API key, an unpriced
    model with budget.max_usd, a teacher answering 401), TeacherFailures (a stage whose requests mostly failed),
    StoreError (a response store that cannot be written or is damaged) and the other one-line errors of the run
    (a run already running, a damaged model), looked up only once an error is being matched: importing the teacher
    client imports litellm (seconds), which commands that never reach the teacher should not pay for."""
    client = sys.modules.get("fdd_core.teacher.client")
    store = sys.modules.get("fdd_core.teacher.response_store")
    lock = sys.modules.get("fdd_core.run_lock")
    models = sys.modules.get("fdd_core.student.checkpoint")
    return (getattr(client, "TeacherConfigError", _NotRaised), getattr(client, "TeacherFailures", _NotRaised),
            getattr(store, "StoreError", _NotRaised), getattr(lock, "RunLocked", _NotRaised),
            getattr(models, "ModelDamaged", _NotRaised))
