"""Async teacher client over litellm: one call per sample, served from the response store when it
can be, retried on transient errors, stopped by the budget. List in, list out, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gc
import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import litellm  # noqa: E402
import openai  # noqa: E402  (litellm's exceptions subclass openai's; their bases classify retries)

from fdd_core.config import BudgetConfig, TeacherConfig  # noqa: E402
# costs also quiets litellm's stdout banners (suppress_debug_info)
from fdd_core.teacher.costs import FREE_PROVIDERS, BudgetLedger, TeacherStats, is_priced, token_cost  # noqa: E402
from fdd_core.teacher.prompts import KIND_HEADER, KINDS, Prompt, RequestKind  # noqa: E402
from fdd_core.teacher.response_store import ResponseStore, StoreError, StoredReply  # noqa: E402
from fdd_core.teacher.store_batch import StoreBatcher  # noqa: E402

log = logging.getLogger("fdd.teacher")

BUDGET = "budget"  # TeacherReply.error of a request the budget kept from being sent
RETRY_AFTER_CAP_S = 60.0  # a server asking for longer is waited on for this long, then retried
NO_KEY = "no-key"  # sent to an api_base server when no key variable is named (see _read_key)
Progress = Callable[[int, int], None]  # on_progress(done, total)


class TeacherConfigError(ValueError):
    """A teacher setting that makes the run impossible; raised before any request is sent."""


class TeacherOutage(TeacherConfigError):
    """The teacher refused a request for a reason no retry fixes (401, 403, 404: a key, a permission, a model or
    server that is not there): the stage stops at once, naming the status and the provider's message."""


class TeacherFailures(RuntimeError):
    """A stage ended with more failed requests than teacher.max_failed_share: it fails instead of completing."""


# OpenAI-compatible teachers (openai/..., any api_base server) go through litellm's own HTTP handler, not the OpenAI
# SDK's client: the SDK walks every request's messages against its TypedDicts (openai._utils._transform), 1.1 to 1.2
# ms of CPU a request on 2 cores, 40% of the client's, which held concurrency 256 below 90% of the ideal (issue 15).
# Requests, statuses, Retry-After and error classes reach the client the same either way (tests/integration/
# test_teacher_*.py pass on both). litellm calls the switch experimental: a user exports it as false to go back.
HTTP_HANDLER_VAR = "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"
OUTAGE_STATUSES = (401, 403, 404)  # authentication, permission, model or endpoint: the same on every request
CLAIM_POLL_S = 0.2  # how often a request another process has in flight is looked for in the store
# Between the starts of two workers: the first wave leaves over concurrency * START_SPACING_S (128 ms at 256), about as
# fast as the client can send it anyway (~1.9 ms of CPU a request on 2 cores), but its replies then come back spread,
# not all at once. Started together, every worker's request went through each step in lockstep, none reached the
# server before all were ready (~0.3 s at 256), and each wave's 256 replies then queued on the one event loop, wave
# after wave (bench_pipeline --teacher-only: 221 req/s of the ideal 256; started apart, 231: issue 15).
START_SPACING_S = 0.0005


