"""The Prefect paths users take, on real servers: SQLite, then PostgreSQL (one server and one worker each).

Per backend: `prefect deploy --all` of deployments/prefect.yaml and the list commands (a); the server's own
scheduler creates a run of the nightly-smoke schedule with the schedule's parameters and a real process worker
completes it (b); a run created the way the UI's form does (the whole cfg) and one from `fdd deployment run
--set` complete, with the overrides in their config.yaml (c); invalid values are refused with the field named
(d); a value only the run can find wrong ends the run with one line that is its state message.

The worker's FDD_REPO is a copy of the checkout in tmp, so runs never write into the repository.
"""

from __future__ import annotations

import json
import re
import urllib.error
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from fdd_core.config import FDDConfig

from .conftest import FDD, PREFECT, REPO, Processes, Server, copy_repo, start_server, wait_for

pytestmark = pytest.mark.slow

SPEC = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"] if d["entrypoint"] == "flows/fdd_flow.py:fdd"}
SMOKE = next(s for s in DEPLOYMENTS["demo"]["schedules"] if s.get("slug") == "nightly-smoke")
# a tiny run: round 0 only, 20 seeds, 5 training steps (tens of seconds on 2 CPU cores)
TINY = {"run.rounds": 0, "data.n_seed": 20, "data.n_synthetic_test": 20, "data.eval_limit": 10,
        "training.max_steps": 5, "inference.max_new_tokens": 32}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployed(request, tmp_path_factory):
    """A server on the backend, cpu-pool and gpu-pool, `prefect deploy --all` run, and a process worker on
    cpu-pool whose FDD_REPO is a copy of the checkout. Yields (server, the deploy's CompletedProcess)."""
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    root = tmp_path_factory.mktemp(request.param)
    procs = Processes()
    try:
        server = start_server(procs, root, request.param, db_url)
        repo = copy_repo(root / "repo")
        for pool in ("cpu-pool", "gpu-pool"):
            made = server.cli("work-pool", "create", pool, "--type", "process")
            assert made.returncode == 0, made.stdout + made.stderr
        deploy = server.cli("deploy", "--all", "--prefect-file", "deployments/prefect.yaml", cwd=repo, timeout=180)
        worker_env = server.env | {"FDD_REPO": str(repo), "HOME": str(root / "home"),
                                   "PREFECT_WORKER_QUERY_SECONDS": "2"}
        procs.start(root / "worker.log", [PREFECT, "worker", "start", "--pool", "cpu-pool", "--limit", "2"],
                    worker_env, root)
        server.repo = repo
        yield server, deploy
    finally:
        procs.stop_all()


def _deployment(server: Server, name: str) -> dict:
    return server.get(f"/deployments/name/fdd/{name}")


def _runs_of(server: Server, deployment_id: str, auto_scheduled: bool | None = None) -> list[dict]:
    runs = server.get("/flow_runs/filter", {"limit": 200, "offset": 0,
                                            "deployments": {"id": {"any_": [deployment_id]}}})
    return [r for r in runs if auto_scheduled is None or r["auto_scheduled"] == auto_scheduled]


def _saved_config(server: Server, run_name: str) -> dict:
    return yaml.safe_load((server.repo / "runs" / run_name / "config.yaml").read_text())


def _tiny_overrides(name: str) -> list[str]:
    return [f"run.name={name}", *(f"{key}={value}" for key, value in TINY.items())]


def test_deploy_all_creates_every_deployment_and_the_list_commands_work(deployed):
    server, deploy = deployed
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    for name, spec in DEPLOYMENTS.items():
        made = _deployment(server, name)
        assert made["work_pool_name"] == spec["work_pool"]["name"]
        assert made["parameters"] == spec["parameters"]
        slugs = sorted(s.get("slug") or "" for s in made["schedules"])
        assert slugs == sorted(s.get("slug") or "" for s in spec["schedules"]), name
    listed = {}
    for args in (["deployment", "ls"], ["work-pool", "ls"], ["flow-run", "ls"]):
        done = server.cli(*args)
        assert done.returncode == 0, f"prefect {' '.join(args)}: {done.stdout}{done.stderr}"
        listed[args[0]] = done.stdout
    assert "fdd/demo" in listed["deployment"] and "fdd/gsm8k" in listed["deployment"], listed["deployment"]
    assert "cpu-pool" in listed["work-pool"] and "gpu-pool" in listed["work-pool"]


