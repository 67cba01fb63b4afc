"""Serve the `fdd` flow from this process (Prefect's runner): a deployment for local use, no work pool.

    python deployments/serve.py [--name demo-local] [--config PROFILE] [--set KEY=VALUE ...] [--cron "0 3 * * *"]

Its default name, demo-local, is not one of prefect.yaml's: serving takes a deployment over (its work pool
and schedules are replaced, and it is paused when the runner stops), so a NAME that a work pool serves on
the server (`prefect deploy`) is refused. The deployment `fdd/NAME` gets the resolved profile as its default parameters, `{"cfg": {...}}`, so the
Prefect UI's run form opens on it. The runner polls the server named by PREFECT_API_URL about every
10 s and runs each flow run as `python -m prefect.engine` in the repository root (a relative
`run.runs_dir` lands there, as with `fdd run` started there). Stop it with Ctrl-C or SIGTERM, before
stopping the server: on its way out it pauses its deployment through the API.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python deployments/serve.py` puts deployments/ first, not the repository
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deployments/serve.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="demo-local",
                        help="Deployment name: the deployment is fdd/NAME (default: demo-local). A name that a work "
                             "pool serves (prefect.yaml's demo, gsm8k) is refused.")
    parser.add_argument("--config", default=None,
                        help="YAML profile for the default parameters: a file, or a name in configs/ "
                             "(default: the profile named NAME if there is one, else demo).")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Override one config key of the default parameters, e.g. run.rounds=1 (repeatable).")
    parser.add_argument("--cron", default=None, help='Also run on this cron schedule (UTC), e.g. "0 3 * * *".')
    args = parser.parse_args(argv)

    from fdd_core.config_files import CONFIGS_DIR, ConfigError, load_config

    profile = args.config or (args.name if (CONFIGS_DIR / f"{args.name}.yaml").is_file() else "demo")
    try:
        cfg = load_config(profile, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from prefect import Flow
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        print("warning: PREFECT_API_URL is not set, so this serves on a temporary server that no UI or CLI "
              "can reach; start `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api",
              file=sys.stderr)
    else:
        taken = _work_pool_of(f"fdd/{args.name}")
        if taken:
            print(f"error: fdd/{args.name} is served by work pool '{taken}' (prefect deploy); serving it here "
                  f"would take it over (its work pool and schedules replaced, paused on exit): choose another --name",
                  file=sys.stderr)
            return 2
    # Loaded from source, the runner starts each run as `python -m prefect.engine` in the repository, which
    # imports flows/fdd_flow.py afresh, as a worker does. (A flow object served directly is cloudpickled into
    # a spawned child instead; its functions travel by value, without the module globals that resolve the
    # string annotations of `from __future__ import annotations`, and parameter validation then fails.)
    fdd = Flow.from_source(source=str(REPO), entrypoint="flows/fdd_flow.py:fdd")
    fdd.serve(name=args.name, parameters={"cfg": cfg.model_dump(mode="json")}, cron=args.cron,
              description=f"FDD on the {profile} profile, served by deployments/serve.py")
    return 0


def _work_pool_of(name: str) -> str | None:
    """The work pool of deployment `name` on the server, or None when it has none or does not exist."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).work_pool_name
        except ObjectNotFound:
            return None


if __name__ == "__main__":
    sys.exit(main())
