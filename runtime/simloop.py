"""A virtual-time event loop: a cluster of in-memory nodes run deterministically, fast.

:class:`VirtualTimeLoop` is an ordinary asyncio selector loop whose clock is virtual: when
nothing is ready to run, instead of waiting for the next timer it jumps straight to it. Code on
it cannot tell (``asyncio.sleep``, timeouts and ``loop.call_at`` all work), except that no time
passes while it computes. With the in-memory transport (``runtime.memory_transport``, which
uses only callbacks and timers, no file descriptors) and a :class:`~runtime.clock.Clock` per
node whose wall clock follows the loop (:func:`sim_clock`), a run is a pure function of its
seed and of ``PYTHONHASHSEED`` (set iteration order): a failing schedule replays exactly.

Nothing here may wait on a real file descriptor: the selector never blocks. A loop with no
timer left and nothing ready would wait forever; it raises ``RuntimeError`` instead.
"""

from __future__ import annotations

import asyncio
import random
import selectors
from typing import Any

from runtime.clock import Clock

__all__ = ["VirtualTimeLoop", "sim_clock"]

#: The wall clock's reading at virtual time 0 (any fixed instant will do).
EPOCH = 1_800_000_000.0


class _JumpingSelector(selectors.BaseSelector):
    """Registers file objects (the loop's self-pipe) but never waits: ``select(timeout)``
    advances the loop's virtual clock by ``timeout`` and reports nothing ready."""

    def __init__(self, loop_clock: list[float]) -> None:
        self._clock = loop_clock
        self._keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return self._keys.pop(fd)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual-time loop: nothing is scheduled, it would wait forever")
        if timeout > 0:
            self._clock[0] += timeout
        return []

    def get_map(self) -> Any:
        return self._keys

    def close(self) -> None:
        self._keys.clear()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is virtual and jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual = [0.0]
        super().__init__(_JumpingSelector(self._virtual))

    def time(self) -> float:
        return self._virtual[0]


def sim_clock(loop: VirtualTimeLoop, seed: int) -> Clock:
    """A node clock for ``loop``: wall time follows the loop's virtual time, randomness comes
    from ``seed``."""
    return Clock(wall=lambda: EPOCH + loop.time(), rng=random.Random(seed))
