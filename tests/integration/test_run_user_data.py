"""`fdd run` on the user's own problems (issue 18): seeds from a JSONL file with its own column names, a CSV
benchmark evaluated every round and used for decontamination. Real Prefect (its local backend), the offline
teacher over real HTTP, a tiny student on the CPU. The problems are the embedded domain's (the only ones the
offline teacher solves), written to files the way a user's export would be."""

import csv
import json
import re

import pytest

from fdd_core import synthetic
from fdd_core.store import read_jsonl
from fdd_core.user_problems import question_id

from .runs import fdd, small_run

pytestmark = pytest.mark.slow


def _write_csv(path, problems):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Question", "Answer"])
        w.writerows([p.question, p.answer] for p in problems)


def test_a_users_jsonl_seeds_and_csv_benchmark_drive_a_run_and_its_decontamination(tmp_path, teacher_server):
    api_base, _ = teacher_server()
    seeds, tests = synthetic.make_splits(20, 10, 5)
    seed_file = tmp_path / "my_problems.jsonl"
    seed_file.write_text("".join(json.dumps({"problem": p.question, "final_answer": float(p.answer)}) + "\n"
                                 for p in seeds))
    bench = tmp_path / "exam.csv"
    _write_csv(bench, tests)
    args = small_run(tmp_path, api_base, "run.rounds=1", f"data.seed_set={seed_file}",
                     "data.seed_columns.question=problem", "data.seed_columns.answer=final_answer",
                     f"data.user_benchmarks.exam.path={bench}", "data.user_benchmarks.exam.question=Question",
                     "data.user_benchmarks.exam.answer=Answer", "data.benchmarks=[exam]",
                     "feedback.similar_per_hard=1", "sandbox.workers=2")
    first = fdd(tmp_path, args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run_dir = tmp_path / "runs" / "r"
    # the seeds are the user's problems, with ids from their text
    seed_rows = read_jsonl(run_dir / "data" / "seed.jsonl")
    assert [(r["id"], r["answer"]) for r in seed_rows] == [
        (question_id("my_problems", p.question), p.answer) for p in seeds]
    # the CSV benchmark is evaluated every round and reported
    report = json.loads((run_dir / "report.json").read_text())
    assert [sorted(row["accuracy"]) for row in report["rounds"]] == [["exam"], ["exam"]]
    assert json.loads((run_dir / "rounds" / "r1" / "eval" / "eval.json").read_text())["benchmarks"]["exam"]["rows"] == 10
    accepted = read_jsonl(run_dir / "rounds" / "r0" / "variants" / "accepted.jsonl")
    assert accepted, "the offline teacher's variants were accepted"

    # A user adds to the exam a problem close to one the teacher wrote (other numbers): the rerun (same run, same
    # store: no reply bought again) redoes the variants stage and drops that variant as contaminated by it.
    variant = accepted[0]
    close = re.sub(r"\d+", lambda m: str(int(m.group()) + 1), variant["question"], count=2)
    assert close != variant["question"]
    with bench.open("a", newline="") as f:
        csv.writer(f).writerow([close, "1"])
    second = fdd(tmp_path, args)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "this invocation: 0 new teacher replies bought" in second.stdout
    decisions = {d["candidate_id"]: d for d in read_jsonl(run_dir / "rounds" / "r0" / "variants" / "decisions.jsonl")}
    dropped = decisions[variant["id"]]
    assert dropped["reason"] == "contaminated" and dropped["detail"].startswith(question_id("exam", close))
    assert variant["id"] not in {r["id"] for r in read_jsonl(run_dir / "rounds" / "r0" / "variants" / "accepted.jsonl")}
    assert json.loads((run_dir / "rounds" / "r1" / "eval" / "eval.json").read_text())["benchmarks"]["exam"]["rows"] == 11
