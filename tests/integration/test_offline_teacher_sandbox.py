"""The offline teacher's replies checked by running them: their programs in the real sandbox (worker processes),
determinism across processes, and GSM8K train solved from the shared data's reference book."""

import json
import os
import random
import subprocess
import sys

import pytest

from fdd_core import synthetic
from fdd_core.sandbox import run_programs
from fdd_core.teacher.offline import OfflineTeacher, corrupt_program, program_from_solution
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import load_prompt
from tests.unit.test_offline_teacher import ask, problems


def run(program: str):
    """The program's answer, run in the sandbox as the product runs it (None when it fails)."""
    result = run_programs([program])[0]
    return result.answer if result.ok else None


def same(value, gold) -> bool:
    try:
        return abs(float(value) - float(str(gold).replace(",", ""))) <= 1e-4
    except (TypeError, ValueError):
        return False


def test_solve_replies_for_synthetic_problems_parse_and_are_right():
    teacher = OfflineTeacher(error_rate=0.0)
    for question, _, answer in problems(80):
        text = ask(teacher, "solve", question)
        parsed = parse_reply(text, "solve")
        assert parsed.ok, text
        assert run(parsed.program) == answer
        assert text.rstrip().endswith(f"The answer is {answer}.")


@pytest.mark.parametrize("kind", ["harder", "similar"])
def test_variants_parse_are_right_and_have_more_or_the_same_steps(kind):
    teacher = OfflineTeacher(error_rate=0.0)
    for question, program, _ in problems(60, seed=1):
        parsed = parse_reply(ask(teacher, kind, question), kind)
        assert parsed.ok, parsed.raw
        new = synthetic.parse_question(parsed.question)
        assert new is not None, parsed.question
        assert run(parsed.program) == synthetic.answer_of(new)
        before, after = synthetic.program_steps(program), synthetic.program_steps(parsed.program)
        assert after > before if kind == "harder" else after == before


def test_replies_are_deterministic_across_instances_and_processes():
    question = problems(1)[0][0]
    a, b = OfflineTeacher(0.3, seed=7), OfflineTeacher(0.3, seed=7)
    for kind in ("solve", "harder", "similar"):
        assert [ask(a, kind, question, s) for s in range(5)] == [ask(b, kind, question, s) for s in range(5)]
    # Another interpreter with another str-hash seed gives the same reply: no hash() anywhere.
    code = (
        "import json, sys\nfrom fdd_core.teacher.offline import OfflineTeacher\n"
        "from fdd_core.teacher.prompts import load_prompt\n"
        "messages = load_prompt('harder').messages(sys.argv[1])\n"
        "print(json.dumps(OfflineTeacher(0.3, seed=7).reply(messages, 3, 'harder')))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, question], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ask(a, "harder", question, 3)
    # The teacher's seed and the sample index both matter.
    assert len({ask(OfflineTeacher(0.0, seed=s), "similar", question) for s in range(6)}) > 1
    assert len({ask(a, "similar", question, s) for s in range(6)}) > 1


def classify(kind: str, text: str, question: str, answer: int) -> str:
    parsed = parse_reply(text, kind)
    if not parsed.ok:
        return "malformed"
    if kind == "solve":
        return "right" if run(parsed.program) == answer else "wrong"
    new = synthetic.parse_question(parsed.question)
    return "right" if new is not None and run(parsed.program) == synthetic.answer_of(new) else "wrong"


def test_error_rate_gives_wrong_and_malformed_replies_in_the_right_shares():
    teacher = OfflineTeacher(error_rate=0.2, seed=3)
    counts = {"right": 0, "wrong": 0, "malformed": 0}
    reasons = set()
    items = problems(100, seed=2)
    for i in range(500):
        question, _, answer = items[i % 100]
        kind = ("solve", "harder", "similar")[i % 3]
        text = ask(teacher, kind, question, i // 100)
        outcome = classify(kind, text, question, answer)
        counts[outcome] += 1
        if outcome == "malformed":
            reasons.add(parse_reply(text, kind).reason)
    assert 30 <= counts["wrong"] <= 70, counts  # 10% of 500, within about 3 sd
    assert 30 <= counts["malformed"] <= 70, counts
    assert all(reasons) and len(reasons) >= 3, reasons  # no code, cut-off fence, no Question line


def test_samples_of_one_request_can_differ_in_correctness():
    teacher = OfflineTeacher(error_rate=0.5)
    question, _, answer = problems(1, seed=4)[0]
    outcomes = {classify("solve", ask(teacher, "solve", question, s), question, answer) for s in range(40)}
    assert outcomes == {"right", "wrong", "malformed"}


def test_corrupted_programs_still_run_but_give_another_answer():
    rng = random.Random(0)
    for _, program, answer in problems(100, seed=5):
        wrong = corrupt_program(program, rng)
        assert run(wrong) is not None and run(wrong) != answer, wrong


def test_gsm8k_solution_programs_handle_percent_commas_dollars_and_late_answers():
    solution = (
        "Half is 5*.5 = <<5*.5=2.5>>2.5.\nA tenth of 1,200 is $<<1/10*1,200=120>>120.\n"
        "That is 120+2.5 = <<120+2.5=122.5>>122.5 and 10% of it is <<10%*122.5=12.25>>12.25.\n"
        "So the total is 12.25 * 4 = 49 dollars.\n#### 49"
    )
    program = program_from_solution(solution, "question with 5 and 1,200")
    assert run(program) == 49
    assert "v3 = v2+v1" in program  # later uses of earlier results are variables


def test_gsm8k_train_solve_through_the_reference_book_matches_gold(data_dir):
    path = data_dir / "gsm8k" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    teacher = OfflineTeacher(error_rate=0.0, reference=path)
    right = 0
    for row in rows:
        parsed = parse_reply(ask(teacher, "solve", row["question"]), "solve")
        right += parsed.ok and same(run(parsed.program), row["answer"].split("####")[-1].strip())
    assert len(rows) == 7473
    assert right / len(rows) >= 0.99, right


def test_samples_of_one_problem_are_several_reasoning_paths_with_one_answer():
    from fdd_core.teacher.offline import PATH_STYLES, reasoning_path

    problem = synthetic.make_splits(n_seed=1, n_test=0, seed=3)[0][0]
    paths = [reasoning_path(problem.solution, style) for style in range(PATH_STYLES)]
    assert len(set(paths)) == PATH_STYLES
    assert {run(p) for p in paths} == {int(problem.answer)}
    teacher = OfflineTeacher(error_rate=0.0)
    messages = load_prompt("solve").messages(problem.question)
    programs = {parse_reply(teacher.reply(messages, i, "solve"), "solve").program for i in range(12)}
    assert len(programs) >= 3

