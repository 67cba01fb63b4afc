"""The offline teacher: right answers for synthetic and GSM8K-train problems, its damage shares,
determinism, the request kind read from data (never from the prompt's text), and its litellm provider
(in-process, no network)."""

import asyncio
import json
import os
import random
import subprocess
import sys

import pytest

from fdd_core import synthetic
from fdd_core.teacher.offline import (
    OfflineTeacher,
    corrupt_program,
    evaluate,
    kind_from_headers,
    program_from_solution,
    register_offline_provider,
)
from fdd_core.sandbox import run_programs
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import KIND_HEADER, load_prompt


def run(program: str):
    """The program's answer, run in the sandbox as the product runs it (None when it fails)."""
    result = run_programs([program])[0]
    return result.answer if result.ok else None


def same(value, gold) -> bool:
    try:
        return abs(float(value) - float(str(gold).replace(",", ""))) <= 1e-4
    except (TypeError, ValueError):
        return False


def problems(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        question, program, answer, _ = synthetic.generate_problem(rng, rng.randint(1, 6), rng.randint(0, 2))
        out.append((question, program, answer))
    return out


def ask(teacher: OfflineTeacher, kind: str, question: str, sample: int = 0) -> str:
    return teacher.reply(load_prompt(kind).messages(question), sample, kind)


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
        "print(json.dumps(OfflineTeacher(0.3, seed=7).reply(load_prompt('harder').messages(sys.argv[1]), 3, 'harder')))\n"
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


def test_unknown_problems_get_a_polite_reply_that_curation_can_drop():
    teacher = OfflineTeacher(error_rate=0.0, reference={})
    question = "A train leaves at 3 pm at 60 miles per hour. When does it arrive 150 miles away?"
    for s in range(5):
        assert not parse_reply(ask(teacher, "harder", question, s), "harder").ok
        text = ask(teacher, "solve", question, s)
        assert text.strip() and "Traceback" not in text
    parts = [{"role": "user", "content": [{"type": "text", "text": load_prompt("solve").messages(question)[-1]["content"]}]}]
    assert teacher.reply(parts, 0, "solve") == ask(teacher, "solve", question, 0)  # OpenAI content parts


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


def test_litellm_completion_and_acompletion_reach_the_offline_teacher():
    import litellm

    saved = list(litellm.custom_provider_map)
    other = {"provider": "someone-else", "custom_handler": object()}
    try:
        litellm.custom_provider_map = [other]
        register_offline_provider(error_rate=0.0, seed=1)
        register_offline_provider(error_rate=0.0, seed=1)  # idempotent
        entries = [e["provider"] for e in litellm.custom_provider_map]
        assert entries.count("fdd-offline") == 1 and "someone-else" in entries
        teacher = OfflineTeacher(error_rate=0.0, seed=1)
        question = problems(1, seed=6)[0][0]
        messages = load_prompt("similar").messages(question)
        kind = {KIND_HEADER: "similar"}  # the kind travels as an extra header, as the client sends it
        r = litellm.completion(model="fdd-offline/teacher", messages=messages, seed=4, n=1, temperature=0.7,
                               extra_headers=kind)
        assert r.choices[0].message.content == teacher.reply(messages, 4, "similar")
        assert r.usage.prompt_tokens > 100 and r.usage.completion_tokens > 10
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        r = asyncio.run(litellm.acompletion(model="fdd-offline/anything", messages=messages, seed=2, n=3,
                                            extra_headers=kind))
        assert [c.message.content for c in r.choices] == [teacher.reply(messages, s, "similar") for s in (2, 3, 4)]
    finally:
        litellm.custom_provider_map = saved


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


def _edited(kind: str, question: str) -> list[dict]:
    """The prompt's messages with its task line reworded: nothing in the text names the kind any more."""
    messages = load_prompt(kind).messages(question)
    for m in messages:
        m["content"] = m["content"].replace(f"### Task: {kind}", "### Assignment")
    assert not any(word in messages[-1]["content"] for word in ("Task:", "### Task"))
    return messages


def test_the_kind_comes_from_the_request_not_from_the_prompt_text():
    teacher = OfflineTeacher(error_rate=0.0)
    for question, program, _ in problems(10, seed=8):
        edited = _edited("harder", question)
        for sample in range(3):
            text = teacher.reply(edited, sample, "harder")
            # The same reply as the unedited prompt's: the kind and the problem decide, not the wording.
            assert text == ask(teacher, "harder", question, sample)
            parsed = parse_reply(text, "harder")
            assert parsed.ok, text
            new = synthetic.parse_question(parsed.question)
            # evaluate: the teacher's own in-process check of its programs (a unit test starts no sandbox)
            assert new is not None and evaluate(parsed.program) == synthetic.answer_of(new)
            assert synthetic.program_steps(parsed.program) > synthetic.program_steps(program)
        # A prompt text that says solve does not make a harder request a solve one either.
        solve_text = load_prompt("solve").messages(question)
        assert parse_reply(teacher.reply(solve_text, 0, "harder"), "harder").ok


def test_a_request_without_a_kind_is_answered_as_solve_and_an_unknown_kind_is_refused():
    teacher = OfflineTeacher(error_rate=0.0)
    question, _, answer = problems(1, seed=9)[0]
    # No kind data (a curl request): a solve reply, even where the prompt's text still says harder.
    for messages in (load_prompt("harder").messages(question), [{"role": "user", "content": f"Problem: {question}"}]):
        text = teacher.reply(messages, 0)
        assert parse_reply(text, "solve").ok and text.rstrip().endswith(f"The answer is {answer}."), text
    assert teacher.reply(_edited("similar", question), 1, " Similar ") == teacher.reply(_edited("similar", question), 1, "similar")
    with pytest.raises(ValueError, match="unknown request kind 'hardest'"):
        teacher.reply(load_prompt("harder").messages(question), 0, "hardest")
    assert kind_from_headers({"x-fdd-request-kind": "HARDER", "Accept": "x"}) == "harder"
    assert kind_from_headers({}) is None and kind_from_headers(None) is None


def test_complete_gives_n_samples_and_their_usage():
    teacher = OfflineTeacher(error_rate=0.3, seed=2)
    messages = load_prompt("similar").messages(problems(1, seed=10)[0][0])
    texts, prompt_tokens, completion_tokens = teacher.complete(messages, "similar", 3, 5)
    assert texts == [teacher.reply(messages, s, "similar") for s in (5, 6, 7)]
    assert prompt_tokens == sum(len(m["content"]) for m in messages) // 4
    assert completion_tokens == sum(map(len, texts)) // 4


def test_the_litellm_provider_reads_the_kind_header():
    import litellm

    saved = list(litellm.custom_provider_map)
    try:
        register_offline_provider(error_rate=0.0, seed=1)
        teacher = OfflineTeacher(error_rate=0.0, seed=1)
        question = problems(1, seed=11)[0][0]
        edited = _edited("harder", question)
        r = litellm.completion(model="fdd-offline/teacher", messages=edited, seed=3, n=2,
                               extra_headers={KIND_HEADER: "harder"})
        assert [c.message.content for c in r.choices] == [teacher.reply(edited, s, "harder") for s in (3, 4)]
        assert all(parse_reply(c.message.content, "harder").ok for c in r.choices)
        with pytest.raises(litellm.BadRequestError, match="unknown request kind"):
            litellm.completion(model="fdd-offline/teacher", messages=edited, extra_headers={KIND_HEADER: "nope"},
                               max_retries=0)
    finally:
        litellm.custom_provider_map = saved
