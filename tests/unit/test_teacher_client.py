"""The teacher client through litellm's in-process offline provider: order, cache, budget, cost, secrets."""

import asyncio
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import litellm
import pytest
from litellm.llms.custom_llm import CustomLLM, CustomLLMError

from fdd_core.config import BudgetConfig, TeacherConfig
from fdd_core.teacher.client import (
    BUDGET,
    RETRY_AFTER_CAP_S,
    TeacherClient,
    TeacherOutage,
    TeacherConfigError,
    TeacherRequest,
    _retry_after,
    _retryable,
    sample_seed,
)
from fdd_core.teacher.costs import BudgetLedger, format_usd, token_cost
from fdd_core.teacher.offline import OfflineTeacher, register_offline_provider
from fdd_core.teacher.parsing import parse_reply
from fdd_core.teacher.prompts import KIND_HEADER, load_prompt
from fdd_core.teacher.response_store import ResponseStore

FAKE_KEY = "fddtestkey-0123456789abcdef-not-real"  # no sk- prefix: litellm would redact that itself


def _requests(n: int, samples: int = 1, start: int = 0) -> list[TeacherRequest]:
    prompt = load_prompt("solve")
    return [
        TeacherRequest.for_prompt(
            prompt,
            f"Ann has {i} pencils and buys {i + 3} more. How many pencils does she have now?",
            k,
            f"q{i}-s{k}",
        )
        for i in range(start, start + n)
        for k in range(samples)
    ]


def _client(tmp_path: Path, budget: BudgetConfig | None = None, **cfg) -> TeacherClient:
    store = ResponseStore(tmp_path / "teacher.sqlite")
    return TeacherClient(TeacherConfig(**{"concurrency": 4, **cfg}), budget or BudgetConfig(), store, retry_base_s=0.01)


@pytest.fixture(autouse=True)
def offline():
    """The offline teacher, registered in litellm for model fdd-offline/teacher."""
    return register_offline_provider(error_rate=0.1, seed=0)


class Scripted(CustomLLM):
    """A provider that fails with the given status codes first, then answers like the offline teacher."""

    def __init__(self, inner: CustomLLM, fail_with: list[int], message: str = "injected") -> None:
        super().__init__()
        self.inner, self.fail_with, self.message, self.calls = inner, list(fail_with), message, 0

    async def acompletion(self, *args, **kwargs):
        self.calls += 1
        if self.fail_with:
            raise CustomLLMError(status_code=self.fail_with.pop(0), message=self.message)
        return await self.inner.acompletion(*args, **kwargs)


def _provide(monkeypatch, name: str, handler: CustomLLM) -> None:
    monkeypatch.setattr(litellm, "custom_provider_map", [*litellm.custom_provider_map,
                                                         {"provider": name, "custom_handler": handler}])


def test_list_in_list_out_in_order(tmp_path):
    client = _client(tmp_path)
    requests = _requests(12, samples=2)
    replies = client.generate(requests)
    teacher = OfflineTeacher(error_rate=0.1, seed=0)
    assert [r.request for r in replies] == requests
    for reply in replies:
        assert reply.ok and reply.error is None and not reply.cached
        # The provider sees the sample's own seed: reply i is the teacher's reply to request i.
        assert reply.text == teacher.reply(reply.request.messages, sample_seed(0, reply.request.sample_index), "solve")
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    st = client.stats
    assert (st.requests, st.attempts, st.retries, st.failures, st.cached) == (24, 24, 0, 0, 0)
    assert len(client.store) == 24
    assert client.generate([]) == []


def test_identical_second_run_is_all_cached(tmp_path):
    first = _client(tmp_path)
    requests = _requests(10, samples=2)
    bought = first.generate(requests)
    first.store.close()
    second = _client(tmp_path)  # a new run: new client, store reopened from disk
    again = second.generate(requests)
    assert [r.text for r in again] == [r.text for r in bought]
    assert all(r.cached and r.cost_usd == 0.0 for r in again)
    st = second.stats
    assert (st.requests, st.attempts, st.cached) == (0, 0, 20)  # zero provider calls
    assert (second.store.hits, second.store.misses) == (20, 0)
    assert st.saved_usd == 0.0  # the offline teacher is free: known, not unknown


