"""The `fdd` command as a user runs it: the installed console script, in a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FDD = shutil.which("fdd", path=str(Path(sys.executable).parent)) or "fdd"


def fdd(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([FDD, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_help_explains_the_commands():
    r = fdd("--help")
    assert r.returncode == 0
    for word in ("Feedback-Driven Distillation", "check-data", "benchmarks"):
        assert word in r.stdout


def test_check_data_sample_reports_the_rows_that_fail_on_purpose():
    r = fdd("check-data")
    assert r.returncode == 0, r.stderr
    assert "6 passed, 2 failed" in r.stdout.splitlines()
    assert "wrong_answer: 1" in r.stdout and "runtime: 1" in r.stdout


def test_check_data_counts_each_error_kind_and_writes_rows(tmp_path):
    rows = [
        {"question": "q", "program": "ans = 2 + 2", "answer": 4},
        {"question": "q", "program": "def solution():\n    return 1/4", "answer": "25%"},
        {"question": "q", "program": "ans = 5", "answer": "$5.00"},
        {"question": "q", "program": "ans = (", "answer": 1},
        {"question": "q", "program": "import os\nans = 1", "answer": 1},
        {"question": "q", "program": "x = 1", "answer": 1},
        {"question": "q", "program": "ans = 3", "answer": 4},
        {"question": "q", "program": "while True:\n    pass", "answer": 1},
    ]
    out = tmp_path / "results.jsonl"
    r = fdd("check-data", str(write_rows(tmp_path / "in.jsonl", rows)), "--out", str(out),
            "--set", "sandbox.timeout_s=1")
    assert r.returncode == 0, r.stderr
    assert "2 passed, 6 failed" in r.stdout.splitlines()
    for kind in ("syntax: 1", "forbidden: 1", "no_answer: 1", "wrong_answer: 2", "timeout: 1"):
        assert kind in r.stdout
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["index"] for x in results] == list(range(8))
    assert results[0] == {"index": 0, "ok": True, "predicted": 4, "expected": 4, "error": None}
    assert results[6]["error"] == "wrong_answer" and results[6]["predicted"] == 3
    # 25% and 0.25 are not the same answer: percentages normalise to their number.
    assert results[1]["ok"] is False


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"question": "q", "program": "ans=1", "answer": 1}\n{"question": "q", "answer": 1}\n', ":2: missing key 'program'"),
        ('{"question": "q", "program": "ans=1", "answer": 1}\nnot json\n', ":2: not valid JSON (Expecting value)"),
        ('{"question": "q", "program": "ans=1", "answer": [1]}\n', ":1: 'answer' must be a number or a string, got list"),
        ('[1, 2]\n', ":1: expected a JSON object, got list"),
    ],
)
@pytest.mark.robustness
def test_check_data_malformed_record_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    r = fdd("check-data", str(path))
    assert r.returncode != 0
    assert r.stderr.strip().startswith(f"error: {path}{message}")
    assert len(r.stderr.strip().splitlines()) == 1
    assert "passed" not in r.stdout  # nothing ran on a file that did not validate


@pytest.mark.robustness
def test_check_data_unreadable_file(tmp_path):
    r = fdd("check-data", str(tmp_path / "missing.jsonl"))
    assert r.returncode != 0
    assert r.stderr.startswith(f"error: {tmp_path / 'missing.jsonl'}: cannot read file")


@pytest.mark.robustness
def test_bad_config_override_is_one_line():
    r = fdd("check-data", "--set", "sandbox.timeout=3")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: --set sandbox.timeout=3: sandbox.timeout: unknown key (did you mean 'sandbox.timeout_s'?)"
    )


def test_benchmarks_lists_rows_and_origin(data_dir):
    r = fdd("benchmarks", "--json", env={"FDD_DATA_DIR": str(data_dir)})
    assert r.returncode == 0, r.stderr
    listed = {row["benchmark"]: row for row in json.loads(r.stdout)}
    assert listed["gsm8k"]["rows"] == 1319 and listed["gsm-hard"]["rows"] == 1319
    assert listed["gsm8k-train"]["rows"] == 7473
    assert listed["gsm8k"]["origin"].startswith(str(data_dir))


@pytest.mark.slow
def test_gsm_hard_reference_programs_all_pass_check_data(data_dir, tmp_path):
    rows = [json.loads(line) for line in (data_dir / "gsm-hard" / "gsmhardv2.jsonl").read_text().splitlines()]
    path = write_rows(tmp_path / "gsm-hard.jsonl",
                      ({"question": r["input"], "program": r["code"], "answer": r["target"]} for r in rows))
    r = fdd("check-data", str(path))
    assert r.returncode == 0, r.stderr
    assert "1319 passed, 0 failed" in r.stdout.splitlines()
