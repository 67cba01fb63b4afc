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


# check-data reads a file it cannot trust: bounded, one line for each way it can be wrong (issue 14).
GOOD_ROW = '{"question": "q", "program": "ans = 1", "answer": 1}\n'


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD_ROW + '{"question": "q", "program": "ans = 1", "answer": 1, "meta": ' + "[" * 100_000 + "]" * 100_000
         + "}\n", ":2: nested deeper than 16 levels"),
        (GOOD_ROW + '{"question": "q", "program": "ans = 1", "answer": NaN}\n', ":2: NaN is not a number JSON allows"),
        ('{"question": "q", "program": "ans = 1", "answer": -Infinity}\n', ":1: -Infinity is not a number JSON allows"),
        ('{"question": "q", "program": "ans = 1", "answer": 1e400}\n', ":1: 1e400 is beyond a float's range"),
        (GOOD_ROW * 2 + '{"question": "' + "x" * (2 << 20) + '"}\n', ":3: line longer than 1,048,576 bytes"),
    ],
    ids=["deep nesting", "NaN", "Infinity", "float overflow", "huge line"],
)
@pytest.mark.robustness
def test_check_data_hostile_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "hostile.jsonl"
    path.write_text(content)
    out = tmp_path / "results.jsonl"
    r = fdd("check-data", str(path), "--out", str(out))
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip() == f"error: {path}{message}"
    assert "passed" not in r.stdout and not out.exists()


@pytest.mark.robustness
def test_check_data_on_a_device_or_a_pipe_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block until someone writes
    for path, kind in (("/dev/zero", "a character device"), (str(fifo), "a pipe"), (str(tmp_path), "a folder")):
        r = subprocess.run([FDD, "check-data", path], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.strip() == f"error: {path}: {kind}, not a JSONL file"


@pytest.mark.robustness
def test_check_data_unwritable_out_fails_before_any_program_runs(tmp_path):
    rows = write_rows(tmp_path / "in.jsonl", [{"question": "q", "program": "while True:\n    pass", "answer": 1}] * 4)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out, why in ((blocker / "results.jsonl", f"cannot write there ({blocker} is not a folder)"),
                     (tmp_path, "is a folder")):
        r = fdd("check-data", str(rows), "--out", str(out), "--set", "sandbox.timeout_s=5")
        assert r.returncode == 2
        assert r.stderr.strip().startswith(f"error: --out {out}: {why}"), r.stderr[-2000:]
        assert len(r.stderr.strip().splitlines()) == 1
        assert "passed" not in r.stdout  # nothing ran: the 4 x 5 s of programs were not spent first


@pytest.mark.robustness
def test_check_data_hostile_rows_leave_the_next_rows_results_unchanged(tmp_path):
    """One sandbox worker, so every row runs where the hostile rows before it ran; the command survives them."""
    from tests.integration.test_sandbox_hostile import FOLLOW_UP, TAMPERING

    rows = []
    for hostile, probe, expected in TAMPERING.values():
        rows += [{"question": "hostile", "program": hostile, "answer": 0},
                 {"question": "probe", "program": probe, "answer": expected},
                 {"question": "follow-up", "program": FOLLOW_UP, "answer": 45}]
    out = tmp_path / "results.jsonl"
    r = fdd("check-data", str(write_rows(tmp_path / "in.jsonl", rows)), "--out", str(out),
            "--set", "sandbox.workers=1")
    assert r.returncode == 0, r.stderr[-2000:]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == len(rows)
    for name, probe, follow_up in zip(TAMPERING, results[1::3], results[2::3]):
        assert probe["ok"] and follow_up["ok"], (name, probe, follow_up)