def test_each_sample_and_run_seed_is_its_own_entry(tmp_path):
    client = _client(tmp_path)
    requests = _requests(1, samples=3)
    keys = {client.key(r) for r in requests}
    assert len(keys) == 3
    client.generate(requests)
    assert len(client.store) == 3
    other_seed = TeacherClient(client.cfg, client.budget, client.store, seed=1)
    assert {other_seed.key(r) for r in requests}.isdisjoint(keys)
    assert sample_seed(0, 1) == sample_seed(0, 1) != sample_seed(1, 1)
    # The caller's id is not part of the key: same request, other id, same reply.
    assert client.key(replace(requests[0], request_id="other")) in keys


def test_identical_requests_in_one_batch_are_sent_once(tmp_path):
    client = _client(tmp_path)
    one = _requests(1)[0]
    twin = replace(one, request_id="twin")
    replies = client.generate([one, twin, one])
    assert client.stats.requests == 1 and client.stats.cached == 2
    assert len({r.text for r in replies}) == 1
    assert [r.request.request_id for r in replies] == [one.request_id, "twin", one.request_id]


def test_the_kind_travels_as_data_and_stays_out_of_the_store_key(tmp_path):
    # A harder request whose prompt text no longer says so: the kind field still makes it one.
    prompt = load_prompt("harder")
    question = "Maya has 12 marbles. She gives 5 marbles to Leo. How many marbles does Maya have now?"
    messages = [{**m, "content": m["content"].replace("### Task: harder", "### Assignment")}
                for m in prompt.messages(question)]
    assert "### Task" not in messages[-1]["content"]
    request = TeacherRequest(messages, prompt.tag, 0, "edited", kind="harder")
    client = _client(tmp_path, offline_error_rate=0.0)  # registers the offline provider with no damage
    [reply] = client.generate([request])
    assert reply.ok and parse_reply(reply.text, "harder").ok, reply.text
    assert reply.text == OfflineTeacher(0.0, seed=0).reply(messages, sample_seed(0, 0), "harder")
    # The key: what it always was, whatever the kind; pinned to the values the client gave before
    # requests had a kind, so stores already on disk keep serving their replies.
    assert client.key(replace(request, kind="similar")) == client.key(request)
    pinned = TeacherRequest(
        [{"role": "system", "content": "You write math problems."},
         {"role": "user", "content": "### Task: harder\nProblem: Ann has 2 pens. She buys 3 more. How many pens?"}],
        "harder.v1", 3, "x", kind="harder",
    )
    store = ResponseStore(tmp_path / "pinned.sqlite")
    offline_cfg = TeacherConfig(model="fdd-offline/teacher", temperature=0.7, max_tokens=768)
    http_cfg = TeacherConfig(model="openai/teacher", api_base="http://127.0.0.1:8765/v1", temperature=0.7,
                             max_tokens=768)
    assert TeacherClient(offline_cfg, BudgetConfig(), store, seed=5).key(pinned) == (
        "2790c7fc6afbe8efc6b5853d123504e9982360bee3994ef71ec9852d84d0eebd")
    assert TeacherClient(http_cfg, BudgetConfig(), store, seed=5).key(pinned) == (
        "547f7f30d231c92e353885e3ca88b3d631503ff6e2f77fcddc68294a5d1bdcf3")
    # A request must say what it asks for: no kind, or another word, is refused up front.
    with pytest.raises(TypeError):
        TeacherRequest(messages, prompt.tag, 0, "no-kind")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="kind"):
        TeacherRequest(messages, prompt.tag, 0, "odd", kind="hardest")  # type: ignore[arg-type]
    assert TeacherRequest.for_prompt(prompt, " Ann has 2 pens. ", 1, "r").kind == "harder"


