"""The virtual-time loop and the node clock that follows it."""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.clock import Clock
from runtime.simloop import EPOCH, VirtualTimeLoop, sim_clock


def _run(coro_fn):  # type: ignore[no-untyped-def]
    loop = VirtualTimeLoop()
    try:
        return loop, loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_time_jumps_to_the_next_timer_without_waiting() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        seen = []
        started = time.perf_counter()
        await asyncio.sleep(3600)
        seen.append(loop.time())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.sleep(10)
        seen.append(loop.time())
        fired: list[float] = []
        loop.call_at(loop.time() + 0.25, lambda: fired.append(loop.time()))
        await asyncio.sleep(1)
        seen.extend(fired)
        assert time.perf_counter() - started < 1.0  # an hour and more, in no real time
        return seen

    _, seen = _run(main)
    assert seen == [3600.0, 3602.5, 3602.75]


def test_a_loop_with_nothing_scheduled_refuses_to_wait_forever() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        await loop.create_future()  # nobody will ever set it

    with pytest.raises(RuntimeError, match="wait forever"):
        _run(main)


def test_sim_clock_follows_the_loop_and_its_seed() -> None:
    loop = VirtualTimeLoop()
    try:
        a, b = sim_clock(loop, 7), sim_clock(loop, 7)
        assert a.wall() == EPOCH
        loop.run_until_complete(asyncio.sleep(12.5))
        assert a.wall() == EPOCH + 12.5
        assert [a.random.random() for _ in range(3)] == [b.random.random() for _ in range(3)]
        assert a.derive().random() == b.derive().random()
    finally:
        loop.close()


def test_default_clock_is_the_system_clock() -> None:
    clock = Clock()
    assert abs(clock.wall() - time.time()) < 1.0
    assert clock.derive() is not clock.random
