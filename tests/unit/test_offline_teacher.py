"""The offline teacher: right answers for synthetic and GSM8K-train problems, its damage shares,
determinism, the request kind read from data (never from the prompt's text), and its litellm provider
(in-process, no network)."""

import asyncio
import random

import pytest

from fdd_core import synthetic
from fdd_core.teacher.offline import (
    OfflineTeacher,
    evaluate,
    kind_from_headers,
    register_offline_provider,
)
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import KIND_HEADER, load_prompt


def problems(n: int, seed: int = 0) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        question, program, answer, _ = synthetic.generate_problem(rng, rng.randint(1, 6), rng.randint(0, 2))
        out.append((question, program, answer))
    return out


def ask(teacher: OfflineTeacher, kind: str, question: str, sample: int = 0) -> str:
    return teacher.reply(load_prompt(kind).messages(question), sample, kind)


def test_unknown_problems_get_a_polite_reply_that_curation_can_drop():
    teacher = OfflineTeacher(error_rate=0.0, reference={})
    question = "A train leaves at 3 pm at 60 miles per hour. When does it arrive 150 miles away?"
    for s in range(5):
        assert not parse_reply(ask(teacher, "harder", question, s), "harder").ok
        text = ask(teacher, "solve", question, s)
        assert text.strip() and "Traceback" not in text
    parts = [{"role": "user", "content": [{"type": "text", "text": load_prompt("solve").messages(question)[-1]["content"]}]}]
    assert teacher.reply(parts, 0, "solve") == ask(teacher, "solve", question, 0)  # OpenAI content parts


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
    similar = _edited("similar", question)
    assert teacher.reply(similar, 1, " Similar ") == teacher.reply(similar, 1, "similar")
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

