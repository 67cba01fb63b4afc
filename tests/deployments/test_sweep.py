"""The method benchmark as a sweep: its configurations as concurrent flow runs of fdd/sweep on two process workers.

A real `prefect server start` (SQLite), cpu-pool with a concurrency limit of 2, `prefect deploy --name sweep` of
deployments/prefect.yaml, and two real `prefect worker start --limit 1` processes whose FDD_REPO is a copy of the
checkout. bench/bench_method.py --profile smoke runs once one configuration after another (`fdd run` subprocesses,
today's way) and once with --deployment fdd/sweep; both write method.json, which must hold the same rows, and whose
students have the same weights (bit for bit). The sweep's flow runs must have been taken by both workers, overlap
in time, and `budget` (which spends what FDD spent) must start only after FDD's run ended.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import PREFECT, REPO, Processes, copy_repo, start_server, tail

pytestmark = pytest.mark.slow

BENCH = REPO / "bench" / "bench_method.py"
WORKERS = ("sweep-a", "sweep-b")
# what the two ways must agree on: every row and what is derived from them (not the seconds, nor the command)
SAME = ("seeds", "rounds", "rows", "summary", "checks", "leakage", "decisions")


@pytest.fixture(scope="module")
def sweep_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    procs = Processes()
    try:
        server = start_server(procs, root, "sqlite")
        repo = copy_repo(root / "repo")
        for args in (["work-pool", "create", "cpu-pool", "--type", "process"],
                     ["work-pool", "set-concurrency-limit", "cpu-pool", "2"]):
            done = server.cli(*args)
            assert done.returncode == 0, done.stdout + done.stderr
        deploy = server.cli("deploy", "--prefect-file", "deployments/prefect.yaml", "--name", "sweep", cwd=repo,
                            timeout=180)
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        worker_env = server.env | {"FDD_REPO": str(repo), "HOME": str(root / "home"),
                                   "PREFECT_WORKER_QUERY_SECONDS": "2"}
        for name in WORKERS:
            procs.start(root / f"{name}.log", [PREFECT, "worker", "start", "--pool", "cpu-pool", "--limit", "1",
                                               "--name", name], worker_env, root)
        yield server
    finally:
        procs.stop_all()


def _bench(server, name: str, *extra: str) -> dict:
    """bench_method.py --profile smoke into root/<name>-runs and root/<name>-out; its method.json."""
    runs, out = server.root / f"{name}-runs", server.root / f"{name}-out"
    done = subprocess.run([sys.executable, str(BENCH), "--profile", "smoke", "--workdir", str(runs), "--out", str(out),
                           *extra], env=server.env, cwd=REPO, capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)
    logs = "\n".join(tail(p) for p in sorted(server.root.glob("*.log"))) + "\n" + "\n".join(
        tail(p) for p in sorted(runs.glob("*.log")))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs}"
    assert sorted(p.name for p in out.glob("*.png")), "no plot written"
    return json.loads((out / "method.json").read_text())


def _students(runs: Path) -> dict[str, str]:
    """Every trained student's checkpoint hash (its files' names and bytes, fdd_core.store.tree_sha256), by run
    and round: equal hashes are bit-for-bit equal weights."""
    return {str(m.parent.parent.relative_to(runs)): json.loads(m.read_text())["outputs"]["model"]["sha256"]
            for m in sorted(runs.glob("*/rounds/r*/student/MANIFEST.json"))}


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.mark.timeout(1500)
def test_the_sweep_on_two_workers_writes_the_tables_the_sequential_benchmark_writes(sweep_server):
    server = sweep_server
    sequential = _bench(server, "sequential")
    swept = _bench(server, "swept", "--deployment", "fdd/sweep")

    assert [r["row"] for r in sequential["rows"]] == ["plain", "fdd-r1", "budget", "k=1", "k=2"]
    assert all(r["requests"] > 0 and r["train_size"] > 0 for r in sequential["rows"]), sequential["rows"]
    for key in SAME:
        assert swept[key] == sequential[key], key
    # the students themselves: trained in worker processes two at a time, as alone in `fdd run`
    students = _students(server.root / "sequential-runs")
    assert sorted(students) == ["budget-s0/rounds/r0", "fdd-s0/rounds/r0", "fdd-s0/rounds/r1", "k1-s0/rounds/r0",
                                "k2-s0/rounds/r0"], sorted(students)
    assert _students(server.root / "swept-runs") == students

    sweep = server.get("/deployments/name/fdd/sweep")
    runs = server.get("/flow_runs/filter", {"limit": 50, "offset": 0, "deployments": {"id": {"any_": [sweep["id"]]}}})
    by_name = {r["name"]: r for r in runs}
    assert sorted(by_name) == ["budget-s0", "fdd-s0", "k1-s0", "k2-s0"], sorted(by_name)
    assert all(r["state_type"] == "COMPLETED" for r in runs), [(r["name"], r["state_type"]) for r in runs]
    # each worker ran at least one, and none ran one twice (both may try to submit a run: the server lets one
    # move it to Pending and aborts the other; the winner logs "submitted to infrastructure")
    taken = {name: re.findall(r"Flow run '([\w-]+)' submitted to infrastructure",
                              (server.root / f"{name}.log").read_text()) for name in WORKERS}
    assert all(taken.values()) and sorted(sum(taken.values(), [])) == sorted(by_name), taken
    # two ran at once, and budget waited for the FDD run whose spend it uses
    spans = sorted((_time(r["start_time"]), _time(r["end_time"]), r["name"]) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    assert _time(by_name["budget-s0"]["start_time"]) >= _time(by_name["fdd-s0"]["end_time"])


def test_a_bad_value_or_deployment_is_one_line_before_any_run_is_created(sweep_server):
    server = sweep_server
    sweep = server.get("/deployments/name/fdd/sweep")
    before = server.get("/flow_runs/filter", {"limit": 50, "offset": 0, "deployments": {"id": {"any_": [sweep["id"]]}}})
    for extra, line in [
        (["--deployment", "fdd/sweep", "--set", "data.benchmarks=[gsm8kk]"],
         "error: data.benchmarks: unknown benchmark 'gsm8kk'; known: synthetic-test, "),
        (["--deployment", "fdd/nope"], f"--deployment fdd/nope: not found on {server.api}"),
    ]:
        done = subprocess.run([sys.executable, str(BENCH), "--profile", "smoke", "--workdir", str(server.root / "bad"),
                               "--out", str(server.root / "bad-out"), *extra], env=server.env, cwd=REPO, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 1 and done.stderr.startswith(line), done.stdout + done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    after = server.get("/flow_runs/filter", {"limit": 50, "offset": 0, "deployments": {"id": {"any_": [sweep["id"]]}}})
    assert len(after) == len(before), "a refused sweep created runs"