def test_the_kind_header_reaches_the_provider(tmp_path, monkeypatch, offline):
    seen: list[dict] = []

    class Recording(Scripted):
        async def acompletion(self, *args, **kwargs):
            seen.append(dict(kwargs.get("headers") or {}))
            return await super().acompletion(*args, **kwargs)

    _provide(monkeypatch, "fddtest-record", Recording(offline, []))
    client = _client(tmp_path, model="fddtest-record/teacher")
    harder = TeacherRequest.for_prompt(load_prompt("harder"), "Ann has 2 pens. How many pens does Ann have?", 0, "h")
    assert all(r.ok for r in client.generate([*_requests(1), harder]))
    assert sorted(h.get(KIND_HEADER) for h in seen) == ["harder", "solve"]


def test_budget_max_requests_stops_cleanly_and_keeps_what_it_bought(tmp_path):
    client = _client(tmp_path, BudgetConfig(max_requests=10), concurrency=4)
    requests = _requests(50)
    replies = client.generate(requests)
    paid = [r for r in replies if r.ok]
    skipped = [r for r in replies if r.error == BUDGET]
    assert len(paid) + len(skipped) == 50
    assert 10 <= len(paid) <= 10 + 3  # the brief's bound; the reservation makes it exactly 10
    assert len(paid) == client.stats.requests == 10
    assert client.stats.budget_exhausted and client.stats.skipped == 40
    assert all(r.text is None for r in skipped)
    assert len(client.store) == 10  # every reply bought is stored
    # The next run without a cap reuses the 10 (they never count against a budget) and buys the rest.
    again = TeacherClient(client.cfg, BudgetConfig(max_requests=40), client.store)
    replies = again.generate(requests)
    assert all(r.ok for r in replies)
    assert (again.stats.cached, again.stats.requests, again.stats.budget_exhausted) == (10, 40, False)


def test_budget_carries_earlier_spend(tmp_path):
    client = TeacherClient(TeacherConfig(), BudgetConfig(max_requests=5), ResponseStore(tmp_path / "s.sqlite"),
                           spent_requests=3)
    replies = client.generate(_requests(6))
    assert sum(r.ok for r in replies) == 2 and client.stats.budget_exhausted


def test_ledger_max_usd():
    ledger = BudgetLedger(BudgetConfig(max_usd=1.0))
    assert not ledger.exhausted() and not ledger.must_wait()
    ledger.in_flight = 3
    assert not ledger.must_wait()  # nothing paid yet: no estimate, go
    ledger.in_flight = 0
    for _ in range(4):
        ledger.record(0.2)
    ledger.in_flight = 1  # 0.8 spent + one in flight (0.2) + this one (0.2) > 1.0: wait for it
    assert not ledger.exhausted() and ledger.must_wait()
    ledger.in_flight = 0  # nothing in flight and 0.8 < 1.0: send (overshoot at most about one reply)
    assert not ledger.must_wait()
    ledger.record(0.2)
    assert ledger.exhausted()
    unknown = BudgetLedger(BudgetConfig(max_usd=1.0))
    unknown.record(None)
    assert unknown.exhausted()  # a cost we cannot see can no longer be kept under a dollar cap


def test_ledger_max_requests_reserves_in_flight():
    ledger = BudgetLedger(BudgetConfig(max_requests=3))
    ledger.record(0.0)
    ledger.in_flight = 2
    assert ledger.must_wait() and not ledger.exhausted()
    ledger.in_flight = 1
    assert not ledger.must_wait()


def test_dollar_cap_refused_for_a_model_of_unknown_price(tmp_path):
    store = ResponseStore(tmp_path / "s.sqlite")
    with pytest.raises(TeacherConfigError, match="openai/some-unknown-model.*max_requests"):
        TeacherClient(TeacherConfig(model="openai/some-unknown-model", api_base="http://127.0.0.1:9/v1"),
                      BudgetConfig(max_usd=1.0), store)
    TeacherClient(TeacherConfig(), BudgetConfig(max_usd=1.0), store)  # the free offline teacher is priced


