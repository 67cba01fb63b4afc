"""Two pools on a real Prefect server (SQLite): the GPU stages on gpu-pool, the rest on cpu-pool (issue 16).

One server, `prefect deploy --all` of deployments/prefect.yaml, the zombie automation of deployments/automations,
the offline teacher served over HTTP with a request log, and two real process workers: one on cpu-pool (the fdd
parent flow, its teacher stages), one on gpu-pool (fdd-train, fdd-evaluate, fdd-feedback; PREFECT_FLOWS_HEARTBEAT_
FREQUENCY=30). Each worker has a HOME of its own and shares only the run directory and PREFECT_LOCAL_STORAGE_PATH,
as two machines would (deployments/README.md, Two pools).

A small demo run (rounds=1) runs in-process on cpu-pool; the same run with run.gpu_work_pool=gpu-pool runs its
stages on gpu-pool, and while round 1 trains, the GPU worker and its flow run's process are killed (SIGKILL) and a
new GPU worker is started. Prefect marks the silent stage run Crashed (the automation), the parent submits it
again, and the run completes: the report equals the in-process run's, no finished stage has a second flow run,
the crashed training left no cached result, and the teacher served exactly the replies the response stores hold.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psutil
import pytest
import yaml

from fdd_core.teacher.response_store import ResponseStore

from tests.prefect_api import free_port, healthy

from .conftest import FDD, PREFECT, REPO, Processes, Server, copy_repo, start_server, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.robustness]

SPEC = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
DEMO = next(d for d in SPEC["deployments"] if d["name"] == "demo")
# round 0 and round 1, 20 seeds: every stage flow runs (train and evaluate twice, feedback once)
SMALL = {"run": {"rounds": 1}, "data": {"n_seed": 20, "n_synthetic_test": 20, "eval_limit": 10},
         "teacher": {"k_solutions": 2, "concurrency": 4, "model": "openai/fdd-offline"},
         "training": {"max_steps": 12, "batch_size": 8}, "inference": {"max_new_tokens": 32}}
STAGE_FLOWS = {"fdd-train", "fdd-evaluate", "fdd-feedback"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _cfg(name: str, api_base: str, store: Path, **run) -> dict:
    cfg = json.loads(json.dumps(DEMO["parameters"]["cfg"]))
    for section, values in SMALL.items():
        cfg.setdefault(section, {}).update(values)
    cfg["run"].update(name=name, **run)
    cfg["teacher"].update(api_base=api_base, cache_path=str(store))
    return cfg


def _flow_runs(server: Server, **only) -> list[dict]:
    """The server's flow runs, oldest first; `only` is a filter on them (name={"any_": [...]}, ...)."""
    return server.get("/flow_runs/filter", {"limit": 200, "offset": 0, "sort": "EXPECTED_START_TIME_ASC",
                                            **({"flow_runs": only} if only else {})})


def _flow_names(server: Server) -> dict[str, str]:
    return {f["id"]: f["name"] for f in server.get("/flows/filter", {"limit": 200, "offset": 0})}


def _task_runs(server: Server, flow_run_ids: list[str]) -> list[dict]:
    return server.get("/task_runs/filter", {"limit": 200, "offset": 0,
                                            "flow_runs": {"id": {"any_": flow_run_ids}}})


def _kill_family(proc) -> list[int]:
    """SIGKILL a worker and every process under it (the flow run it started): a machine lost mid-stage."""
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        p.kill()
    psutil.wait_procs(family, timeout=30)
    proc.wait(timeout=30)
    return [p.pid for p in family]


def _report_rows(run_dir: Path) -> list[dict]:
    """report.json's rounds without what differs between two runs of the same work: timings."""
    rounds = json.loads((run_dir / "report.json").read_text())["rounds"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rounds]


def _output_hash(run_dir: Path, stage: str, output: str) -> str:
    """The content hash a stage folder's MANIFEST.json gives one of its outputs (its logs hold timings and paths)."""
    return json.loads((run_dir / "rounds" / stage / "MANIFEST.json").read_text())["outputs"][output]["sha256"]


def _store_rows(path: Path) -> int:
    with ResponseStore(path) as store:
        return len(store)


