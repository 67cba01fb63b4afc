"""`fdd run` on GSM8K seeds with the offline teacher: the report's baseline row (the base student before round 0),
and a generation stage that produced nothing ending the run with its reason instead of an identical retraining.
Real Prefect (its local backend), the offline teacher over real HTTP, a tiny student on the CPU."""

import json
import os
import subprocess

import pytest

from .conftest import FDD, REPO

pytestmark = pytest.mark.slow


def test_gsm8k_run_reports_its_baseline_and_stops_when_the_teacher_writes_nothing_usable(tmp_path, teacher_server,
                                                                                         data_dir):
    api_base, _ = teacher_server("--error-rate", "0")
    sets = [
        f"run.runs_dir={tmp_path / 'runs'}", "run.name=gsm", "run.rounds=2", "data.seed_set=gsm8k-train",
        "data.n_seed=12", "data.benchmarks=[gsm8k]", "data.eval_limit=4", f"data.data_dir={data_dir}",
        "data.source=local", "teacher.k_solutions=2", "teacher.model=openai/fdd-offline", f"teacher.api_base={api_base}",
        f"teacher.cache_path={tmp_path / 'teacher.sqlite'}", "training.max_steps=4", "training.batch_size=8",
        "inference.max_new_tokens=24", "sandbox.workers=2", "run.baseline=true",  # a tiny student's base: asked for
    ]
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([FDD, "run", *[a for s in sets for a in ("--set", s)]], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    run_dir = tmp_path / "runs" / "gsm"
    report = json.loads((run_dir / "report.json").read_text())
    # the base student, evaluated before round 0 on the same problems, is the report's first row
    assert report["baseline"]["model"] == str(run_dir / "base")
    assert set(report["baseline"]["accuracy"]) == {"gsm8k"}
    assert json.loads((run_dir / "baseline" / "eval.json").read_text())["benchmarks"]["gsm8k"]["rows"] == 4
    assert "| base |" in (run_dir / "report.md").read_text()
    assert any(line.split()[:1] == ["base"] for line in r.stdout.splitlines()), r.stdout[-2000:]
    # the offline teacher cannot vary GSM8K problems: round 0's variants stage accepted nothing, so the run ends
    # there with the reason, rather than retraining round 1 on the same set
    variants = json.loads((run_dir / "rounds" / "r0" / "variants" / "MANIFEST.json").read_text())["result"]["counts"]
    n = variants["candidates"]
    assert n > 0 and variants["accepted"] == 0 and variants["dropped"]["parse_error"] == n
    assert f"stopped after round 0: the teacher wrote nothing usable: {n} of {n} dropped as parse_error" in r.stdout
    assert [row["round"] for row in report["rounds"]] == [0]
    assert not (run_dir / "rounds" / "r1").exists()
