"""The offline teacher's HTTP server over real HTTP on 127.0.0.1: litellm replies, the request log,
injected faults and concurrency. Each server is a subprocess, killed at the end of its test."""

import asyncio
import json
import time

import httpx
import pytest

from fdd_core.config import BudgetConfig, TeacherConfig
from fdd_core.synthetic import answer_of, parse_question
from fdd_core.teacher.client import TeacherClient, TeacherRequest
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import KIND_HEADER, load_prompt
from fdd_core.teacher.response_store import ResponseStore

from .conftest import read_log

QUESTION = "Maya has 12 marbles. She finds 5 more marbles. She gives 3 marbles to Leo. How many marbles does Maya have now?"
SECRET = "sk-test-SECRET123"


def test_litellm_gets_replies_and_the_log_holds_one_line_per_request_and_no_secret(tmp_path, teacher_server):
    import litellm

    base, log = teacher_server("--error-rate", "0")
    solve = load_prompt("solve").messages(QUESTION)
    harder = load_prompt("harder").messages(QUESTION)

    async def ask(messages, kind, seed, n=1):
        return await litellm.acompletion(model="openai/fdd-offline", api_base=base, api_key=SECRET,
                                         messages=messages, seed=seed, n=n, timeout=30, max_retries=0,
                                         extra_headers={KIND_HEADER: kind})

    async def main():
        return await asyncio.gather(*(ask(solve, "solve", s) for s in range(4)), ask(harder, "harder", 0, n=3))

    *solves, variants = asyncio.run(main())
    for r in solves:
        parsed = parse_reply(r.choices[0].message.content, "solve")
        assert parsed.ok and "The answer is 14." in parsed.raw
        assert r.usage.prompt_tokens > 50 and r.usage.completion_tokens > 5
    assert len(variants.choices) == 3
    for choice in variants.choices:
        parsed = parse_reply(choice.message.content, "harder")
        assert parsed.ok and parse_question(parsed.question) is not None
        scope: dict = {}
        exec(parsed.program, {}, scope)
        assert scope["ans"] == answer_of(parse_question(parsed.question))
    models = httpx.get(f"{base}/models", timeout=5).json()
    assert models["data"][0]["id"] == "fdd-offline"
    lines = read_log(log)
    assert len(lines) == 5
    assert {(line["status"], line["kind"], line["n"]) for line in lines} == {(200, "solve", 1), (200, "harder", 3)}
    assert all(len(line["messages_sha256"]) == 64 for line in lines)
    text = log.read_text(encoding="utf-8")
    assert SECRET not in text and "Bearer" not in text and "marbles" not in text


def test_fault_shares_are_honoured_and_429s_say_when_to_retry(tmp_path, teacher_server):
    base, log = teacher_server("--fail-429", "0.5")
    body = {"model": "fdd-offline", "messages": load_prompt("solve").messages(QUESTION)}
    statuses = []
    with httpx.Client(timeout=10) as client:
        for i in range(40):
            r = client.post(f"{base}/chat/completions", json={**body, "seed": i},
                            headers={"Authorization": f"Bearer {SECRET}"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["type"] == "rate_limit_error"
            else:
                assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert 10 <= statuses.count(429) <= 30, statuses
    lines = read_log(log)
    assert len(lines) == 40
    assert sum(line["status"] == 429 for line in lines) == statuses.count(429)


def test_server_errors_and_hangs_reach_litellm_as_its_own_exceptions(tmp_path, teacher_server):
    import litellm

    messages = load_prompt("solve").messages(QUESTION)
    base, _ = teacher_server("--fail-500", "1")
    with pytest.raises(litellm.InternalServerError):
        litellm.completion(model="openai/fdd-offline", api_base=base, api_key=SECRET, messages=messages,
                           timeout=10, max_retries=0)
    base, log = teacher_server("--fail-timeout", "1", "--slow-s", "5")
    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        asyncio.run(litellm.acompletion(model="openai/fdd-offline", api_base=base, api_key=SECRET,
                                        messages=messages, timeout=1, max_retries=0))
    assert time.monotonic() - started < 4.5
    assert read_log(log)[-1]["status"] == "timeout"


def test_requests_are_served_concurrently(tmp_path, teacher_server):
    base, log = teacher_server("--latency-ms", "500", "--error-rate", "0")
    body = {"model": "fdd-offline", "messages": load_prompt("solve").messages(QUESTION)}

    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=20) as client:
            rs = await asyncio.gather(*(client.post(f"{base}/chat/completions", json={**body, "seed": i})
                                        for i in range(16)))
        return [r.status_code for r in rs]

    started = time.monotonic()
    assert asyncio.run(main()) == [200] * 16
    elapsed = time.monotonic() - started
    assert elapsed < 4.0, elapsed  # 16 x 0.5 s one after another would take 8 s
    assert len(read_log(log)) == 16


def test_the_kind_header_reaches_the_server_and_decides_the_reply(tmp_path, teacher_server):
    base, log = teacher_server("--error-rate", "0")
    # A harder prompt whose text no longer names its task: only the request's kind says harder.
    messages = [{**m, "content": m["content"].replace("### Task: harder", "### Assignment")}
                for m in load_prompt("harder").messages(QUESTION)]
    assert "### Task" not in messages[-1]["content"]
    cfg = TeacherConfig(model="openai/fdd-offline", api_base=base, timeout_s=30, max_retries=0)
    client = TeacherClient(cfg, BudgetConfig(), ResponseStore(tmp_path / "teacher.sqlite"))
    replies = client.generate([TeacherRequest(messages, "harder.v1", s, f"h{s}", kind="harder") for s in range(3)])
    for reply in replies:
        parsed = parse_reply(reply.text, "harder")
        assert parsed.ok and parse_question(parsed.question) is not None, reply.text
    assert [line["kind"] for line in read_log(log)] == ["harder"] * 3  # the server read the header
    # Without the header (curl) the same messages are answered as solve; another kind is a 400.
    body = {"model": "fdd-offline", "messages": messages, "seed": 1}
    with httpx.Client(timeout=10) as http:
        plain = http.post(f"{base}/chat/completions", json=body)
        assert plain.status_code == 200
        text = plain.json()["choices"][0]["message"]["content"]
        assert parse_reply(text, "solve").ok and "The answer is 14." in text
        bad = http.post(f"{base}/chat/completions", json=body, headers={KIND_HEADER: "hardest"})
        assert bad.status_code == 400 and KIND_HEADER in bad.json()["error"]["message"]
        upper = http.post(f"{base}/chat/completions", json=body, headers={KIND_HEADER.lower(): "SIMILAR"})
        assert parse_reply(upper.json()["choices"][0]["message"]["content"], "similar").ok
    after = [(line["status"], line["kind"]) for line in read_log(log)[3:]]
    assert after == [(200, None), (400, None), (200, "similar")]
