"""Stage caching and retries under real Prefect (its local backend, a temporary server per process).

A finished `fdd run` started again with settings that change only speed (teacher concurrency, sandbox workers,
inference batch size, another path to the same response store) redoes nothing; a setting that changes the student
(training.max_steps) retrains it. A stage that fails on a bad setting or bad data is run once, not retried."""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from .conftest import FDD, REPO, read_log
from .test_run_resume import env, run_args, stage_manifests

pytestmark = pytest.mark.slow

SPEED_ONLY = ["teacher.concurrency=3", "sandbox.workers=1", "inference.batch_size=7"]


def fdd_run(tmp_path, api_base, *sets: str) -> subprocess.CompletedProcess:
    args = run_args(tmp_path, api_base) + ["--set", "run.rounds=1"] + [a for s in sets for a in ("--set", s)]
    done = subprocess.run([FDD, *args], cwd=REPO, env=env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def bought(done: subprocess.CompletedProcess) -> int:
    found = re.search(r"this invocation: (\d+) new teacher replies bought", done.stdout)
    assert found, done.stdout[-2000:]
    return int(found[1])


def task_states(done: subprocess.CompletedProcess, task: str) -> list[str]:
    """The final state of each run of `task` in the invocation's Prefect log: Completed, Cached, Failed..."""
    log = done.stdout + done.stderr
    return re.findall(rf"Task run '{re.escape(task)}-[^']*' - Finished in state (\w+)", log)


def test_speed_settings_reuse_a_finished_run_and_training_settings_redo_training(tmp_path, teacher_server):
    api_base, server_log = teacher_server("--error-rate", "0.1")
    run_dir = tmp_path / "runs" / "resume"
    first = fdd_run(tmp_path, api_base)
    assert bought(first) > 0
    assert task_states(first, "train") == ["Completed", "Completed"], first.stdout[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    manifests = stage_manifests(run_dir)
    assert {"rounds/r0/solutions/MANIFEST.json", "rounds/r0/variants/MANIFEST.json",
            "rounds/r1/student/MANIFEST.json", "rounds/r1/eval/MANIFEST.json"} <= set(manifests)
    requests = len(read_log(server_log))

    # the same response store at another path, and speed-only settings: nothing is redone, nothing bought
    moved = tmp_path / "moved" / "teacher.sqlite"
    moved.parent.mkdir()
    shutil.copy2(tmp_path / "teacher.sqlite", moved)
    again = fdd_run(tmp_path, api_base, *SPEED_ONLY, f"teacher.cache_path={moved}")
    assert bought(again) == 0
    assert len(read_log(server_log)) == requests, "the re-run sent teacher requests"
    assert task_states(again, "train") == ["Cached", "Cached"], (again.stdout + again.stderr)[-4000:]
    for task in ("generate-solutions", "evaluate", "feedback", "generate-variants"):
        assert task_states(again, task) and set(task_states(again, task)) == {"Cached"}, task
    assert stage_manifests(run_dir) == manifests, "a speed-only setting redid a stage"
    rerun_report = json.loads((run_dir / "report.json").read_text())
    assert rerun_report["rounds"] == report["rounds"]
    assert rerun_report["totals"] == report["totals"]

    # fewer training steps: another student, trained again (and evaluated again); the teacher's seed work is kept
    fewer = fdd_run(tmp_path, api_base, *SPEED_ONLY, f"teacher.cache_path={moved}", "training.max_steps=20")
    assert task_states(fewer, "train")[0] == "Completed", (fewer.stdout + fewer.stderr)[-4000:]
    redone = stage_manifests(run_dir)
    assert redone["rounds/r0/student/MANIFEST.json"] != manifests["rounds/r0/student/MANIFEST.json"]
    assert redone["rounds/r0/eval/MANIFEST.json"] != manifests["rounds/r0/eval/MANIFEST.json"]
    assert redone["rounds/r0/solutions/MANIFEST.json"] == manifests["rounds/r0/solutions/MANIFEST.json"]
    trained = json.loads((run_dir / "rounds" / "r0" / "student" / "MANIFEST.json").read_text())
    assert trained["result"]["counts"]["steps"] == 20, trained["result"]["counts"]


# One process, one temporary Prefect server: a flow runs generate_solutions_task three times, each with a stage
# that fails its own way, counting how often the stage was entered and how long each task took.
FAILING_STAGES = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path

    from prefect import flow

    import tasks.stages as stages
    from fdd_core.config import FDDConfig

    tmp = Path(sys.argv[1])
    real, entered, case = stages.generate_solutions, [], None

    def counted(*args, **kwargs):
        entered.append(case)
        if case == "transient":
            raise ConnectionError("the teacher's host went away")
        return real(*args, **kwargs)

    stages.generate_solutions = counted  # the task's body looks the stage up in its module when it runs
    good = tmp / "problems.jsonl"
    good.write_text(json.dumps({"id": "p1", "question": "What is 2 + 3?", "answer": "5", "source": "test"}) + "\\n")
    bad = tmp / "bad.jsonl"
    bad.write_text(json.dumps({"id": "p1", "question": "What is 2 + 3?"}) + "\\n")  # no answer: DataFileError
    base = {"run": {"runs_dir": str(tmp / "runs")}, "teacher": {"model": "openai/fdd-offline",
            "api_base": "http://127.0.0.1:9/v1", "cache_path": str(tmp / "teacher.sqlite")}}
    no_key = {**base, "teacher": {**base["teacher"], "api_key_env": "FDD_TEST_KEY_THAT_IS_NOT_SET"}}
    cases = {"config": (no_key, good), "data": (base, bad), "transient": (base, good)}

    @flow
    def failing() -> dict:
        global case
        seen = {}
        for case, (config, problems) in cases.items():
            task = stages.generate_solutions_task
            if case == "transient":
                task = task.with_options(retry_delay_seconds=0)  # the retry condition stays; no 20 s of waiting
            started = time.monotonic()
            state = task(FDDConfig.model_validate(config), str(problems), str(tmp / case), return_state=True)
            seen[case] = {"entered": entered.count(case), "seconds": time.monotonic() - started,
                          "failed": state.is_failed(),
                          "error": type(state.result(raise_on_failure=False)).__name__}
        return seen

    print("RESULT " + json.dumps(failing()))
""")


def test_a_stage_failing_on_a_bad_setting_or_bad_data_runs_once(tmp_path):
    environment = env(tmp_path)
    environment.pop("FDD_TEST_KEY_THAT_IS_NOT_SET", None)
    done = subprocess.run([sys.executable, "-c", FAILING_STAGES, str(tmp_path)], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    # a missing API key (TeacherConfigError) and a problem row without its answer (DataFileError): once, at once
    assert seen["config"] == {**seen["config"], "entered": 1, "failed": True, "error": "TeacherConfigError"}
    assert seen["data"] == {**seen["data"], "entered": 1, "failed": True, "error": "DataFileError"}
    for case in ("config", "data"):
        assert seen[case]["seconds"] < 10, seen  # a retry would wait retry_delay_seconds=10 first
    # a transient failure still gets the task's retries: 1 run + 2 retries
    assert seen["transient"] == {**seen["transient"], "entered": 3, "failed": True, "error": "ConnectionError"}
    log = done.stdout + done.stderr
    assert "TeacherConfigError" in log and "FDD_TEST_KEY_THAT_IS_NOT_SET" in log