@pytest.mark.timeout(600)
def test_gpu_stages_run_on_the_gpu_pool_and_survive_a_killed_gpu_worker(tmp_path):
    procs = Processes()
    try:
        server = start_server(procs, tmp_path, "sqlite")
        repo = copy_repo(tmp_path / "repo")
        for pool in ("cpu-pool", "gpu-pool"):
            made = server.cli("work-pool", "create", pool, "--type", "process")
            assert made.returncode == 0, made.stdout + made.stderr
        # a pool without the stage deployments: one line naming the key, before anything is bought or trained
        early = server.cli("run", "--set", "run.gpu_work_pool=gpu-pool", "--set", f"run.runs_dir={tmp_path / 'early'}",
                           "--set", f"teacher.cache_path={tmp_path / 'early.sqlite'}", program=FDD, timeout=240)
        assert early.returncode != 0 and early.stderr.splitlines()[-1] == (
            "error: run.gpu_work_pool: no deployment fdd-train/gpu-pool on the Prefect server; deploy "
            "deployments/prefect.yaml (deployments/README.md, Two pools)"), early.stdout + early.stderr
        assert not (tmp_path / "early.sqlite").exists() and not (tmp_path / "early" / "demo" / "rounds").exists()
        deploy = server.cli("deploy", "--all", "--prefect-file", "deployments/prefect.yaml", cwd=repo, timeout=240)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        # the zombie automation as shipped, with a shorter silence: 45 s, above the GPU worker's 30 s heartbeat
        zombies = yaml.safe_load((REPO / "deployments" / "automations" / "crash-zombies.yaml").read_text())
        zombies["trigger"]["within"] = 45
        zombies["actions"][0]["message"] = zombies["actions"][0]["message"].replace("300 s", "45 s")
        (tmp_path / "zombies.yaml").write_text(yaml.safe_dump(zombies))
        made = server.cli("automation", "create", "--from-file", str(tmp_path / "zombies.yaml"))
        assert made.returncode == 0, made.stdout + made.stderr

        port, served = free_port(), tmp_path / "teacher-requests.jsonl"
        procs.start(tmp_path / "teacher.log", [FDD, "teacher", "serve", "--host", "127.0.0.1", "--port", str(port),
                                               "--log", str(served)], server.env, REPO)
        api_base = f"http://127.0.0.1:{port}/v1"
        wait_for("the teacher server", lambda: healthy(f"http://127.0.0.1:{port}/health"), 60, procs)

        shared = {"FDD_REPO": str(repo), "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "prefect-results"),
                  "PREFECT_WORKER_QUERY_SECONDS": "2", "OMP_NUM_THREADS": "1"}
        cpu_env = server.env | shared | {"HOME": str(tmp_path / "cpu-home")}
        gpu_env = server.env | shared | {"HOME": str(tmp_path / "gpu-home"), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}
        procs.start(tmp_path / "cpu-worker.log", [PREFECT, "worker", "start", "--pool", "cpu-pool", "--limit", "2"],
                    cpu_env, tmp_path)
        gpu_worker = [PREFECT, "worker", "start", "--pool", "gpu-pool", "--limit", "1"]
        first_gpu = procs.start(tmp_path / "gpu-worker-1.log", gpu_worker, gpu_env, tmp_path)

        # the two runs at once (the CPU worker takes 2): one in-process, one with its GPU stages on gpu-pool
        demo = server.get("/deployments/name/fdd/demo")
        inproc = server.get(f"/deployments/{demo['id']}/create_flow_run",
                            {"parameters": {"cfg": _cfg("inproc", api_base, tmp_path / "store-inproc.sqlite")}})
        pooled = server.get(f"/deployments/{demo['id']}/create_flow_run", {"parameters": {"cfg": _cfg(
            "pooled", api_base, tmp_path / "store-pooled.sqlite", gpu_work_pool="gpu-pool")}})

        def round_1_training():
            """round 1's training stage run, once its train task is Running: killed then, it is mid-training."""
            # filtered by the server: this polls 3 times a second while both runs load the 2 CPUs (CI once saw a
            # 30 s stall reading all flow runs here)
            runs = _flow_runs(server, name={"any_": ["train-r1"]}, state={"type": {"any_": ["RUNNING"]}})
            if server.flow_run(pooled["id"])["state_type"] in FINAL:
                pytest.fail(f"the run ended before round 1 trained: {server.flow_run(pooled['id'])['state']}")
            training = runs and [t for t in _task_runs(server, [runs[0]["id"]]) if t["state_type"] == "RUNNING"]
            return runs[0] if training else None

        killed_run = wait_for("round 1's training to run on gpu-pool", round_1_training, 300, procs, interval=0.3)
        killed = _kill_family(first_gpu)
        procs.started = [(p, log) for p, log in procs.started if p is not first_gpu]
        assert len(killed) >= 2, "the worker's flow run process was among those killed"
        procs.start(tmp_path / "gpu-worker-2.log", gpu_worker, gpu_env, tmp_path)
        done = server.wait_final(pooled["id"], 360)
        assert done["state_type"] == "COMPLETED", done["state"]
        assert server.wait_final(inproc["id"], 60)["state_type"] == "COMPLETED"

        runs, flows = _flow_runs(server), _flow_names(server)
        stage_runs = [r for r in runs if flows[r["flow_id"]] in STAGE_FLOWS]
        worker_logs = {pool: "".join((tmp_path / f).read_text() for f in files) for pool, files in
                       {"cpu-pool": ["cpu-worker.log"], "gpu-pool": ["gpu-worker-1.log", "gpu-worker-2.log"]}.items()}
        # (1) train, evaluate, feedback ran as flow runs on gpu-pool, each submitted by a GPU worker; the parents
        # by the CPU worker; every teacher stage's task ran in a parent's process (its flow run or its subflows)
        assert sorted(r["name"] for r in stage_runs) == sorted(
            ["train-r0", "evaluate-r0", "feedback-r0", "train-r1", "train-r1", "evaluate-r1"])
        submitted = {pool: set(re.findall(r"submitting flow run '([0-9a-f-]{36})'", text))
                     for pool, text in worker_logs.items()}  # what each worker started (its log also holds the runs')
        for r in stage_runs:
            assert r["work_pool_name"] == "gpu-pool" and r["id"] in submitted["gpu-pool"], r
            assert r["id"] not in submitted["cpu-pool"], r
        parents = [r for r in runs if r["deployment_id"] == demo["id"]]
        assert {r["id"] for r in parents} == {inproc["id"], pooled["id"]}
        for r in parents:
            assert r["work_pool_name"] == "cpu-pool" and r["id"] in submitted["cpu-pool"], r
            assert r["id"] not in submitted["gpu-pool"], r
        in_parent = [r["id"] for r in runs if r["work_pool_name"] is None or r["deployment_id"] == demo["id"]]
        tasks = _task_runs(server, [r["id"] for r in runs])
        where = {}  # task name (its run's name without the suffix) -> [ran in a parent's process?]
        for t in tasks:
            where.setdefault(t["name"].rsplit("-", 1)[0], []).append(t["flow_run_id"] in in_parent)
        for stage in ("prepare-data", "generate-solutions", "generate-variants"):  # both runs, in their parents
            assert where[stage] and all(where[stage]), (stage, where[stage])
        # in-process, the run's own process ran train and evaluate twice and feedback once; pooled, none of them
        assert (where["train"].count(True), where["evaluate"].count(True), where["feedback"].count(True)) == (2, 2, 1)

        # (2) the same seeds give the same report either way (accuracies, train sizes, teacher requests)
        assert _report_rows(repo / "runs" / "pooled") == _report_rows(repo / "runs" / "inproc")
        # and the same bytes: the tiny student scores 0% in 12 steps, so its weights and answers are compared too
        for stage, output in [("r0/student", "model"), ("r0/eval", "eval-synthetic-test"), ("r0/feedback", "attempts"),
                              ("r1/student", "model"), ("r1/eval", "eval-synthetic-test")]:
            assert _output_hash(repo / "runs" / "pooled", stage, output) == _output_hash(
                repo / "runs" / "inproc", stage, output), (stage, output)

        # (3) the killed training was marked Crashed and submitted again (logged); no other stage ran twice
        trains = [r for r in stage_runs if r["name"] == "train-r1"]
        assert [r["state_type"] for r in trains] == ["CRASHED", "COMPLETED"], [r["state"] for r in trains]
        assert trains[0]["id"] == killed_run["id"]
        for r in stage_runs:
            if r["name"] != "train-r1":
                assert r["state_type"] == "COMPLETED", r
        logs = server.get("/logs/filter", {"limit": 200, "offset": 0, "logs": {  # warnings and worse
            "flow_run_id": {"any_": in_parent}, "level": {"ge_": 30}}})
        assert any("train stage run train-r1" in m["message"] and "submitting it again (1 of 2)" in m["message"]
                   for m in logs), [m["message"] for m in logs if "stage run" in m["message"]]
        # the crashed training is not cached as done: its task never completed; the new one trained (not Cached)
        crashed_task = [t for t in tasks if t["flow_run_id"] == trains[0]["id"]]
        assert [t["state_type"] for t in crashed_task] == ["RUNNING"], crashed_task  # killed mid-training
        rerun_task = [t for t in tasks if t["flow_run_id"] == trains[1]["id"]]
        assert [t["state_name"] for t in rerun_task] == ["Completed"], rerun_task
        assert (repo / "runs" / "pooled" / "rounds" / "r1" / "student" / "MANIFEST.json").is_file()

        # (4) no reply bought twice: the teacher answered exactly the rows the two runs' stores hold
        paid = [json.loads(line) for line in served.read_text().splitlines()]
        paid = [line for line in paid if line["status"] == 200]
        assert len(paid) == _store_rows(tmp_path / "store-inproc.sqlite") + _store_rows(tmp_path / "store-pooled.sqlite")
    finally:
        procs.stop_all()