@pytest.mark.timeout(600)
def test_the_scheduler_creates_the_smoke_run_and_a_worker_completes_it(deployed):
    server, _ = deployed
    demo = _deployment(server, "demo")
    schedule = next(s for s in demo["schedules"] if s["slug"] == "nightly-smoke")
    assert schedule["active"] is False and schedule["parameters"] == SMOKE["parameters"]
    # Turned on the way that keeps its parameters: `active: true` in prefect.yaml, deployed again. (Prefect
    # 3.8.8's `prefect deployment schedule resume` empties a schedule's parameters: deployments/README.md.)
    spec_file = server.repo / "deployments" / "prefect.yaml"
    off = "slug: nightly-smoke\n        active: false"
    assert off in spec_file.read_text()
    spec_file.write_text(spec_file.read_text().replace(off, off.replace("false", "true")))
    redeployed = server.cli("deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "demo", cwd=server.repo,
                            timeout=180)
    assert redeployed.returncode == 0, redeployed.stdout + redeployed.stderr

    runs = wait_for("the scheduler to create nightly-smoke runs",
                    lambda: _runs_of(server, demo["id"], auto_scheduled=True), 90, server.procs, interval=2)
    assert all(r["parameters"] == SMOKE["parameters"] for r in runs), [r["parameters"] for r in runs]
    first = min(runs, key=lambda r: r["expected_start_time"])
    assert first["state_type"] == "SCHEDULED"
    assert first["expected_start_time"][11:16] == "04:00", first["expected_start_time"]  # the schedule's cron
    # Tonight is too long to wait: the run the scheduler created is moved to now (set_state, the REST API).
    now = datetime.now(timezone.utc).isoformat()
    server.get(f"/flow_runs/{first['id']}/set_state",
               {"state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": now}},
                "force": True})
    done = server.wait_final(first["id"], 480)
    assert done["state_type"] == "COMPLETED", done["state"]
    smoke = SMOKE["parameters"]["cfg"]
    saved = _saved_config(server, smoke["run"]["name"])
    assert saved["run"]["rounds"] == smoke["run"]["rounds"] and saved["data"]["n_seed"] == smoke["data"]["n_seed"]
    report = json.loads((server.repo / "runs" / smoke["run"]["name"] / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == list(range(smoke["run"]["rounds"] + 1))


@pytest.mark.timeout(600)
def test_a_ui_form_run_and_a_cli_override_run_complete_with_their_values(deployed):
    server, _ = deployed
    demo = _deployment(server, "demo")
    # The UI's form opens on the deployment's whole cfg and sends it back, edited, as the run's parameters.
    form = json.loads(json.dumps(demo["parameters"]["cfg"]))
    for key, value in {"run.name": "ui-form", **TINY}.items():
        section, field = key.split(".")
        form.setdefault(section, {})[field] = value
    ui_run = server.get(f"/deployments/{demo['id']}/create_flow_run", {"parameters": {"cfg": form}})

    # `fdd deployment run --set` merges dotted overrides into the deployment's cfg (keys not set keep its values).
    ran = server.cli("deployment", "run", "fdd/demo", *sum((["--set", o] for o in _tiny_overrides("cli-override")), []),
                     "--set", "training.batch_size=8", "--watch", "--timeout", "420", program=FDD, timeout=450)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "state: Completed" in ran.stdout
    cli_id = re.search(r"\(ID ([0-9a-f-]{36})\)", ran.stdout).group(1)
    cli_run = server.flow_run(cli_id)
    assert cli_run["parameters"]["cfg"]["training"]["batch_size"] == 8

    assert server.wait_final(ui_run["id"], 300)["state_type"] == "COMPLETED"
    assert _saved_config(server, "ui-form") == FDDConfig.model_validate(form).model_dump(mode="json")
    saved = _saved_config(server, "cli-override")
    assert saved["training"]["batch_size"] == 8 and saved["training"]["max_steps"] == 5
    assert saved["run"]["rounds"] == 0 and saved["data"]["n_seed"] == 20
    # deep-merged: what no --set names keeps the deployment's value
    assert saved["teacher"] == FDDConfig.model_validate(demo["parameters"]["cfg"]).teacher.model_dump(mode="json")


def test_invalid_values_are_refused_with_the_field_named(deployed):
    server, _ = deployed
    demo = _deployment(server, "demo")
    before = len(_runs_of(server, demo["id"], auto_scheduled=False))

    bad = json.loads(json.dumps(demo["parameters"]["cfg"]))
    bad["training"]["method"] = "qlora"
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.get(f"/deployments/{demo['id']}/create_flow_run", {"parameters": {"cfg": bad}})
    body = refused.value.read().decode()
    assert refused.value.code in (409, 422) and "cfg.training.method" in body, body

    for option, line in [
        ("training.method=qlora", "error: --set training.method=qlora: training.method: Input should be 'full' or "
                                  "'lora' (got 'qlora')"),
        ("traning.max_steps=3", "error: --set traning.max_steps=3: traning: unknown key (did you mean 'training'?)"),
        ("data.benchmarks=[gsm8kk]", "error: data.benchmarks: unknown benchmark 'gsm8kk'; known: synthetic-test, "),
    ]:
        done = server.cli("deployment", "run", "fdd/demo", "--set", option, program=FDD)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith(line) and done.stderr.count("\n") == 1, done.stderr
    assert len(_runs_of(server, demo["id"], auto_scheduled=False)) == before, "a refused run was created"


@pytest.mark.timeout(300)
def test_a_run_that_fails_on_a_users_value_says_why_in_its_state_message(deployed):
    server, _ = deployed
    cfg = {"run": {"name": "bad-benchmark"}, "data": {"benchmarks": ["gsm8kk"]}}
    ran = server.cli("deployment", "run", "fdd/demo", "--params", json.dumps({"cfg": cfg}), "--watch",
                     "--watch-timeout", "240", timeout=270)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 1, output
    line = ("data.benchmarks: unknown benchmark 'gsm8kk'; known: synthetic-test, gsm8k-train, gsm8k, svamp, asdiv, "
            "asdiv-2215, asdiv-pal, multiarith, gsm-hard")
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    logs = server.get("/logs/filter", {"limit": 200, "offset": 0, "logs": {"flow_run_id": {"any_": [run_id]}}})
    assert line in [log["message"] for log in logs], [log["message"] for log in logs]  # the run's own log, too
    assert line in output, output  # --watch streams the run's logs: the error line is one of them
    run = server.flow_run(run_id)
    assert run["state_type"] == "FAILED" and run["state"]["message"] == line
    inspected = server.cli("flow-run", "inspect", run_id)
    assert inspected.returncode == 0 and line in inspected.stdout.replace("\n", ""), inspected.stdout
    assert not (server.repo / "runs" / "bad-benchmark").exists(), "nothing is started on a bad value"

    # the form's field descriptions are plain text (Markdown in the UI): nothing in them reads as an HTML tag
    schema = _deployment(server, "demo")["parameter_openapi_schema"]
    described = json.dumps(schema)
    assert "its run directory is the folder of this name inside runs_dir" in described
    assert not re.search(r"<[a-z_]+>", described), re.findall(r"<[a-z_]+>", described)


def test_serve_py_never_takes_over_a_deployment_a_work_pool_serves(deployed):
    server, _ = deployed
    if server.backend != "sqlite":
        pytest.skip("serve.py's check is a client-side read, the same on any backend: proved on SQLite")
    env = server.env
    refused = server.cli("deployments/serve.py", "--name", "demo", cwd=REPO, env=env, program=str(Path(PREFECT).parent / "python"),
                         timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.startswith("error: fdd/demo is served by work pool 'cpu-pool'"), refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr

    # its default name is its own: fdd/demo keeps its work pool and both schedules while serve.py runs
    served = server.procs.start(server.root / "serve.log", [str(Path(PREFECT).parent / "python"), "deployments/serve.py"],
                                env, REPO)

    def registered():
        try:
            return _deployment(server, "demo-local")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    local = wait_for("serve.py registers fdd/demo-local", registered, 120, server.procs)
    assert local["work_pool_name"] is None
    server.procs.stop(served)
    demo = _deployment(server, "demo")
    assert demo["work_pool_name"] == "cpu-pool" and len(demo["schedules"]) == len(DEPLOYMENTS["demo"]["schedules"])
    assert demo["paused"] is False
