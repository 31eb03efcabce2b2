"""The actors that ``bench/bench_remote.py``'s node process serves (``--import``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Generator
from typing import Any

from actors import actor


class TaskCounter:
    """A task factory that counts the tasks a loop creates (hot-path accounting)."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any],
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        self.created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[arg-type]

    def install(self) -> None:
        asyncio.get_running_loop().set_task_factory(self)  # type: ignore[arg-type]


@actor(name="bench.RemoteCounter")
class RemoteCounter:
    def __init__(self) -> None:
        self.count = 0

    async def incr(self, n: int) -> int:
        self.count += n
        return self.count

    async def peek(self) -> int:
        return self.count


_SERVER_TASKS = TaskCounter()


@actor(name="bench.Accounting")
class Accounting:
    """Reports the serving node process's task count and allocated blocks."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        if not isinstance(loop.get_task_factory(), TaskCounter):
            _SERVER_TASKS.install()

    def tasks_created(self) -> int:
        return _SERVER_TASKS.created

    def allocated_blocks(self) -> int:
        return sys.getallocatedblocks()


class _Lag:
    """The longest delay of a 10 ms timer on this process's loop since the last reset."""

    max = 0.0
    running = False

    @classmethod
    def tick(cls, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        cls.max = max(cls.max, now - due)
        loop.call_at(now + 0.01, cls.tick, loop, now + 0.01)


@actor(name="bench.LoopLag")
class LoopLag:
    """Measures how long the node's loop goes without running a timer (a stalled loop looks
    like a dead node to failure detection)."""

    def start(self) -> None:
        if not _Lag.running:
            _Lag.running = True
            loop = asyncio.get_running_loop()
            loop.call_at(loop.time() + 0.01, _Lag.tick, loop, loop.time() + 0.01)
        _Lag.max = 0.0

    def max_lag(self) -> float:
        return _Lag.max
