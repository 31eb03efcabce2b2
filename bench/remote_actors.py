"""The actor that ``bench/bench_remote.py``'s node process serves (``--import``)."""

from __future__ import annotations

from actors import actor


@actor(name="bench.RemoteCounter")
class RemoteCounter:
    def __init__(self) -> None:
        self.count = 0

    async def incr(self, n: int) -> int:
        self.count += n
        return self.count

    async def peek(self) -> int:
        return self.count
