"""A benchmark's configurations as concurrent flow runs of a Prefect deployment (bench_method.py --deployment).

Each configuration is the demo profile with its overrides, sent whole as the run's `cfg` with
prefect.deployments.arun_deployment(timeout=0): created at once, picked up by whichever worker of the
deployment's work pool is free, so N workers (or a pool concurrency limit of N) run N configurations at once.
A configuration that needs another's result (bench_method's `budget` spends what FDD spent) is submitted when
that one completes. Each run has its own run name, so its own run directory, run lock and ledger; the runs of
a seed share one response store (teacher.cache_path), which is made for several processes at once (a reply in
flight is claimed, never bought twice). Results are read from the run directories, as after `fdd run`.
Workers must reach --workdir: a shared disk, or the same machine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from fdd_core.config_files import load_config

POLL_S = 2.0
IDLE_HINT_S = 60.0  # nothing picked up for this long: say that a worker is needed

Followup = Callable[[str, dict], "tuple[str, list[str]] | None"]


def run_config(workdir: Path, name: str, sets: list[str]) -> dict:
    """The whole config `fdd run --config demo --set run.runs_dir=WORKDIR --set run.name=NAME --set ...` runs."""
    cfg = load_config("demo", [f"run.runs_dir={workdir}", f"run.name={name}", *sets])
    return cfg.model_dump(mode="json")


class SweepFailed(RuntimeError):
    """A configuration's flow run ended other than Completed; str() names it, its state and message."""


def sweep(deployment: str, workdir: Path, first: dict[str, list[str]],
          then: Followup) -> dict[str, tuple[list[str], dict]]:
    """Run every configuration of `first` (name -> overrides), in that order of submission, and each follow-up
    then(name, report) returns once `name` completed; {name: (overrides, report.json)} when all completed.
    A run that ends otherwise stops the sweep with one line naming it, its state and message (the runs already
    submitted go on: an interrupted sweep is resumed by running it again)."""
    try:
        return asyncio.run(_sweep(deployment, workdir, first, then))
    except SweepFailed as e:
        raise SystemExit(str(e)) from None


async def _sweep(deployment: str, workdir: Path, first: dict[str, list[str]], then: Followup):
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise SystemExit("--deployment needs a Prefect server: set PREFECT_API_URL, e.g. "
                         "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    started = time.monotonic()
    done: dict[str, tuple[list[str], dict]] = {}
    async with get_client() as client:
        await _check_deployment(client, deployment)
        submitted = [(name, sets, await _submit(client, deployment, workdir, name, sets, started))
                     for name, sets in first.items()]  # created in order: the workers take them in this order

        async def follow(name: str, sets: list[str], run_id) -> None:
            done[name] = (sets, await _finished(client, run_id, name, workdir, started))
            nxt = then(name, done[name][1])
            if nxt is not None:
                n_name, n_sets = nxt
                await follow(n_name, n_sets, await _submit(client, deployment, workdir, n_name, n_sets, started))

        hint = asyncio.create_task(_idle_hint(client, [s[2] for s in submitted]))
        try:
            await asyncio.gather(*(follow(*s) for s in submitted))
        finally:
            hint.cancel()
    return done


async def _check_deployment(client, deployment: str) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        await client.read_deployment_by_name(deployment)
    except ObjectNotFound:
        raise SystemExit(f"--deployment {deployment}: not found on {client.api_url} (deploy it: "
                         "prefect deploy --prefect-file deployments/prefect.yaml --name sweep)") from None
    except ValueError as e:
        raise SystemExit(f"--deployment {deployment}: {e} (expected FLOW/DEPLOYMENT, e.g. fdd/sweep)") from None
    except Exception as e:  # no server there: one line
        raise SystemExit(f"cannot reach the Prefect server at {client.api_url}: {type(e).__name__}: {e}") from None


async def _submit(client, deployment: str, workdir: Path, name: str, sets: list[str], started: float):
    from prefect.deployments import arun_deployment

    run = await arun_deployment(deployment, client=client, parameters={"cfg": run_config(workdir, name, sets)},
                                flow_run_name=name, timeout=0, as_subflow=False)
    print(f"[{time.monotonic() - started:5.0f} s] {name}: submitted (flow run {run.id})", flush=True)
    return run.id


async def _finished(client, run_id, name: str, workdir: Path, started: float) -> dict:
    while True:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.is_final():
            break
        await asyncio.sleep(POLL_S)
    if not run.state.is_completed():
        raise SweepFailed(f"{name}: flow run {run_id} ended {run.state.name}: {run.state.message} "
                         f"(its logs: prefect flow-run logs {run_id})")
    print(f"[{time.monotonic() - started:5.0f} s] {name}: completed", flush=True)
    return json.loads((workdir / name / "report.json").read_text())


async def _idle_hint(client, run_ids: list) -> None:
    """One line when no submitted run has left Scheduled after IDLE_HINT_S: no worker serves the pool."""
    await asyncio.sleep(IDLE_HINT_S)
    runs = [await client.read_flow_run(i) for i in run_ids]
    if all(r.state is not None and r.state.is_scheduled() for r in runs):
        print(f"no run picked up after {IDLE_HINT_S:.0f} s: is a worker serving the deployment's work pool? "
              "(deployments/README.md, Sweeps)", flush=True)
