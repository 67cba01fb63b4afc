"""An OpenAI-compatible HTTP server around the offline teacher (`fdd teacher serve`), with injected
faults (429s, 500s, hangs, fixed latency) for fault and throughput tests, and a JSONL request log.

A request's kind (solve, harder, similar) comes in the X-FDD-Request-Kind header, which the teacher
client sends with every call; a request without it (curl) is answered as solve, one with another
value is refused with a 400 (see fdd_core.teacher.offline).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import random
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fdd_core.teacher.offline import OfflineTeacher, parse_kind
from fdd_core.teacher.prompts import KIND_HEADER

MODEL_ID = "fdd-offline"
# How long an idle kept-alive connection stays open: longer than litellm's client pool keeps one (its aiohttp
# transport: AIOHTTP_KEEPALIVE_TIMEOUT, 120 s), so the client always closes first. With uvicorn's 5 s, a client whose
# event loop fell behind sent requests on connections the server was closing: "Server disconnected" connection
# errors, retried (106 of 1,280 requests at concurrency 256 on a loaded machine).
KEEP_ALIVE_S = 180
# What providers answer on an outage of configuration (as OpenAI words it), for --fail-status
OUTAGES = {
    401: ("Incorrect API key provided (injected fault).", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to use this model (injected fault).", "permission_error", "permission_denied"),
    404: ("The model `{model}` does not exist or you do not have access to it (injected fault).",
          "invalid_request_error", "model_not_found"),
}


class FaultPlan(BaseModel):
    """Shares of requests answered with a fault, each request drawn independently (seeded)."""

    model_config = ConfigDict(extra="forbid")

    fail_429: float = Field(0.0, ge=0, le=1, description="Share answered 429 with Retry-After: 1.")
    fail_500: float = Field(0.0, ge=0, le=1, description="Share answered 500.")
    fail_timeout: float = Field(0.0, ge=0, le=1, description="Share that hang slow_s seconds before answering.")
    slow_s: float = Field(30.0, ge=0, description="How long a hanging request waits: beyond the client's timeout.")
    latency_s: float = Field(0.0, ge=0, description="Fixed delay added to every reply (throughput benchmarks).")
    fail_status: int | None = Field(
        None, ge=400, le=599, description="Answer every request with this HTTP status, as a provider does on a bad key (401), "
        "a refused permission (403) or an unknown model (404)."
    )
    seed: int = Field(0, description="Seed of the per-request fault draws.")

    def outcome(self, request_number: int) -> str:
        """'ok', '429', '500' or 'timeout' for the n-th request: deterministic in (seed, n)."""
        digest = hashlib.sha256(f"{self.seed}:{request_number}".encode()).digest()
        u = random.Random(int.from_bytes(digest[:8], "big")).random()
        for outcome, share in (("429", self.fail_429), ("500", self.fail_500), ("timeout", self.fail_timeout)):
            if u < share:
                return outcome
            u -= share
        return "ok"


class ChatRequest(BaseModel):
    """The fields of an OpenAI chat completion request this server reads; others are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(1, ge=1, le=128)
    seed: int | None = None
    stream: bool = False


def _error(status: int, message: str, kind: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _completion(teacher: OfflineTeacher, req: ChatRequest, kind: str | None) -> dict[str, Any]:
    first = req.seed if req.seed is not None else 0
    texts, prompt, done = teacher.complete(req.messages, kind, req.n, first)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": req.model,
        "system_fingerprint": MODEL_ID,
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop", "logprobs": None}
            for i, t in enumerate(texts)
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done},
    }


def create_app(teacher: OfflineTeacher, faults: FaultPlan, log_path: Path | None) -> FastAPI:
    """The app: POST /v1/chat/completions, GET /v1/models, GET /health."""
    app = FastAPI(title="fdd offline teacher", docs_url=None, redoc_url=None)
    counter = itertools.count()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)

    def log(status: int | str, outcome: str, req: ChatRequest | None, started: float, kind: str | None = None,
            agent: str | None = None) -> None:
        # What was asked, never who asked: no key, only the kind header, the client library's User-Agent (which
        # HTTP path of litellm sent it), and a hash instead of the prompt.
        if log_path is None:
            return
        digest = hashlib.sha256(json.dumps(req.messages, sort_keys=True).encode()).hexdigest() if req else None
        line = {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "status": status,
            "outcome": outcome, "model": req.model if req else None, "n": req.n if req else None,
            "seed": req.seed if req else None,
            "kind": kind, "user_agent": agent, "messages_sha256": digest, "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        with open(log_path, "a", encoding="utf-8") as f:  # one write per line: lines never interleave
            f.write(json.dumps(line) + "\n")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fdd"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        started = time.monotonic()
        say = functools.partial(log, agent=request.headers.get("user-agent"))
        try:
            req = ChatRequest.model_validate(await request.json())
        except (ValidationError, ValueError) as e:
            say(400, "bad_request", None, started)
            return _error(400, f"invalid request: {str(e)[:500]}", "invalid_request_error")
        try:
            kind = parse_kind(request.headers.get(KIND_HEADER))
        except ValueError as e:
            say(400, "bad_request", req, started)
            return _error(400, f"invalid request: {KIND_HEADER}: {str(e)[:200]}", "invalid_request_error")
        if req.stream:
            say(400, "bad_request", req, started, kind)
            return _error(400, "streaming is not supported by the offline teacher", "invalid_request_error")
        if faults.fail_status is not None:
            status = faults.fail_status
            message, error_type, code = OUTAGES.get(status, (f"Injected error {status}.", "server_error", None))
            say(status, f"fail_{status}", req, started, kind)
            return _error(status, message.format(model=req.model), error_type, code)
        outcome = faults.outcome(next(counter))
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        if outcome == "429":
            say(429, outcome, req, started, kind)
            return _error(429, "Rate limit reached (injected fault); retry after 1 s.", "rate_limit_error",
                          "rate_limit_exceeded", headers={"Retry-After": "1"})
        if outcome == "500":
            say(500, outcome, req, started, kind)
            return _error(500, "The server had an error (injected fault).", "server_error", "internal_error")
        if outcome == "timeout":
            say("timeout", outcome, req, started, kind)  # logged first: the client has gone by the end
            deadline = time.monotonic() + faults.slow_s
            while time.monotonic() < deadline and not await request.is_disconnected():
                await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
        body = _completion(teacher, req, kind)
        if outcome == "ok":
            say(200, outcome, req, started, kind)
        return JSONResponse(body)

    return app


def serve(host: str = "127.0.0.1", port: int = 8765, *, error_rate: float = 0.1, faults: FaultPlan | None = None,
          log_path: Path | None = None, reference_path: Path | None = None, seed: int = 0) -> None:
    """Serve until interrupted; prints "fdd teacher serving on http://HOST:PORT/v1" once it accepts requests."""
    import uvicorn

    teacher = OfflineTeacher(error_rate=error_rate, seed=seed, reference=reference_path)
    app = create_app(teacher, faults or FaultPlan(), log_path)
    # A short graceful shutdown: a hanging (fail_timeout) request must not hold up Ctrl-C.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_keep_alive=KEEP_ALIVE_S, timeout_graceful_shutdown=2))

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port  # port 0: the real one
            print(f"fdd teacher serving on http://{host}:{bound}/v1", flush=True)
        await task

    asyncio.run(run())