def claims_ahead(concurrency: int) -> int:
    """Requests that may hold a claim while they wait for one of the concurrency sending slots.

    A slot is held for the HTTP exchange and the durable put of its reply (so that at most concurrency paid replies
    are at risk), not for the claim before it: a store batch (~20 ms on 2 cores) that held every slot ~2% longer
    when made inside it, at concurrency 256 (issue 15). An eighth of the slots queued with their claims made covers
    a store batch at 256 requests/s; fewer than the slots, each waits for at most one request to end, so a claim is
    never older than the staleness a request in flight is allowed (ResponseStore.claim's stale_after_s)."""
    return max(1, concurrency // 8)


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_thresholds: tuple[int, ...] = ()
YOUNG_GC_THRESHOLD = 50_000  # allocations between young collections during a batch (Python's default: 700)


@contextlib.contextmanager
def _old_objects_frozen():
    """The objects alive before a batch of requests are left out of the garbage collector's full passes during it.

    A process that imported litellm (and torch, Prefect...) holds millions of long-lived objects; the requests in
    flight allocate enough to trigger full collections, each of which walked all of them (~0.5 s of wall time each on
    a loaded 2-core machine, one per ~256 requests at concurrency 256). gc.freeze() moves them aside, gc.unfreeze() puts them back when the last
    batch (of any thread) ends, so garbage made meanwhile among them is still collected afterwards. Young collections
    are made rarer meanwhile too (their cost per request fell from ~0.45 to ~0.07 ms of CPU at concurrency 256): the
    requests in flight keep ~half a million objects alive, which every full pass of the young ones walked again.
    """
    global _gc_holders, _gc_thresholds
    with _gc_lock:
        if _gc_holders == 0:
            gc.freeze()
            _gc_thresholds = gc.get_threshold()
            gc.set_threshold(max(YOUNG_GC_THRESHOLD, _gc_thresholds[0]), *_gc_thresholds[1:])
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.set_threshold(*_gc_thresholds)
                gc.unfreeze()


@dataclass(frozen=True)
class TeacherRequest:
    messages: list[dict]
    prompt: str  # prompt tag, e.g. "solve.v1": part of the cache key
    sample_index: int = 0  # k-th sample of the same messages: its own seed and its own cache entry
    request_id: str = ""  # the caller's id for the row; not part of the cache key
    # What is asked (solve, harder, similar): sent with the call as the KIND_HEADER header, which
    # real providers ignore and the offline teacher answers by. Not part of the cache key (the
    # prompt tag already names it), so stored replies keep their keys.
    kind: RequestKind = field(kw_only=True)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TeacherRequest.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @classmethod
    def for_prompt(cls, prompt: Prompt, question: str, sample_index: int = 0, request_id: str = "") -> TeacherRequest:
        """The request of `prompt` for `question`: its messages, tag and kind."""
        return cls(prompt.messages(question), prompt.tag, sample_index, request_id, kind=prompt.kind)


@dataclass(frozen=True)
class TeacherReply:
    request: TeacherRequest
    text: str | None  # None when it failed after retries, or was skipped by the budget
    error: str | None = None  # "budget", or the last error (type and message)
    cached: bool = False  # served without paying: from the store or a duplicate in the same batch
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # paid by this call: 0.0 when cached or not sent; None when unknown
    key: str = ""  # response store key, for lineage

    @property
    def ok(self) -> bool:
        return self.text is not None


def sample_seed(run_seed: int, sample_index: int) -> int:
    """Provider seed of one sample: a hash of (run seed, sample index), a non-negative 31-bit int.

    Each sample of a question has its own seed, so k samples are k distinct, cacheable requests;
    another run seed draws (and pays for) fresh samples, the same run seed reuses them.
    """
    digest = hashlib.sha256(f"fdd-sample:{run_seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _retryable(e: BaseException) -> bool:
    """Rate limits, timeouts, connection failures and 5xx are worth another try; other 4xx never."""
    # asyncio.TimeoutError (our guard) is the builtin TimeoutError only from Python 3.11 on.
    if isinstance(e, (TimeoutError, asyncio.TimeoutError, openai.RateLimitError, openai.APIConnectionError)):
        return True  # APIConnectionError covers litellm.Timeout and connection refused
    status = getattr(e, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status in (408, 429))


def _retry_after(e: BaseException) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms headers), if it said."""
    response = getattr(e, "response", None)
    for headers in (getattr(e, "litellm_response_headers", None), getattr(response, "headers", None),
                    getattr(e, "headers", None)):
        lower = {str(k).lower(): str(v).strip() for k, v in dict(headers or {}).items()}
        try:
            if "retry-after-ms" in lower:
                return max(0.0, float(lower["retry-after-ms"]) / 1000)
            if "retry-after" in lower:
                value = lower["retry-after"]
                if not value.replace(".", "", 1).isdigit():  # an HTTP date
                    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


_NOT_PRICED = object()


def _priced_by_litellm(response: Any, tokens: int) -> float | None | object:
    """The cost litellm already worked out for this response (its hidden `response_cost`, from the same price map as
    costs.token_cost, which it matches to the cent on priced models): None when it could not price the model (unknown
    stays unknown), _NOT_PRICED when it gave nothing usable, or $0 for tokens (never taken as free: we price those)."""
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        if "response_cost" not in hidden:
            return _NOT_PRICED
        value = hidden["response_cost"]
    else:
        value = getattr(hidden, "response_cost", _NOT_PRICED)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and (value > 0 or tokens == 0):
        return float(value)
    return _NOT_PRICED


def check_budget_is_measurable(cfg: TeacherConfig, budget: BudgetConfig) -> None:
    """A dollar cap on a model litellm cannot price would be a silent no-op: TeacherConfigError instead."""
    if budget.max_usd is not None and not is_priced(cfg.model):
        raise TeacherConfigError(
            f"cost of model {cfg.model!r} is unknown (not in litellm's price map), so budget.max_usd "
            "cannot be enforced; set budget.max_requests instead and unset budget.max_usd"
        )


def check_teacher_key(cfg: TeacherConfig) -> str | None:
    """The API key the client will send: the variable teacher.api_key_env names, NO_KEY for an api_base server
    with no variable named, or None (litellm reads the provider's usual variable, checked here to be set).

    Raises TeacherConfigError naming the missing environment variable. Builds no client and sends nothing,
    so `fdd run` calls it before any stage starts; TeacherClient reads its key through it.
    """
    if cfg.api_key_env:
        value = os.environ.get(cfg.api_key_env)
        if not value:
            raise TeacherConfigError(
                f"teacher.api_key_env is {cfg.api_key_env!r} but that environment variable is not set "
                "(or empty): export it before the run"
            )
        return value
    if cfg.api_base:
        # Without a named variable, litellm would send the provider's usual key (OPENAI_API_KEY)
        # to whatever server api_base names; a placeholder keeps that key at home.
        return NO_KEY
    # litellm reads the provider's usual variable; check it now, or a missing OPENAI_API_KEY
    # surfaces as a (retried) error on every request of the run.
    if not cfg.model.startswith(FREE_PROVIDERS):
        try:
            missing = litellm.validate_environment(model=cfg.model)["missing_keys"]
        except Exception:  # a provider litellm cannot check: the first request will tell
            missing = []
        missing = [name for name in missing if name.endswith("_API_KEY")]  # not *_API_BASE (ollama)
        if missing:
            raise TeacherConfigError(
                f"teacher model {cfg.model!r} needs {' or '.join(missing)} in the environment "
                "(or name the variable that holds the key in teacher.api_key_env)"
            )
    return None


class TeacherClient:
    """Sends teacher requests through litellm; see agenerate. The budget and stats count over the
    client's life; a run carries its earlier stages' spend in with spent_requests/spent_usd, and names
    itself with `run` (its run directory): the store records which run bought each reply, so a reply this
    run bought in an earlier, interrupted invocation counts against its budget again when served from
    the store (it was paid for by this run), while one bought by another run is free.
    Calls may follow one another from any thread, but not run at once from two threads."""

    def __init__(self, cfg: TeacherConfig, budget: BudgetConfig, store: ResponseStore, *, seed: int = 0,
                 retry_base_s: float = 1.0, retry_max_s: float = 30.0, spent_requests: int = 0,
                 spent_usd: float = 0.0, run: str | None = None, stage: str | None = None) -> None:
        self.cfg, self.budget, self.store, self.seed, self.run = cfg, budget, store, seed, run
        self.stage = stage  # recorded with each reply bought: the run's report counts them per stage
        self._fatal: BaseException | None = None  # a StoreError or TeacherOutage: nothing more is sent
        self.last_error: str | None = None  # of the last request that failed, for TeacherFailures
        self.unstored = 0  # replies paid for that the store could not keep
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s  # backoff: base * 2**attempt, capped
        self.__api_key = self._read_key(cfg)  # name-mangled, never in repr, stats or the store
        os.environ.setdefault(HTTP_HANDLER_VAR, "true")  # litellm reads it on each call; the user's own value wins
        check_budget_is_measurable(cfg, budget)
        if cfg.model.startswith("fdd-offline/"):
            # The offline teacher is a litellm custom provider: make sure litellm knows it.
            from fdd_core.teacher.offline import register_offline_provider

            register_offline_provider(error_rate=cfg.offline_error_rate, seed=seed)
        self.stats = TeacherStats()
        self.ledger = BudgetLedger(budget, spent_requests, spent_usd)
        self._rng = random.Random(seed)

    @staticmethod
    def _read_key(cfg: TeacherConfig) -> str | None:
        return check_teacher_key(cfg)

    def __repr__(self) -> str:
        return (
            f"TeacherClient(model={self.cfg.model!r}, api_base={self.cfg.api_base!r}, "
            f"api_key_env={self.cfg.api_key_env!r}, concurrency={self.cfg.concurrency}, stats={self.stats})"
        )

    def params(self, request: TeacherRequest) -> dict[str, Any]:
        """Sampling parameters sent with the request; all of them are part of its cache key."""
        return {
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            "seed": sample_seed(self.seed, request.sample_index),
        }

    def key(self, request: TeacherRequest) -> str:
        return self.store.key(
            model=self.cfg.model, api_base=self.cfg.api_base, messages=request.messages,
            params=self.params(request), sample_index=request.sample_index, prompt=request.prompt,
        )

    def generate(self, requests: Sequence[TeacherRequest], on_progress: Progress | None = None) -> list[TeacherReply]:
        """Blocking agenerate in a fresh event loop (in a helper thread if this one runs a loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, on_progress))
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.agenerate(requests, on_progress)).result()

    async def agenerate(self, requests: Sequence[TeacherRequest], on_progress: Progress | None = None
                        ) -> list[TeacherReply]:
        """One reply per request, in order. Cached ones are served first (they never count against
        the budget); the rest go out at most cfg.concurrency at a time; identical requests are sent once."""
        with _old_objects_frozen():
            return await self._agenerate(list(requests), on_progress)

    async def _agenerate(self, requests: list[TeacherRequest], on_progress: Progress | None) -> list[TeacherReply]:
        self._batcher = StoreBatcher(self.store)  # store calls of the requests in flight: off the loop, batched
        total, done = len(requests), 0
        replies: list[TeacherReply | None] = [None] * total

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None and n:
                try:
                    on_progress(done, total)
                except Exception:  # a broken progress bar must not lose paid replies
                    log.warning("teacher progress callback failed", exc_info=True)

        pending: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            key = self.key(request)
            if key in pending:
                pending[key].append(i)
                continue
            stored = self.store.get(key)
            if stored is None:
                pending[key] = [i]
            else:
                replies[i] = self._from_store(request, key, stored)
        progress(total - sum(len(v) for v in pending.values()))

        self._sending = asyncio.Semaphore(self.cfg.concurrency)  # the HTTP exchanges in flight (_call)

        async def one(key: str, indices: list[int]) -> None:
            first = requests[indices[0]]
            try:
                reply = await self._fetch(first, key)
            except (StoreError, TeacherOutage) as e:  # the stage stops: raised once the calls in flight are done
                self._fatal = self._fatal or e
                reply = TeacherReply(first, None, self._scrub(str(e))[:500], key=key)
            except Exception as e:  # a bug of ours must still leave a row, not sink the batch
                log.exception("teacher request failed unexpectedly")
                self.stats.failures += 1
                reply = TeacherReply(first, None, self._scrub(f"{type(e).__name__}: {e}"), key=key)
            replies[indices[0]] = reply
            for j in indices[1:]:  # twins of the first: served by its purchase, or sharing its error
                if reply.ok:
                    self.stats.cached += 1
                    self._saved(reply.cost_usd)
                    replies[j] = replace(reply, request=requests[j], cached=True, cost_usd=0.0)
                else:
                    replies[j] = replace(reply, request=requests[j])
            progress(len(indices))

        queue = iter(pending.items())  # shared by the workers: each request is taken once

        async def worker(i: int) -> None:
            await asyncio.sleep(i * START_SPACING_S)
            for key, indices in queue:
                await one(key, indices)

        # A fixed set of workers, not a task per request: the first requests go out without 10,000 tasks made first
        workers = min(len(pending), self.cfg.concurrency + claims_ahead(self.cfg.concurrency))
        await asyncio.gather(*(worker(i) for i in range(workers)))
        if self._fatal is not None:
            if isinstance(self._fatal, StoreError) and self.unstored:
                raise StoreError(f"{self._fatal} ({self.unstored} paid replies could not be stored)") from None
            raise self._fatal
        return replies  # type: ignore[return-value]  # every slot is filled above

    def check_failures(self, max_share: float) -> None:
        """TeacherFailures when more than max_share of the requests sent failed (after their retries)."""
        st = self.stats
        sent = st.requests + st.failures
        if sent and st.failures > max_share * sent:
            raise TeacherFailures(
                f"teacher {self.cfg.model}{' at ' + self.cfg.api_base if self.cfg.api_base else ''}: {st.failures} of "
                f"{sent} requests failed (more than teacher.max_failed_share={max_share:g}), last error: "
                f"{self.last_error or 'unknown'}; the stage is not kept as done: run the same command again once "
                "the teacher answers (stored replies are reused)")

    def _saved(self, cost_usd: float | None) -> None:
        st = self.stats
        st.saved_usd = None if cost_usd is None or st.saved_usd is None else st.saved_usd + cost_usd

    def _from_store(self, request: TeacherRequest, key: str, stored: StoredReply) -> TeacherReply:
        # bought by this run for this stage (in an earlier, interrupted invocation): paid, on the budget again; bought
        # by another stage of this run: that stage counts it, here it is free like any other stored reply
        if self.run is not None and stored.run == self.run and stored.stage in (None, self.stage):
            self._count_paid(stored.prompt_tokens, stored.completion_tokens, stored.cost_usd)
            self.stats.bought_earlier += 1
        else:
            self.stats.cached += 1
            self._saved(stored.cost_usd)
        return TeacherReply(request, stored.text, None, True, stored.prompt_tokens, stored.completion_tokens,
                            0.0, key)

    def _count_paid(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        """One reply this run paid for, now or in an earlier invocation: on the budget and in the stats."""
        self.ledger.record(cost)
        st = self.stats
        st.prompt_tokens += prompt_tokens
        st.completion_tokens += completion_tokens
        st.cost_usd = None if cost is None or st.cost_usd is None else st.cost_usd + cost

    def _exhausted(self) -> bool:
        if self.ledger.exhausted():
            self.stats.budget_exhausted = True
            return True
        return False

    async def _may_send(self, request: TeacherRequest, key: str) -> TeacherReply | None:
        """None when the budget allows one more request and the stage is not stopping, else the reply to give.

        Nothing is awaited between its last check and its return: the caller reserves its place (ledger.in_flight)
        before it awaits anything, so the requests in flight never pass max_requests together."""
        while not self._exhausted() and self.ledger.must_wait():
            await asyncio.sleep(0.02)  # only near the end of the budget; in-flight calls are time-bounded
        if self._exhausted():
            self.stats.skipped += 1
            return TeacherReply(request, None, BUDGET, key=key)
        return self._stopping(request, key)

    def _stopping(self, request: TeacherRequest, key: str) -> TeacherReply | None:
        """The reply of a request the stage will not send (a StoreError or an outage stopped it), else None."""
        if self._fatal is None:
            return None
        return TeacherReply(request, None, self._scrub(str(self._fatal))[:500], key=key)

    async def _fetch(self, request: TeacherRequest, key: str) -> TeacherReply:
        if (refused := await self._may_send(request, key)) is not None:
            return refused
        # Last look: another run sharing the store may have bought this reply meanwhile, or have it in flight
        # (claimed): then wait for its reply rather than buy it again.
        while True:
            stored, claimed = await self._batcher.run(lambda: self._look_or_claim(key))
            if stored is not None:
                return self._from_store(request, key, stored)
            if claimed:
                break
            await asyncio.sleep(CLAIM_POLL_S)
        # The claim was awaited (a store batch): the others in flight may have used the budget up meanwhile.
        if (refused := await self._may_send(request, key)) is not None:
            await self._batcher.run(lambda: self.store.release(key))
            return refused
        self.ledger.in_flight += 1
        try:
            reply = await self._call(request, key)
        finally:
            self.ledger.in_flight -= 1
        if not reply.ok:
            await self._batcher.run(lambda: self.store.release(key))  # another process may try it
        return reply

    def _look_or_claim(self, key: str) -> tuple[StoredReply | None, bool]:
        """The reply if the store has it now, else whether this client may buy it (see ResponseStore.claim)."""
        stored = self.store.get(key, count=False)
        if stored is not None:
            return stored, False
        return None, self.store.claim(key, stale_after_s=self._guard_s * (self.cfg.max_retries + 1) + RETRY_AFTER_CAP_S)

    async def _call(self, request: TeacherRequest, key: str) -> TeacherReply:
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": request.messages,
            "timeout": cfg.timeout_s,
            # Retries are ours, not litellm's num_retries nor the OpenAI SDK's own 2 silent retries:
            # we must see every attempt to count it, honour Retry-After, and never pay twice unseen.
            "max_retries": 0,
            "drop_params": True,  # providers without `seed` (Anthropic...) drop it instead of failing
            # The kind as data, never parsed from the prompt: litellm sends extra_headers as HTTP
            # headers (our server reads it) and hands them to a custom provider as `headers`.
            "extra_headers": {KIND_HEADER: request.kind},
            **self.params(request),
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        if self.__api_key:
            kwargs["api_key"] = self.__api_key
        # Hard stop in case a provider ignores `timeout` (custom providers may); later than the
        # provider's own timeout, which normally fires first with a better message.
        guard_s = self._guard_s
        error: BaseException | None = None
        # The slot is held until the reply is durable: at most cfg.concurrency paid replies are ever at risk (a full
        # disk loses those, no more). Retries' waits hold it too: a rate-limited provider is not sent more meanwhile.
        async with self._sending:
            if (stopped := self._stopping(request, key)) is not None:  # came while it waited for its slot
                return stopped
            for attempt in range(cfg.max_retries + 1):
                self.stats.attempts += 1
                try:
                    response = await asyncio.wait_for(litellm.acompletion(**kwargs), guard_s)
                except Exception as e:
                    error = e
                    if not _retryable(e) or attempt == cfg.max_retries:
                        break
                    self.stats.retries += 1
                    delay = self._delay(attempt, _retry_after(e))
                    log.info("teacher retry %d/%d in %.2fs: %s", attempt + 1, cfg.max_retries, delay,
                             self._describe(e))
                    await asyncio.sleep(delay)
                    continue
                return await self._paid_reply(request, key, response)
        self.stats.failures += 1
        attempts = f" (after {attempt + 1} attempts)" if attempt else ""
        self.last_error = self._describe(error) + attempts
        status = getattr(error, "status_code", None)
        if status in OUTAGE_STATUSES:
            self.store.release(key)
            raise TeacherOutage(
                f"teacher {cfg.model}{' at ' + cfg.api_base if cfg.api_base else ''} refused a request with HTTP "
                f"{status}: {self._describe(error)}; nothing more is sent and the stage is not kept as done: fix the "
                "key or setting and run the same command again (stored replies are reused)")
        return TeacherReply(request, None, self.last_error, key=key)

    async def _paid_reply(self, request: TeacherRequest, key: str, response: Any) -> TeacherReply:
        """Count a successful call against the budget, then store its reply before anyone uses it."""
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        # No usage block: tokens unknown, so the cost is too (unless the model is free).
        if usage is not None:
            free = self.cfg.model.startswith(FREE_PROVIDERS)
            cost = 0.0 if free else _priced_by_litellm(response, prompt_tokens + completion_tokens)
            if cost is _NOT_PRICED:  # litellm did not say: ask its price map ourselves (~0.3-0.5 ms of CPU)
                cost = token_cost(self.cfg.model, prompt_tokens, completion_tokens)
        else:
            cost = 0.0 if self.cfg.model.startswith(FREE_PROVIDERS) else None
        self._count_paid(prompt_tokens, completion_tokens, cost)
        st = self.stats
        st.requests += 1
        try:
            text = response.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            text = None
        if not text:
            st.failures += 1
            return TeacherReply(request, None, "empty reply", False, prompt_tokens, completion_tokens, cost, key)
        stored = StoredReply(text, prompt_tokens, completion_tokens, cost, self.cfg.model, request.prompt,
                             run=self.run, stage=self.stage)
        try:
            await self._batcher.run(lambda: self.store.put(key, stored))  # returns once the reply is durable
        except StoreError:
            self.unstored += 1
            raise
        return TeacherReply(request, text, None, False, prompt_tokens, completion_tokens, cost, key)

    @property
    def _guard_s(self) -> float:
        return self.cfg.timeout_s * 1.5 + 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gave one (capped), else exponential backoff with jitter."""
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_S) + self._rng.uniform(0, self.retry_base_s)
        return min(self.retry_max_s, self.retry_base_s * 2**attempt) * self._rng.uniform(0.5, 1.0)

    def _describe(self, e: BaseException | None) -> str:
        if isinstance(e, (TimeoutError, asyncio.TimeoutError)):
            return f"Timeout: no reply within {self._guard_s:.1f}s"
        return self._scrub(f"{type(e).__name__}: {e}")[:500]

    def _scrub(self, text: str) -> str:
        """Provider messages can echo the key (e.g. 'Incorrect API key provided: ...'); cut it out."""
        key = self.__api_key
        if key and key != NO_KEY and len(key) >= 4:
            text = text.replace(key, "***")
        return text
