"""`fdd run` before anything starts: the --dry-run forecast of teacher spend, and a missing API key as one error line.

Both run the installed `fdd` in a subprocess, in a fresh folder with its own PREFECT_HOME: neither may start
Prefect, send a teacher request or leave a run directory behind.
"""

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fdd_core.config_files import load_config

FDD = shutil.which("fdd", path=str(Path(sys.executable).parent)) or "fdd"
NO_KEY_VAR = "FDD_TEST_NO_SUCH_KEY"
PRICED = ["--set", "teacher.model=openai/gpt-4o-mini", "--set", "teacher.api_base=http://127.0.0.1:9",
          "--set", "budget.max_usd=0.01"]


def fdd(tmp_path, *args, unset=(), env=None):
    """(completed process, wall seconds, CPU seconds of the child) of `fdd ARGS` in tmp_path."""
    full_env = {k: v for k, v in os.environ.items() if k not in (NO_KEY_VAR, *unset)}
    full_env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    r = subprocess.run([FDD, *args], capture_output=True, text=True, env=full_env, cwd=tmp_path, timeout=300)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return r, wall, cpu


def assert_quick(wall: float, cpu: float, limit: float = 5.0) -> None:
    """Under `limit` seconds. The CPU time is the work the command did (Prefect's start alone is more); the wall
    clock is held to the limit too unless other work crowds the machine (load above its cores)."""
    assert cpu < limit, f"{cpu:.1f} s of CPU"
    loaded = os.getloadavg()[0] > (os.cpu_count() or 1)
    assert wall < (60.0 if loaded else limit), f"{wall:.1f} s wall clock"


def assert_nothing_started(tmp_path: Path, r) -> None:
    assert not (tmp_path / "runs").exists(), "a run directory was written"
    assert not (tmp_path / "prefect-home").exists(), "Prefect started"
    output = r.stdout + r.stderr
    for word in ("Flow run", "Task run", "prefect", "Traceback"):
        assert word not in output, output[-2000:]


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The forecast table's lines by their first words (round and stage, or 'total')."""
    rows = {}
    for line in stdout.splitlines():
        words = line.split()
        if words and (words[0].isdigit() or words[0] == "total"):
            rows[" ".join(words[:3]) if words[0].isdigit() else "total"] = words
    return rows