def test_costs():
    assert token_cost("fdd-offline/teacher", 1000, 1000) == 0.0
    assert token_cost("openai/some-unknown-model", 1000, 1000) is None
    assert token_cost("gpt-4o-mini", 1_000_000, 0) == pytest.approx(litellm.model_cost["gpt-4o-mini"]["input_cost_per_token"] * 1e6)
    assert format_usd(None) == "unknown" and format_usd(0.0) == "$0.0000"


def test_unknown_cost_is_none_never_zero(tmp_path, monkeypatch, offline):
    _provide(monkeypatch, "fddtest-unpriced", Scripted(offline, []))  # a model no price map knows
    client = _client(tmp_path, model="fddtest-unpriced/teacher")
    replies = client.generate(_requests(3))
    assert all(r.ok and r.cost_usd is None for r in replies)
    assert client.stats.cost_usd is None and "cost unknown" in client.stats.summary()
    again = _client(tmp_path, model="fddtest-unpriced/teacher")
    again.generate(_requests(3))
    assert again.stats.saved_usd is None  # the saving of a reply of unknown price is unknown too


def test_missing_key_variable_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FDD_TEST_TEACHER_KEY", raising=False)
    with pytest.raises(TeacherConfigError, match="FDD_TEST_TEACHER_KEY"):
        _client(tmp_path, api_key_env="FDD_TEST_TEACHER_KEY")


