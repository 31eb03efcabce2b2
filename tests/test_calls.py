"""Outbound calls: the pushback of paced tells from a remote sender to a full mailbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from actors import Node
from runtime.calls import TELL_WINDOW
from tests.cluster import host_and_client, queued, until
from tests.sample_actors import Gated, gate

pytestmark = pytest.mark.timeout(60)

LIMIT = 300


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Node, Node]]:
    """A member that hosts everything (``mailbox_limit`` LIMIT) and a pure client of it."""
    async with host_and_client("calls-host", LIMIT) as nodes:
        yield nodes


def _queued(node: Node, key: str) -> int:
    return queued(node, "Gated", key)


async def test_a_remote_teller_that_awaits_waits_while_the_mailbox_is_full(
    pair: tuple[Node, Node],
) -> None:
    host, client = pair
    g = client.ref(Gated, "paced")
    await g.counts()  # active on the host
    await g.hold.tell("paced")  # its turn holds: what follows queues up
    sent = 0
    total = 4 * LIMIT

    async def teller() -> None:
        nonlocal sent
        for i in range(total):
            await g.note.tell(i)
            sent += 1

    task = asyncio.ensure_future(teller())
    try:
        # the teller stops: two windows past the limit at most, then it waits for room
        await until(lambda: _queued(host, "paced") >= LIMIT, 10)
        # all arrived, the last one sent waits (``sent`` counts those that returned)
        await until(lambda: _queued(host, "paced") == sent + 1, 10)
        assert not task.done()
        assert LIMIT <= sent <= LIMIT + 2 * TELL_WINDOW, sent
        gate("paced").set()
        await asyncio.wait_for(task, 20)
    finally:
        task.cancel()
    assert await g.notes() == list(range(total))  # nothing lost, in order
