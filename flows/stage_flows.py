"""The GPU stages as flow runs of their own: `fdd-train`, `fdd-evaluate`, `fdd-feedback`.

With run.gpu_work_pool set, the parent flow starts each GPU stage as a run of the deployment FLOW/POOL
(deployments/prefect.yaml: fdd-train/gpu-pool, ...) with prefect.deployments.run_deployment and waits for it, so
the stage runs in a process of its own on a worker of that pool and its GPU memory is returned when it ends. A stage
flow calls the very task the parent would call in-process (tasks/stages.py), with the same cache key, so caching
and resume behave the same either way; both sides must reach the run directory and Prefect's result storage at the
same paths (deployments/README.md, "Two pools").

A stage run that crashed (its process or worker died: Prefect marks it Crashed, with the zombie automation of
deployments/automations/crash-zombies.yaml when nothing else could) is submitted again, at most CRASH_RESUBMITS
times; its task never completed, so it left no cache record and runs again from the start. A run that Failed is
not: its task already had its own retries (tasks.caching.retry_transient), and the parent fails loudly.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from fdd_core.config import FDDConfig
from fdd_core.config_files import ConfigError
from fdd_core.results import EvalResult, FeedbackResult, TrainResult
from tasks.caching import needs_refresh
from tasks.stages import evaluate_task, feedback_task, train_task
from tasks.tags import local

STAGE_FLOWS = {"train": "fdd-train", "evaluate": "fdd-evaluate", "feedback": "fdd-feedback"}  # task name -> flow
CRASH_RESUBMITS = 2  # a stage run that crashed is submitted again at most this many times
POLL_S = 2.0  # how often the parent asks for the stage run's state


class StageRunError(RuntimeError):
    """A stage run on the GPU pool ended other than Completed (or crashed more than CRASH_RESUBMITS times)."""


def run_cached(task, out_dir: str | Path, *args, **kwargs):
    """Call a cached task, refreshing its cache when its outputs are missing or damaged."""
    return local(task.with_options(refresh_cache=needs_refresh(Path(out_dir))))(*args, **kwargs)  # tasks.tags


def run_stage(task, out_dir: str | Path, *args, **kwargs):
    """run_cached, or, for a GPU stage of a run whose cfg (the first argument) names run.gpu_work_pool, the same
    call as a flow run of that stage's deployment on that pool."""
    cfg = args[0] if args else kwargs.get("cfg")
    pool = cfg.run.gpu_work_pool if isinstance(cfg, FDDConfig) else None
    if pool is None or task.name not in STAGE_FLOWS:
        return run_cached(task, out_dir, *args, **kwargs)
    parameters = dict(inspect.signature(task.fn).bind(*args, **kwargs).arguments)
    return _on_pool(task.name, pool, parameters, Path(out_dir))


def _run_name(stage: str, out_dir: Path) -> str:
    """train-r0, evaluate-r1, evaluate-baseline: the stage and its round, as the UI lists them."""
    where = out_dir.parent.name if out_dir.parent.parent.name == "rounds" else out_dir.name
    return f"{stage}-{where}"


def _on_pool(stage: str, pool: str, parameters: dict[str, Any], out_dir: Path):
    logger = get_run_logger()
    deployment = f"{STAGE_FLOWS[stage]}/{pool}"
    for attempt in range(CRASH_RESUBMITS + 1):
        run = run_deployment(deployment, parameters=parameters, flow_run_name=_run_name(stage, out_dir),
                             poll_interval=POLL_S)
        state = run.state
        if state is not None and state.is_completed():
            return state.result()
        ended = f"{stage} stage run {run.name} ({run.id}) on work pool {pool} ended {state.name if state else None}"
        if state is not None and state.is_crashed() and attempt < CRASH_RESUBMITS:
            logger.warning(f"{ended} ({state.message}); submitting it again ({attempt + 1} of {CRASH_RESUBMITS})")
            continue
        raise StageRunError(f"{ended}: {state.message if state else 'no state'}")
    raise AssertionError("unreachable")


def check_stage_deployments(cfg: FDDConfig) -> None:
    """With run.gpu_work_pool set: each stage flow has a deployment named after the pool, on that pool; else one
    ConfigError line naming the key, before anything is bought or trained."""
    pool = cfg.run.gpu_work_pool
    if pool is None:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for name in STAGE_FLOWS.values():
            try:
                found = client.read_deployment_by_name(f"{name}/{pool}").work_pool_name
            except ObjectNotFound:
                raise ConfigError(f"run.gpu_work_pool: no deployment {name}/{pool} on the Prefect server; deploy "
                                  f"deployments/prefect.yaml (deployments/README.md, Two pools)") from None
            if found != pool:
                raise ConfigError(f"run.gpu_work_pool: deployment {name}/{pool} runs on work pool {found!r}, "
                                  f"not {pool!r}")


# The stage flows: the parameters of their task, which they call through run_cached as the parent would.
@flow(name="fdd-train", log_prints=True, persist_result=True)
def train_flow(cfg: FDDConfig, train: str, out_dir: str, base: str, previous: str | None = None) -> TrainResult:
    return run_cached(train_task, out_dir, cfg, train, out_dir, base, previous)


@flow(name="fdd-evaluate", log_prints=True, persist_result=True)
def evaluate_flow(cfg: FDDConfig, model: str, benchmarks: dict[str, str], out_dir: str) -> EvalResult:
    return run_cached(evaluate_task, out_dir, cfg, model, benchmarks, out_dir)


@flow(name="fdd-feedback", log_prints=True, persist_result=True)
def feedback_flow(cfg: FDDConfig, model: str, pool: str, out_dir: str, round_index: int) -> FeedbackResult:
    return run_cached(feedback_task, out_dir, cfg, model, pool, out_dir, round_index)
