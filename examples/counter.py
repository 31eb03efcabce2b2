"""The smallest shoal program: an embedded node and one virtual actor.

.venv/bin/python examples/counter.py
"""

from __future__ import annotations

import asyncio

from actors import Node, RemoteError, actor


@actor
class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def incr(self, n: int = 1) -> int:
        self.count += n
        return self.count

    def fail(self) -> None:
        raise ValueError("no")


async def main() -> None:
    async with Node() as node:
        alice = node.ref(Counter, "alice")
        print("incr ->", await alice.incr(5))
        alice.incr.tell(1)
        print("after a tell ->", await alice.incr(0))
        try:
            await alice.fail()
        except RemoteError as err:
            print("the actor raised", err.type_name, "and is still alive:", await alice.incr(0))


if __name__ == "__main__":
    asyncio.run(main())
