"""Deployments: deployments/prefect.yaml agrees with the profiles; the demo deployment runs on a real Prefect server.

The slow test starts `prefect server start` on a free 127.0.0.1 port (its own PREFECT_HOME in tmp), serves the
demo deployment with deployments/serve.py, and triggers runs with Prefect's own CLI: an invalid override is
refused by the server with the field named; a valid one completes, and the run directory shows it applied.
Every wait is bounded; every process started here is stopped by PID with SIGTERM and checked gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import psutil
import pytest
import yaml

from tests.prefect_api import api_json, free_port, healthy, tail
from tests.processes import stop_process
from fdd_core.config import FDDConfig
from fdd_core.config_files import load_config

REPO = Path(__file__).resolve().parents[2]
PREFECT = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
NAME = "demo-test"


def test_prefect_yaml_deployments_resolve_to_their_profiles():
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"] if d["entrypoint"] == "flows/fdd_flow.py:fdd"}
    assert set(deployments) == {"demo", "gsm8k", "gsm8k-two-pools", "sweep"}
    # a sweep's runs each send their whole cfg (bench/bench_method.py --deployment): its own is the flow's default
    sweep = deployments.pop("sweep")
    assert sweep["parameters"] == {} and sweep["work_pool"]["name"] == "cpu-pool"
    profiles = {"demo": ("demo", []), "gsm8k": ("gsm8k", []),
                "gsm8k-two-pools": ("gsm8k", ["run.gpu_work_pool=gpu-pool"])}  # the same run, GPU stages on gpu-pool
    for name, d in deployments.items():
        assert d["entrypoint"] == "flows/fdd_flow.py:fdd"
        assert (REPO / d["entrypoint"].split(":")[0]).is_file()
        # every key left out takes the FDDConfig default, so the deployment runs exactly the profile
        assert FDDConfig.model_validate(d["parameters"]["cfg"]) == load_config(*profiles[name]), name
        assert all(s["active"] is False for s in d["schedules"]), "example schedules are inactive by default"
    assert deployments["demo"]["work_pool"]["name"] == "cpu-pool"
    assert deployments["gsm8k"]["work_pool"]["name"] == "gpu-pool"
    assert deployments["gsm8k-two-pools"]["work_pool"]["name"] == "cpu-pool"
    # the gsm8k profile's vLLM interpreter is the one the GPU image builds
    vllm_python = deployments["gsm8k"]["parameters"]["cfg"]["inference"]["vllm_python"]
    assert f"FDD_VLLM_PYTHON={vllm_python}" in (REPO / "docker" / "Dockerfile.gpu").read_text()


def test_prefect_yaml_deploys_each_gpu_stage_flow_on_gpu_pool_with_its_tasks_parameters():
    import inspect

    from prefect.flows import load_flow_from_entrypoint

    from flows import stage_flows

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    stages = [d for d in spec["deployments"] if d["entrypoint"].startswith("flows/stage_flows.py:")]
    flows = {load_flow_from_entrypoint(str(REPO / d["entrypoint"])).name: d for d in stages}
    assert set(flows) == set(stage_flows.STAGE_FLOWS.values())
    assert {(d["name"], d["work_pool"]["name"]) for d in stages} == {("gpu-pool", "gpu-pool")}  # named after the pool
    for task in (stage_flows.train_task, stage_flows.evaluate_task, stage_flows.feedback_task):
        stage_flow = load_flow_from_entrypoint(str(REPO / flows[stage_flows.STAGE_FLOWS[task.name]]["entrypoint"]))
        # run_stage binds the task's arguments by name: the flow must take exactly the task's parameters
        assert list(inspect.signature(stage_flow.fn).parameters) == list(inspect.signature(task.fn).parameters)


@pytest.fixture
def processes():
    """start(log, argv, env, cwd) -> Popen writing to the log file; all stopped and checked gone at the end."""
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(log: Path, argv: list[str], env: dict, cwd: Path) -> subprocess.Popen:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        started.append((proc, log))
        return proc

    yield start
    leftovers = []
    for proc, _ in reversed(started):
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        leftovers += stop_process(proc, family)
        assert proc.poll() is not None
    assert not leftovers, f"child processes outlived their parent: {leftovers}"


def _wait(what: str, check, timeout: float, logs: list[Path], procs: list[subprocess.Popen]):
    deadline, late = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: a process exited ({p.args[:3]}, code {p.returncode}):\n"
                            + "\n".join(tail(log) for log in logs))
        try:
            result = check()
        except TimeoutError:  # the server answered late under load: not yet (tests/prefect_api.py)
            late += 1
            continue
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout:.0f} s ({late} reads of the server timed out):\n"
                + "\n".join(tail(log) for log in logs))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_served_demo_deployment_runs_with_a_cli_override(tmp_path, processes):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base_env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                 "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    client_env = base_env | {"PREFECT_API_URL": api}
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"

    server = processes(server_log, [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                       base_env | {"PREFECT_SERVER_UI_ENABLED": "false"}, tmp_path)

    _wait("server /api/health", lambda: healthy(f"{api}/health"), 120, [server_log], [server])

    # The deployment's defaults differ from FDDConfig's in training.batch_size, to show how an override applies.
    cache = tmp_path / "teacher.sqlite"
    serve = processes(serve_log, [sys.executable, "deployments/serve.py", "--name", NAME,
                                  "--set", "training.batch_size=8", "--set", f"teacher.cache_path={cache}",
                                  "--set", f"run.runs_dir={tmp_path / 'runs'}"], client_env, REPO)

    def registered():
        try:
            return api_json(f"{api}/deployments/name/fdd/{NAME}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        except OSError:
            return None

    deployment = _wait("deployment registered", registered, 90, [serve_log, server_log], [server, serve])
    assert deployment["parameters"]["cfg"]["training"]["batch_size"] == 8

    def prefect(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([PREFECT, *args], env=client_env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    # An invalid value: the server refuses the run and names the field; no run is created.
    invalid = {"cfg": {"training": {"method": "qlora"}}}
    bad = prefect("deployment", "run", f"fdd/{NAME}", "--params", json.dumps(invalid))
    assert bad.returncode != 0
    assert "Validation failed for field 'cfg.training.method'" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    runs = api_json(f"{api}/flow_runs/filter",
                     {"limit": 10, "offset": 0, "deployments": {"id": {"any_": [deployment["id"]]}}})
    assert runs == []

    # A valid override: tiny sizes so the run is short. It replaces the deployment's cfg as a whole.
    override = {"cfg": {
        "run": {"name": "deployed", "runs_dir": str(tmp_path / "runs"), "rounds": 0},
        "data": {"n_seed": 20, "n_synthetic_test": 20, "eval_limit": 10},
        "teacher": {"cache_path": str(cache)},
        "training": {"max_steps": 5},
        "inference": {"max_new_tokens": 32},
    }}
    started = time.monotonic()
    ran = prefect("deployment", "run", f"fdd/{NAME}", "--params", json.dumps(override), "--watch",
                  "--watch-interval", "2", "--watch-timeout", "240", timeout=270)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output + tail(serve_log)
    assert "Completed" in output
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
    flow_run = api_json(f"{api}/flow_runs/{run_id}")
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["parameters"] == override
    print(f"deployment run completed in {time.monotonic() - started:.0f} s")

    run_dir = tmp_path / "runs" / "deployed"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["run"]["rounds"] == 0 and saved["data"]["n_seed"] == 20 and saved["training"]["max_steps"] == 5
    assert saved["teacher"]["cache_path"] == str(cache)
    # Not deep-merged: keys the override leaves out take FDDConfig's defaults, not the deployment's (8).
    assert saved["training"]["batch_size"] == FDDConfig().training.batch_size == 32
    report = json.loads((run_dir / "report.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0]
    assert report["config"]["data"]["n_seed"] == 20
    assert cache.is_file()
