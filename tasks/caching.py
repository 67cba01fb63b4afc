"""When a stage task runs again: cache keys, manifests, and which failures are retried.

Key = hash(stage name, stage version, the config fields the stage reads, content hashes of its input
files and folders, its other arguments). Prefect's default TASK_SOURCE policy would only see the
10-line wrapper, not the library code or the data, so it is not used. A task whose output folder
no longer matches its manifest (missing, truncated, damaged) is run again with refresh_cache.
Settings that change how fast a stage runs but not what it writes (NOT_IN_OUTPUTS) stay out of every key, so
raising the teacher's concurrency of a finished run does not redo it. A failure is retried only when another
try can end differently (retry_transient): a bad setting or bad data fails the task at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from fdd_core.benchmarks import BenchmarkError
from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError
from fdd_core.store import DataFileError, tree_sha256, verify_manifest
from fdd_core.teacher.client import TeacherConfigError, TeacherFailures
from fdd_core.teacher.response_store import StoreError

# Settings that decide how fast a stage runs, or where it keeps things, but not what it writes. They are left out
# of every stage's key (a section such as "teacher" is hashed without them), so changing them reuses finished stages.
# Timeouts and retry counts stay in: they change which teacher requests or programs fail. A stage version that
# drops or adds one of these is bumped in its stage_cache_key call.
NOT_IN_OUTPUTS = (
    "teacher.concurrency",  # requests in flight at once: the same requests, the same replies
    "teacher.cache_path",  # where replies are kept, not which (a reply's store key has model, server, prompt, params)
    "teacher.api_key_env",  # which variable holds the key: the store keys replies without it, as a provider does
    "teacher.max_failed_share",  # whether a stage may end at all, not what a finished one wrote
    "sandbox.workers",  # warm worker processes: each program runs alone in one, under the same limits
    # problems per generate() call (hf): greedy decoding writes the same programs up to float rounding, and sampling
    # (inference.temperature > 0) other draws from the same distribution
    "inference.batch_size",
    "inference.vllm_python",  # where the vLLM environment is; inference.backend (in the key) picks vLLM at all
    # GPUs per vLLM engine and engines: the same prompts and engine seed, split over more GPUs (greedy: the same
    # programs up to float rounding; sampling: other draws from the same distribution)
    "inference.tensor_parallel_size",
    "inference.data_parallel_size",
    # data-parallel training processes: the same global batch of the same examples at every step (the loss curve
    # of 2 processes equals 1's to float rounding, tests/integration/test_training_processes.py), so moving a run
    # to more GPUs does not redo its finished rounds. Only an epoch's last, partial batch differs: several
    # processes fill it up to batch_size from the epoch's first examples (accelerate's even_batches).
    "training.processes",
)


def _check_dotted(dotted: str, model: type[BaseModel] = FDDConfig) -> None:
    """Fail at import, not at the first cached run, on a config path that does not exist (a typo)."""
    for part in dotted.split("."):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            raise ValueError(f"stage cache key: {dotted!r} is not a config field ({part!r} unknown)")
        model = field.annotation


def config_fields(cfg: FDDConfig, fields: Sequence[str], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The named config sections or dotted keys, as JSON-able values, without the dotted keys in `exclude`."""
    data = cfg.model_dump(mode="json")
    for dotted in exclude:
        *parents, last = dotted.split(".")
        section: Any = data
        for part in parents:
            section = section[part]
        section.pop(last, None)
    picked = {}
    for dotted in fields:
        value: Any = data
        for part in dotted.split("."):
            value = value[part]
        picked[dotted] = value
    return picked


def stage_cache_key(stage: str, version: int, fields: Sequence[str], inputs: Sequence[str],
                    ignore: Sequence[str] = (), exclude: Sequence[str] = NOT_IN_OUTPUTS) -> Callable:
    """A Prefect cache_key_fn for a task whose parameters are `cfg`, input paths named in `inputs`, scalars, and
    parameters named in `ignore` that do not decide the stage's output. `fields` are the config sections or dotted
    keys the stage reads; the dotted keys in `exclude` (by default NOT_IN_OUTPUTS) are left out of them."""
    for dotted in (*fields, *exclude):
        _check_dotted(dotted)
    clash = [f for f in fields for x in exclude if f == x or f.startswith(f"{x}.")]
    if clash:
        raise ValueError(f"stage cache key of {stage}: {clash} both read and excluded")

    def key(_context, parameters: dict[str, Any]) -> str:
        parts: dict[str, Any] = {"stage": stage, "version": version,
                                 "config": config_fields(parameters["cfg"], fields, exclude)}
        for name, value in sorted(parameters.items()):
            if name == "cfg" or name in ignore:
                continue
            if name in inputs:
                if isinstance(value, dict):
                    parts[name] = {k: _content(p) for k, p in value.items()}
                elif isinstance(value, (list, tuple)):
                    parts[name] = [_content(p) for p in value]
                else:
                    parts[name] = _content(value)
            else:
                parts[name] = value
        blob = json.dumps(parts, sort_keys=True, default=str)
        return f"{stage}-v{version}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"

    return key


# Failures that end the same way however often they are tried: a setting that cannot work, data that cannot be
# read, a benchmark that is not there, or a bug (all of fdd_core's own errors of this kind are ValueErrors; they are
# named so that a change of their base class cannot make them retried). Anything else (a timeout, a lost
# connection or sandbox worker, a full disk, CUDA out of memory) may pass on another try.
# A response store that cannot be written, a teacher refusing requests (TeacherOutage is a TeacherConfigError) or
# failing most of them stop the run at once too: a retry would buy replies again only to lose them, or hammer a
# teacher that is down; the user reruns the same command once it is fixed.
PERMANENT_ERRORS = (TeacherConfigError, ConfigError, BenchmarkError, DataFileError, ValueError, TypeError,
                    AttributeError, NameError, ImportError, NotImplementedError, StoreError, TeacherFailures)


def is_permanent(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, is one of PERMANENT_ERRORS."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, PERMANENT_ERRORS):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def retry_transient(_task, _task_run, state) -> bool:
    """A Prefect retry_condition_fn: retry (within the task's `retries`) unless the failure is permanent.

    Prefect hands the failed state with the exception as its data; a state without one (a task that returned a
    Failed state itself) keeps Prefect's default, a retry."""
    error = getattr(state, "data", None)
    return not (isinstance(error, BaseException) and is_permanent(error))


def _content(path: str | None) -> list | None:
    """A path and the hash of what it holds now (None for a missing optional input)."""
    return [str(path), tree_sha256(Path(path)) if Path(path).exists() else None] if path else None


def needs_refresh(out_dir: Path) -> bool:
    """True when the stage's outputs are not all there and intact: a cached result must not be trusted."""
    return verify_manifest(out_dir) is None
