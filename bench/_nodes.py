"""Helpers of the cluster benchmarks (real node processes): which key lands where, and the
data-plane envelopes each node received."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import _util  # noqa: F401  (puts the repository on sys.path)

from actors import Node
from tests.cluster import ring_owner

#: Envelope kinds counted as data plane (wire.ASK, TELL, REPLY, ERROR; CONTROL, which carries
#: membership and view syncs, is not).
DATA_PLANE = slice(1, 5)


async def wait_members(client: Node, addresses: Sequence[str], timeout: float = 30) -> float:
    """Wait until the client's member list is ``addresses``; returns the seconds it took."""
    t0 = time.monotonic()
    while sorted(client.members) != sorted(addresses):
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"cluster did not reach {sorted(addresses)}: {client.members}")
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


async def node_agents(
    client: Node, addresses: Sequence[str], type_name: str = "NodeInfo"
) -> dict[str, str]:
    """A key of ``type_name`` (``NodeInfo`` or ``Meter``) hosted by each of ``addresses``:
    keys the client's ring gives to each, activated, then confirmed with ``client.locate`` (an
    activation stays where it is when a join moves its key's ownership, so the ring alone is
    not enough)."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(addresses):
        members = client.members
        batch = []
        for _ in range(1_000):
            key = f"{type_name.lower()}-{i}"
            i += 1
            if ring_owner(members, type_name, key) in set(addresses) - set(found):
                batch.append(key)
                if len(batch) >= 2 * len(addresses):
                    break
        await asyncio.gather(*(touch(client, type_name, k) for k in batch), return_exceptions=True)
        where = await asyncio.gather(*(client.locate(client.ref(type_name, k)) for k in batch))
        for key, host in zip(batch, where, strict=True):
            if host in addresses:
                found.setdefault(host, key)
        if i > 50_000:
            raise RuntimeError(f"no {type_name} key lands on {set(addresses) - set(found)}")
    return found


async def touch(client: Node, type_name: str, key: str) -> object:
    """One cheap call that activates ``type_name`` ``key`` (a NodeInfo or a Meter)."""
    ref = client.ref(type_name, key)
    if type_name == "Meter":
        return await ref.received.ask(timeout=5)
    return await ref.view.ask(timeout=5)


async def envelopes(client: Node, meters: dict[str, str]) -> dict[str, int]:
    """Data-plane envelopes received so far, per member (by its Meter actor) and by the client
    (key ``"client"``). A reading counts its own envelopes too."""
    counts = await asyncio.gather(*(client.ref("Meter", k).received() for k in meters.values()))
    out = {a: sum(c[DATA_PLANE]) for a, c in zip(meters, counts, strict=True)}
    # the client's own counters: no public API reads them
    assert client._messaging is not None
    out["client"] = sum(client._messaging.received[DATA_PLANE])
    return out
