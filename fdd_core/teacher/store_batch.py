"""The response store's calls of the teacher requests in flight, run off the event loop in batches.

Each store write is a commit, and a durable commit (synchronous=FULL) waits for the disk: ~5 ms here, three of them
per request (claim, reply, claim's release). Made on the event loop, they stopped every request in flight for that
long: at concurrency 256 the loop spent most of its time waiting on fsync. Here the calls queue up and one helper
thread runs all the queued ones in one transaction, one fsync for the lot, while the loop goes on reading replies;
the calls that arrive meanwhile form the next batch. A put still returns only once its reply is durable: stored
before it is used. A batch that cannot commit (a full disk) fails every call in it with the StoreError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from fdd_core.teacher.response_store import ResponseStore

T = TypeVar("T")


class StoreBatcher:
    """Runs store calls (closures over `store`) in batches, each in one transaction, in a helper thread.

    One per event loop run (agenerate): its queue and drain task belong to that loop."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self._queue: list[tuple[Callable[[], Any], asyncio.Future]] = []
        self._drain_task: asyncio.Task | None = None
        self.batches = 0  # transactions committed (or tried): the fsyncs the requests shared

    async def run(self, call: Callable[[], T]) -> T:
        """call() run in the next batch; its result, or the exception of the call or of its batch's commit."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((call, future))
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            outcomes = await asyncio.to_thread(self._apply, [call for call, _ in batch])
            for (_, future), (ok, value) in zip(batch, outcomes):
                if future.done():  # its request was cancelled
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _apply(self, calls: list[Callable[[], Any]]) -> list[tuple[bool, Any]]:
        self.batches += 1
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.store.transaction():
                for call in calls:
                    outcomes.append((True, call()))
        except Exception as e:  # nothing in the batch was committed: every call fails with the error
            return [(False, e)] * len(calls)
        return outcomes
