"""The evaluation and feedback stages: scoring with planted programs (right, wrong, broken), the files both
stages write, end to end on a tiny random student, and `fdd eval` as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fdd_core import synthetic
from fdd_core.evaluate import evaluate_student, score_programs, summarize
from fdd_core.feedback import attempt_rows, run_feedback
from fdd_core.config_files import ConfigError, load_config
from fdd_core.sandbox import Sandbox
from fdd_core.records import Problem
from fdd_core.store import read_jsonl, write_jsonl

from .test_student_inference import make_tiny_student, one_torch_thread  # noqa: F401  (fixture, autouse)

FDD = shutil.which("fdd", path=str(Path(sys.executable).parent)) or "fdd"
FAST = ["inference.max_new_tokens=16", "inference.batch_size=8", "sandbox.workers=2", "sandbox.timeout_s=1"]


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=1.0) as box:
        yield box


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return make_tiny_student(tmp_path_factory.mktemp("student") / "causal")


@pytest.fixture(scope="module")
def test_set():
    return synthetic.make_splits(n_seed=0, n_test=12, seed=0, test_steps=(1, 2, 3))[1]


def problem(i: int, answer: str, question: str = "Ann has 3 apples and buys 4. How many now?") -> Problem:
    return Problem(id=f"p{i}", question=question, answer=answer, source="handmade")


def test_score_programs_with_right_wrong_and_broken_programs(sandbox, test_set):
    synth = test_set[0]  # "Arjun starts with 40 coins ..." (1 step, answer 67)
    problems = [synth, problem(1, "7"), problem(2, "7"), problem(3, "7"), problem(4, "7"), problem(5, "7"),
                problem(6, "$1,000")]
    programs = [synth.solution, "def solution():\n    return 3 + 4", "ans = 8", "ans = (", "ans = 1 / 0", "",
                "ans = 1000.0"]
    texts = ["```python\n" + synth.solution + "\n```", "#### 7", "The answer is 8.", "x", "y", "I think 7",
             "ans = 1000.0"]
    scored = score_programs(problems, programs, sandbox, texts=texts)
    rows = [r.model_dump(mode="json", exclude_unset=True) for r in scored]  # as eval-<benchmark>.jsonl holds them
    assert [r["id"] for r in rows] == [p.id for p in problems]
    assert [r["ok"] for r in rows] == [True, True, False, False, False, False, True]
    assert [r["error"] for r in rows] == [None, None, "wrong_answer", "syntax", "runtime", "no_program", None]
    assert [r["predicted"] for r in rows] == [67, 7, 8, None, None, None, 1000.0]
    assert rows[0]["steps"] == 1 and all("steps" not in r for r in rows[1:])
    assert rows[4]["message"].startswith("ZeroDivisionError")
    assert rows[0]["text"] == texts[0] and "text" not in rows[6]  # raw text kept where it is not the program
    # the chain-of-thought readings, side by side with the program's answer
    assert [r["strict"] for r in rows[:3]] == [None, "7", "8"] and rows[1]["strict_ok"]
    assert rows[5]["flexible"] == "7" and rows[5]["flexible_ok"] and not rows[5]["ok"]
    summary = summarize(scored)
    assert summary["accuracy"] == 3 / 7 and summary["correct"] == 3 and summary["rows"] == 7
    assert summary["errors"] == {"wrong_answer": 1, "syntax": 1, "runtime": 1, "no_program": 1}
    assert summary["by_steps"] == {"1": {"rows": 1, "accuracy": 1.0}}
    assert summary["answer_accuracy"] == {"strict": 1 / 7, "flexible": 3 / 7}


def test_accuracy_by_step_count(sandbox, test_set):
    programs = [p.solution if i % 2 == 0 else "ans = -1" for i, p in enumerate(test_set)]
    summary = summarize(score_programs(test_set, programs, sandbox))
    assert summary["accuracy"] == 0.5 and "answer_accuracy" not in summary
    assert summary["by_steps"] == {str(s): {"rows": 4, "accuracy": 0.5} for s in (1, 2, 3)}


def test_evaluate_student_end_to_end_writes_rows_and_eval_json(tmp_path, student, test_set):
    path = write_jsonl(tmp_path / "heldout.jsonl", test_set)
    # data.benchmarks may mix files (named by their stem) and names; synthetic-test is rebuilt from data.*
    cfg = load_config(None, [*FAST, f"data.benchmarks=['{path}', 'synthetic-test']", "data.n_synthetic_test=8"])
    result = evaluate_student(cfg, student, None, tmp_path / "eval", limit=5)
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert list(result.counts.rows) == ["heldout", "synthetic-test"] == list(report["accuracy"])
    for name in ("heldout", "synthetic-test"):
        rows = read_jsonl(tmp_path / "eval" / f"eval-{name}.jsonl")
        assert result.outputs[f"eval-{name}"] == str(tmp_path / "eval" / f"eval-{name}.jsonl")
        assert len(rows) == 5 == result.counts.rows[name]
        assert report["accuracy"][name] == sum(r["ok"] for r in rows) / 5 == result.counts.accuracy[name]
        assert all(r["steps"] >= 1 and r["error"] in (None, "wrong_answer", "syntax", "runtime", "no_program",
                                                       "no_answer", "forbidden", "timeout") for r in rows)
        assert set(rows[0]) >= {"id", "question", "program", "predicted", "gold", "ok", "error", "steps"}
        assert sum(b["rows"] for b in report["benchmarks"][name]["by_steps"].values()) == 5
    assert [r["id"] for r in read_jsonl(result.outputs["eval-heldout"])] == [p.id for p in test_set[:5]]

    # a list of problems gives the same rows as the file holding them
    again = evaluate_student(cfg, student, {"listed": test_set[:5]}, tmp_path / "again")
    assert read_jsonl(again.outputs["eval-listed"]) == read_jsonl(result.outputs["eval-heldout"])


def test_attempt_rows_follow_the_easy_rule(sandbox, test_set):
    problems = test_set[:4]
    right = [p.solution for p in problems]
    planted = [[right[0]] * 3, [right[1], "ans = -1", right[1]], [right[2], "ans = (", "ans = 0"],
               ["", "ans = 1/0", "y = 1"]]
    rows = [r.model_dump(mode="json") for r in  # as attempts.jsonl holds them
            attempt_rows(problems, planted, sandbox, easy_min_correct=2, round_index=3)]
    assert [r["correct"] for r in rows] == [3, 2, 1, 0]
    assert [r["split"] for r in rows] == ["easy", "easy", "hard", "hard"]
    assert all(r["round"] == 3 and len(r["attempts"]) == 3 for r in rows)
    assert [a["error"] for a in rows[3]["attempts"]] == ["no_program", "runtime", "no_answer"]
    assert rows[1]["attempts"][1] == {"program": "ans = -1", "predicted": -1, "ok": False, "error": "wrong_answer"}
    # what generate_variants reads: the Problem fields and the split
    assert Problem.model_validate({k: rows[0][k] for k in Problem.model_fields}) == problems[0]


def test_run_feedback_end_to_end(tmp_path, student, test_set):
    pool = write_jsonl(tmp_path / "pool.jsonl", test_set[:6])
    cfg = load_config(None, [*FAST, "feedback.samples_per_problem=3", "feedback.easy_min_correct=2"])
    result = run_feedback(cfg, student, pool, tmp_path / "feedback", round_index=1)
    rows = read_jsonl(tmp_path / "feedback" / "attempts.jsonl")
    assert result.outputs["attempts"] == str(tmp_path / "feedback" / "attempts.jsonl")
    assert [r["id"] for r in rows] == [p.id for p in test_set[:6]]
    assert result.counts.model_dump() == {"pool": 6, "easy": sum(r["split"] == "easy" for r in rows),
                                          "hard": sum(r["split"] == "hard" for r in rows)}
    assert result.counts.easy + result.counts.hard == 6
    for r in rows:
        assert len(r["attempts"]) == 3 and r["round"] == 1
        assert r["correct"] == sum(a["ok"] for a in r["attempts"])
        assert r["split"] == ("easy" if r["correct"] >= 2 else "hard")
    # a rule no problem can meet is a config mistake, caught before any generation
    impossible = load_config(None, [*FAST, "feedback.easy_min_correct=2"])
    with pytest.raises(ConfigError, match="easy_min_correct=2 exceeds feedback.samples_per_problem=1"):
        run_feedback(impossible, student, pool, tmp_path / "no", round_index=1)


def fdd(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_torch_thread
    return subprocess.run([FDD, *args], capture_output=True, text=True, env=env, timeout=300)


def test_fdd_eval_prints_the_table_and_writes_rows(tmp_path, student, test_set):
    path = write_jsonl(tmp_path / "test.jsonl", test_set)
    r = fdd("eval", "--student", str(student), "--benchmark", str(path), "--limit", "4", "--out",
            str(tmp_path / "out"), *(arg for s in FAST for arg in ("--set", s)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["benchmark", "rows", "accuracy"]
    assert lines[1].split()[:2] == ["test", "4"] and lines[1].endswith("%")
    assert len(read_jsonl(tmp_path / "out" / "eval-test.jsonl")) == 4
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["accuracy"].keys() == {"test"}


@pytest.mark.parametrize("args, message", [
    (["--student", "/no/such/student", "--benchmark", "gsm8k"], "error: student not found: /no/such/student"),
    (["--benchmark", "gsm9k"], "error: unknown benchmark 'gsm9k'"),
])
def test_fdd_eval_user_mistakes_are_one_error_line(student, args, message):
    r = fdd("eval", *(args if args[0] == "--student" else ["--student", str(student), *args]))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(message), r.stderr


def tree(folder: Path) -> dict[str, str]:
    """Every file under folder (hidden ones included) -> sha256 of its bytes: equal trees are byte-identical."""
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fdd_eval_never_writes_inside_the_model_folder(tmp_path, student, test_set):
    """Issue 17: with no --out, `fdd eval` wrote eval/ inside the model folder, which a run's train stage hashes."""
    path = write_jsonl(tmp_path / "test.jsonl", test_set)
    model = tmp_path / "runs" / "demo" / "rounds" / "r2" / "student" / "model"
    shutil.copytree(student, model)
    before = tree(model)
    sets = [arg for s in [*FAST, f"run.runs_dir={tmp_path / 'runs'}"] for arg in ("--set", s)]
    r = fdd("eval", "--student", str(model), "--benchmark", str(path), "--limit", "3", *sets)
    assert r.returncode == 0, r.stderr
    assert tree(model) == before
    out = tmp_path / "runs" / "eval" / "demo-r2"  # <runs_dir>/eval/<run>-<round>
    assert r.stdout.strip().endswith(f"per-row outputs and eval.json: {out}")
    assert json.loads((out / "eval.json").read_text())["accuracy"].keys() == {"test"}
    # progress reaches the terminal (it went to an unconfigured logger before)
    assert "evaluating" in r.stderr and "evaluate: 3/3 problems" in r.stderr, r.stderr
    # an --out inside the model folder is refused in one line, before anything is written
    r = fdd("eval", "--student", str(model), "--benchmark", str(path), "--out", str(model / "eval"), *sets)
    assert r.returncode == 2 and r.stderr.startswith(f"error: --out {model / 'eval'} is inside the model folder")
    assert len(r.stderr.strip().splitlines()) == 1 and tree(model) == before


def test_fdd_eval_takes_a_hub_id(tmp_path, student, test_set):
    """A Hub id resolves to its snapshot in the Hugging Face cache (offline here: a cache laid out as the hub
    writes it, refs/main naming the snapshot); the snapshot is left byte-identical."""
    repo = tmp_path / "hub" / "models--fdd-test--tiny-student"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(student, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    before = tree(snapshot)
    path = write_jsonl(tmp_path / "test.jsonl", test_set)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    sets = [arg for s in [*FAST, f"run.runs_dir={tmp_path / 'runs'}"] for arg in ("--set", s)]
    r = subprocess.run([FDD, "eval", "--student", "fdd-test/tiny-student", "--benchmark", str(path), "--limit", "2",
                        *sets], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "runs" / "eval" / "fdd-test--tiny-student" / "eval.json").read_text())["accuracy"]
    assert tree(snapshot) == before
    # an id that is not in the cache, offline: one line saying so
    r = subprocess.run([FDD, "eval", "--student", "fdd-test/not-there", "--benchmark", str(path)],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: student not found: fdd-test/not-there is not a folder, "
                                                     "and as a Hub id it could not be had"), r.stderr