def test_dry_run_of_the_demo_prints_the_forecast_and_starts_nothing(tmp_path):
    r, wall, cpu = fdd(tmp_path, "run", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert_quick(wall, cpu, limit=10.0)
    assert_nothing_started(tmp_path, r)
    assert "dry run: nothing started" in r.stdout
    assert "MAX = upper bound" in r.stdout and "EXP = expected" in r.stdout
    rows = table_rows(r.stdout)
    # the demo: 400 seeds x 4 solutions, then 3 rounds of variants and votes
    assert rows["0 generate_solutions solutions"][4] == "1,600"
    assert {k for k in rows if k != "total"} == {"0 generate_solutions solutions"} | {
        f"{n} generate_variants {part}" for n in range(3) for part in ("variants", "votes")}
    assert "$0.0000" in rows["total"] and "unknown" not in r.stdout  # the offline teacher: a known $0
    assert "budget: none set" in r.stdout
    assert "warning" not in r.stdout


def test_dry_run_of_a_priced_model_gives_a_cost_and_where_the_budget_stops(tmp_path):
    r, wall, cpu = fdd(tmp_path, "run", "--dry-run", *PRICED)
    assert r.returncode == 0, r.stderr
    assert_nothing_started(tmp_path, r)
    total = table_rows(r.stdout)["total"]
    costs = [w for w in total if w.startswith("$")]
    assert len(costs) == 2 and all(float(c[1:]) > 0 for c in costs), total  # MAX cost, EXP cost
    max_cost, expected_cost = (float(c[1:]) for c in costs)
    assert expected_cost < max_cost
    assert "litellm's price map: $0.15 per 1M prompt tokens" in r.stdout
    budget = [line for line in r.stdout.splitlines() if line.startswith("budget:")]
    assert len(budget) == 1 and "budget.max_usd=$0.01 can stop this run" in budget[0]
    assert "in round 0 generate_solutions (solutions) at the earliest" in budget[0]
    assert "warning" not in r.stdout  # api_base with no key variable: nothing missing


def test_dry_run_of_an_unpriced_model_says_unknown_and_warns_of_a_missing_key(tmp_path):
    r, _, _ = fdd(tmp_path, "run", "--dry-run", "--set", "teacher.model=hosted_vllm/fdd-test-unpriced",
                  "--set", f"teacher.api_key_env={NO_KEY_VAR}", "--set", "budget.max_usd=5")
    assert r.returncode == 0, r.stderr
    assert_nothing_started(tmp_path, r)
    total = table_rows(r.stdout)["total"]
    assert total.count("unknown") == 2 and not any(w.startswith("$") for w in total), total
    assert "budget.max_usd=$5 cannot be enforced" in r.stdout
    warnings = [line for line in r.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and NO_KEY_VAR in warnings[0]


@pytest.mark.parametrize("env", [{}, {NO_KEY_VAR: ""}], ids=["unset", "empty"])
def test_missing_key_is_one_error_line_before_anything_starts(tmp_path, env):
    r, wall, cpu = fdd(tmp_path, "run", "--set", "teacher.model=gpt-4o-mini",
                       "--set", f"teacher.api_key_env={NO_KEY_VAR}", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert_quick(wall, cpu)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and NO_KEY_VAR in lines[0]
    assert r.stdout == ""
    assert_nothing_started(tmp_path, r)
    assert not list(tmp_path.iterdir()), "the run left files behind"


def test_missing_provider_key_of_a_paid_model_is_one_error_line(tmp_path):
    r, wall, cpu = fdd(tmp_path, "run", "--set", "teacher.model=gpt-4o-mini", unset=("OPENAI_API_KEY",))
    assert r.returncode == 2, r.stdout + r.stderr
    assert_quick(wall, cpu)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "OPENAI_API_KEY" in lines[0], r.stderr
    assert_nothing_started(tmp_path, r)


def test_a_dollar_budget_on_an_unpriced_model_is_one_error_line_before_anything_starts(tmp_path):
    r, wall, cpu = fdd(tmp_path, "run", "--set", "teacher.model=openai/my-own-model",
                       "--set", "teacher.api_base=http://127.0.0.1:9/v1", "--set", "budget.max_usd=1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert_quick(wall, cpu)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "budget.max_usd" in lines[0], r.stderr
    assert_nothing_started(tmp_path, r)


def test_gsm8k_seeds_on_the_default_profile_is_one_line_before_prefect(tmp_path):
    """Issue 17: `--set data.seed_set=gsm8k-train` kept the demo's synthetic-test benchmark and failed with a
    traceback after Prefect's server had started."""
    r, _, _ = fdd(tmp_path, "run", "--set", "data.seed_set=gsm8k-train")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (
        "error: --set data.seed_set=gsm8k-train: data.seed_set=gsm8k-train cannot go with synthetic-test in "
        "data.benchmarks (the held-out synthetic set exists only with data.seed_set: synthetic); set the benchmarks "
        "too, e.g. --set 'data.benchmarks=[gsm8k]'")
    assert_nothing_started(tmp_path, r)


def test_a_pretrained_student_with_the_tiny_students_settings_is_warned(tmp_path):
    """Issue 17: --set student.model=... kept lr 1e-3 and 800 steps of 32 without a word (9 hours on 2 cores)."""
    r, _, _ = fdd(tmp_path, "run", "--dry-run", "--set", "student.model=HuggingFaceTB/SmolLM2-135M-Instruct")
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning: student.model=")]
    assert len(warnings) == 1 and "training.learning_rate=0.0012" in warnings[0] and "--config pretrained" in warnings[0]
    # the pretrained profile's own settings draw no warning
    r, _, _ = fdd(tmp_path, "run", "--dry-run", "--config", "pretrained")
    assert r.returncode == 0, r.stderr
    assert "warning: student.model=" not in r.stderr


def test_a_pretrained_student_on_the_demos_training_settings_is_warned_of_both(tmp_path):
    """The demo profile's rate and steps are for random weights: a hub model given them is named with both."""
    r, _, _ = fdd(tmp_path, "run", "--dry-run", "--set", "student.model=Qwen/Qwen2.5-0.5B")
    assert r.returncode == 0, r.stderr
    assert_nothing_started(tmp_path, r)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    demo = load_config("demo").training
    assert len(warnings) == 1 and f"training.learning_rate={demo.learning_rate:g}" in warnings[0], r.stderr
    assert f"training.max_steps={demo.max_steps} at training.batch_size={demo.batch_size}" in warnings[0], warnings
