"""The event loop the teacher's client and server run on."""

from __future__ import annotations

import asyncio
from typing import Any


def run_loop(coro: Any) -> Any:
    """coro run to its end in a fresh event loop: uvloop's where it is installed (Linux and macOS), asyncio's else.

    uvloop (libuv; uvicorn takes it too when installed) cut the client's CPU a request from 1.84 to 1.52 ms at
    concurrency 256 on 2 cores (bench/bench_pipeline.py --teacher-only, issue 15); aiohttp, httpx, litellm and
    uvicorn run on it unchanged. Ctrl-C cancels the coroutine as asyncio.run does (uvloop.run is asyncio.Runner
    with uvloop's loop)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