def test_missing_provider_key_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(TeacherConfigError, match="OPENAI_API_KEY"):
        _client(tmp_path, model="gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    assert FAKE_KEY not in repr(_client(tmp_path, model="gpt-4o-mini"))


def test_the_key_never_leaks(tmp_path, monkeypatch, caplog, capsys, offline):
    monkeypatch.setenv("FDD_TEST_TEACHER_KEY", FAKE_KEY)
    caplog.set_level(logging.INFO)
    client = _client(tmp_path, api_key_env="FDD_TEST_TEACHER_KEY")
    replies = client.generate(_requests(4))
    assert all(r.ok for r in replies)
    # A provider that echoes the key in its error (OpenAI's 401 does, partly masked).
    echo = Scripted(offline, [401], message=f"Incorrect API key provided: {FAKE_KEY}")
    _provide(monkeypatch, "fddtest-echo", echo)
    leaky = _client(tmp_path, api_key_env="FDD_TEST_TEACHER_KEY", model="fddtest-echo/teacher")
    with pytest.raises(TeacherOutage) as outage:  # a 401 stops the stage, naming the status and the message
        leaky.generate(_requests(1, start=100))
    failed = str(outage.value)
    assert "HTTP 401" in failed and "AuthenticationError" in failed and "***" in failed
    assert echo.calls == 1  # a 401 is not retried
    client.store.close()
    seen = [repr(client), repr(leaky), str(client.stats), client.stats.summary(), repr(replies), failed,
            caplog.text, *capsys.readouterr()]
    seen += [p.read_bytes().decode("latin-1") for p in tmp_path.iterdir() if p.is_file()]  # db, -wal, -shm
    assert not [s for s in seen if FAKE_KEY in s]


def test_transient_errors_are_retried(tmp_path, monkeypatch, offline):
    flaky = Scripted(offline, [429, 500, 503])
    _provide(monkeypatch, "fddtest-flaky", flaky)
    client = _client(tmp_path, model="fddtest-flaky/teacher", max_retries=3)
    [reply] = client.generate(_requests(1))
    assert reply.ok and flaky.calls == 4
    assert (client.stats.attempts, client.stats.retries, client.stats.requests) == (4, 3, 1)


def test_a_provider_that_ignores_the_timeout_is_cut_off(tmp_path, monkeypatch, offline):
    class Hanging(Scripted):
        async def acompletion(self, *args, **kwargs):
            self.calls += 1
            await asyncio.sleep(60)

    hanging = Hanging(offline, [])
    _provide(monkeypatch, "fddtest-hang", hanging)
    client = _client(tmp_path, model="fddtest-hang/teacher", timeout_s=0.1, max_retries=1)
    started = time.monotonic()
    [reply] = client.generate(_requests(1))
    assert reply.text is None and reply.error.startswith("Timeout") and hanging.calls == 2
    assert client.stats.retries == 1 and time.monotonic() - started < 10


@pytest.mark.parametrize("codes, calls", [([500] * 9, 3), ([400], 1)])
def test_failures_become_rows_not_exceptions(tmp_path, monkeypatch, offline, codes, calls):
    bad = Scripted(offline, codes)
    _provide(monkeypatch, "fddtest-bad", bad)
    client = _client(tmp_path, model="fddtest-bad/teacher", max_retries=2)
    [reply] = client.generate(_requests(1))
    assert reply.text is None and reply.error and reply.error != BUDGET
    assert bad.calls == calls and client.stats.failures == 1 and client.stats.requests == 0
    assert len(client.store) == 0  # failures are not stored: the next run tries again


def test_retry_classification_and_retry_after():
    assert _retryable(litellm.RateLimitError("slow down", "openai", "m"))
    assert _retryable(litellm.Timeout("t", "m", "openai")) and _retryable(asyncio.TimeoutError())
    assert _retryable(litellm.InternalServerError("x", "openai", "m"))
    assert _retryable(litellm.ServiceUnavailableError("x", "openai", "m"))
    assert not _retryable(litellm.BadRequestError("x", "m", "openai"))
    assert not _retryable(ValueError("a bug"))
    with_header = litellm.RateLimitError("x", "openai", "m", response=httpx.Response(429, headers={"Retry-After": "3"}))
    assert _retry_after(with_header) == 3.0
    ms = litellm.RateLimitError("x", "openai", "m", response=httpx.Response(429, headers={"retry-after-ms": "250"}))
    assert _retry_after(ms) == 0.25
    assert _retry_after(litellm.RateLimitError("x", "openai", "m")) is None


def test_delay_honours_retry_after_with_a_cap(tmp_path):
    client = _client(tmp_path)
    assert 3.0 <= client._delay(0, 3.0) <= 3.0 + client.retry_base_s
    assert client._delay(0, 3600.0) <= RETRY_AFTER_CAP_S + client.retry_base_s
    assert 0.5 * 0.01 * 8 <= client._delay(3, None) <= 0.01 * 8  # exponential, jittered


def test_generate_from_a_running_loop_and_from_a_thread(tmp_path):
    client = _client(tmp_path)

    async def inside() -> list:
        return client.generate(_requests(3))  # e.g. a notebook: runs in a helper thread

    assert all(r.ok for r in asyncio.run(inside()))
    out: list = []
    worker = threading.Thread(target=lambda: out.extend(client.generate(_requests(3, start=3))))
    worker.start()
    worker.join(timeout=60)
    assert len(out) == 3 and all(r.ok for r in out)
    assert client.stats.requests == 6


def test_progress_callback(tmp_path):
    client = _client(tmp_path)
    client.generate(_requests(4))
    seen: list[tuple[int, int]] = []
    client.generate(_requests(10), on_progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (4, 10)  # the cached ones at once, then one by one
    assert seen[-1] == (10, 10) and [d for d, _ in seen] == sorted(d for d, _ in seen)

    def broken(done: int, total: int) -> None:
        raise RuntimeError("progress bar fell over")

    assert all(r.ok for r in client.generate(_requests(2, start=20), on_progress=broken))


@pytest.mark.robustness
@pytest.mark.parametrize("status", [401, 403, 404])
def test_an_outage_stops_the_batch_at_once_naming_status_and_message(tmp_path, monkeypatch, offline, status):
    # was: every request failed into a `request_failed` row and the stage completed (cached as done)
    down = Scripted(offline, [status] * 100, message="the provider's own words")
    _provide(monkeypatch, "fddtest-down", down)
    client = _client(tmp_path, model="fddtest-down/teacher", concurrency=2)
    with pytest.raises(TeacherOutage, match=rf"HTTP {status}: .*the provider's own words"):
        client.generate(_requests(40))
    assert down.calls <= 2  # the requests in flight when the first refusal came back, no more
