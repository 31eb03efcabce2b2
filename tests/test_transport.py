"""Tests of the transport layer: ZmqTransport (tcp and ipc) and MemoryTransport.

Most tests are written once as a *scenario* over a :class:`Harness` and run for every kind
(``zmq-tcp``, ``zmq-ipc``, ``memory``) on the default asyncio loop; a few scenarios also run
on uvloop. Waiting is always on events (queues, futures) bounded by timeouts, never on sleeps.
Raw zmq sockets used to poke the ZeroMQ transport come from a ``zmq.asyncio`` context and
are closed with linger 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop
import zmq
import zmq.asyncio

from actors.errors import NodeUnavailable
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from runtime.security import CurveKeys
from runtime.transport import Route, Transport, coalesce
from runtime.zmq_transport import ZmqTransport

KINDS = ["zmq-tcp", "zmq-ipc", "memory"]
WAIT = 5.0  # upper bound on any single wait; normally they take milliseconds


class Peer:
    """A started transport and what reached it through ``deliver`` and ``peer_down``."""

    def __init__(self, transport: Transport) -> None:
        self.t = transport
        self.frames: asyncio.Queue[tuple[bytes, Route]] = asyncio.Queue()
        self.downs: asyncio.Queue[str] = asyncio.Queue()

    @property
    def address(self) -> str:
        return self.t.address

    def deliver(self, frame: bytes, route: Route) -> None:
        self.frames.put_nowait((frame, route))

    def deliver_attached(self, frame: bytes, attachment: memoryview, route: Route) -> None:
        """Attached messages join the same queue, as ``(frame, bytes of attachment), route``."""
        assert type(attachment) is memoryview and attachment.format == "B"
        self.frames.put_nowait(((frame, bytes(attachment)), route))  # type: ignore[arg-type]

    async def recv(self, timeout: float = WAIT) -> tuple[bytes, Route]:
        async with asyncio.timeout(timeout):
            return await self.frames.get()

    async def recv_bytes(self, total: int, timeout: float = WAIT) -> list[bytes]:
        """Frames received until they hold ``total`` bytes."""
        frames: list[bytes] = []
        got = 0
        async with asyncio.timeout(timeout):
            while got < total:
                frame, _ = await self.frames.get()
                frames.append(frame)
                got += len(frame)
        assert got == total
        return frames

    async def next_down(self, timeout: float = WAIT) -> str:
        async with asyncio.timeout(timeout):
            return await self.downs.get()


class Stalled:
    """A receiver that does not read (so its senders hit backpressure) until resumed."""

    address: str

    async def resume_and_collect(self, total: int) -> bytes:
        raise NotImplementedError

    async def kill(self) -> None:
        raise NotImplementedError


class Harness:
    """Creates transports of one kind and cleans up everything it created."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.tmpdir = tempfile.mkdtemp(prefix="shoal-t-", dir="/tmp")  # short ipc paths
        self.network = MemoryNetwork()
        self.peers: list[Peer] = []
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.zctx: zmq.asyncio.Context | None = None
        self._n = 0

    @property
    def is_zmq(self) -> bool:
        return self.kind.startswith("zmq")

    def endpoint(self) -> str:
        self._n += 1
        if self.kind == "zmq-tcp":
            return "tcp://127.0.0.1:0"
        if self.kind == "zmq-ipc":
            return f"ipc://{self.tmpdir}/s{self._n}"
        return "mem://"

    def transport(self, **kwargs: Any) -> Transport:
        if self.is_zmq:
            return ZmqTransport(**kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k in ("max_frame_bytes", "backlog_hwm")}
        return MemoryTransport(self.network, **kwargs)

    async def start(
        self, listen: str | bool | None = True, attached: bool = False, **kwargs: Any
    ) -> Peer:
        """A started transport; ``listen=True`` picks a fresh endpoint, ``None`` is client-only;
        ``attached``: it takes attached messages (into the same queue as frames)."""
        peer = Peer(self.transport(**kwargs))
        self.peers.append(peer)
        endpoint = self.endpoint() if listen is True else listen
        assert endpoint is None or isinstance(endpoint, str)
        more = peer.deliver_attached if attached else None
        await peer.t.start(endpoint, peer.deliver, peer.downs.put_nowait, more)
        return peer

    def dead_address(self) -> str:
        """An address nothing listens on."""
        if self.kind == "zmq-tcp":
            with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as s:
                s.setsockopt(zmq.LINGER, 0)
                s.bind("tcp://127.0.0.1:0")
                return str(s.getsockopt_string(zmq.LAST_ENDPOINT))
        if self.kind == "zmq-ipc":
            return f"ipc://{self.tmpdir}/nobody"
        return "mem://nobody"

    def raw(self, kind: int) -> Any:
        """A raw ``zmq.asyncio`` socket (closed with linger 0 at cleanup)."""
        if self.zctx is None:
            self.zctx = zmq.asyncio.Context()
        sock = self.zctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)

        async def close() -> None:
            sock.close(linger=0)

        self.cleanups.append(close)
        return sock

    async def stalled(self) -> Stalled:
        if self.is_zmq:
            return await self._stalled_zmq()
        return await self._stalled_memory()

    async def _stalled_zmq(self) -> Stalled:
        sock = self.raw(zmq.ROUTER)
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
        sock.bind(self.endpoint())

        class _Z(Stalled):
            address = sock.getsockopt_string(zmq.LAST_ENDPOINT)

            async def resume_and_collect(self, total: int) -> bytes:
                parts: list[bytes] = []
                got = 0
                while got < total:
                    _ident, frame = await sock.recv_multipart()
                    parts.append(frame)
                    got += len(frame)
                return b"".join(parts)

            async def kill(self) -> None:
                sock.close(linger=0)

        return _Z()

    async def _stalled_memory(self) -> Stalled:
        peer = await self.start()
        net = self.network
        net.pause(peer.t.name)  # type: ignore[attr-defined]

        class _M(Stalled):
            address = peer.address

            async def resume_and_collect(self, total: int) -> bytes:
                net.resume(peer.t.name)  # type: ignore[attr-defined]
                return b"".join(await peer.recv_bytes(total))

            async def kill(self) -> None:
                net.kill(peer.address)

        return _M()

    async def close(self) -> None:
        for peer in self.peers:
            await peer.t.close()
        for cleanup in self.cleanups:
            await cleanup()
        if self.zctx is not None:
            self.zctx.term()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture(params=KINDS)
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = Harness(request.param)
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture(params=["zmq-tcp", "zmq-ipc"])
async def zh(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """Like ``h``, for the ZeroMQ kinds only."""
    harness = Harness(request.param)
    try:
        yield harness
    finally:
        await harness.close()


# --------------------------------------------------------------------------- scenarios


async def scenario_exchange(h: Harness) -> None:
    a = await h.start()
    b = await h.start()
    assert a.address and b.address and a.address != b.address

    # a -> b arrives with a connection route; the answer comes back with b's address.
    a.t.send(b.address, b"a->b")
    frame, route_ab = await b.recv()
    assert frame == b"a->b" and isinstance(route_ab, bytes)
    b.t.reply(route_ab, b"answer to a")
    frame, route = await a.recv()
    assert (frame, route) == (b"answer to a", b.address)
    # Replying along a str route is a send to that peer (same connection as before).
    a.t.reply(route, b"a->b again")
    assert await b.recv() == (b"a->b again", route_ab)

    # And the other way round, on the other pair of sockets.
    b.t.send(a.address, b"b->a")
    frame, route_ba = await a.recv()
    assert frame == b"b->a" and isinstance(route_ba, bytes)
    a.t.reply(route_ba, b"answer to b")
    assert await b.recv() == (b"answer to b", a.address)

    # A client-only transport can call and get answers.
    c = await h.start(listen=None)
    assert c.address == ""
    c.t.send(b.address, b"from client")
    frame, route_cb = await b.recv()
    assert frame == b"from client"
    b.t.reply(route_cb, b"to client")
    assert await c.recv() == (b"to client", b.address)
    for p in (a, b, c):
        assert p.downs.empty()


async def scenario_coalescing(h: Harness) -> None:
    a = await h.start()
    b = await h.start()
    a.t.send(b.address, b"warm-up")  # connect first, so the batch is not split by that
    await b.recv()
    chunks = [b"%05d;" % i for i in range(100)]
    for c in chunks:
        a.t.send(b.address, c)
    # at most the first chunk of the iteration leaves inside send(); the rest wait to coalesce
    assert a.t.backlog(b.address) in (594, 600)
    frames = await b.recv_bytes(600)
    assert len(frames) <= 3
    assert b"".join(frames) == b"".join(chunks)
    # Replies coalesce the same way.
    _, route = await _roundtrip(a, b)
    for c in chunks:
        b.t.reply(route, c)
    frames = await a.recv_bytes(600)
    assert len(frames) <= 3
    assert b"".join(frames) == b"".join(chunks)


async def _roundtrip(a: Peer, b: Peer) -> tuple[bytes, Route]:
    a.t.send(b.address, b"?")
    return await b.recv()


async def scenario_peer_down_on_close(h: Harness) -> None:
    a = await h.start()
    b = await h.start()
    address = b.address
    a.t.send(address, b"hello")
    await b.recv()
    await b.t.close()
    assert await a.next_down() == address
    # Reported once per outage, although zmq keeps retrying the connection meanwhile.
    a.t.send(address, b"while down")
    with pytest.raises(TimeoutError):
        await a.next_down(timeout=0.5)
    # The peer comes back on the same address: traffic flows again...
    b2 = await h.start(listen=address)
    a.t.send(address, b"back")
    async with asyncio.timeout(WAIT):
        while (await b2.recv())[0] != b"back":
            pass  # zmq may first deliver what was queued while the peer was down
    # ...and it can go down again.
    await b2.t.close()
    assert await a.next_down() == address


# Enough backlog that the socket buffers between us and a stalled receiver (a few MiB of
# kernel and zmq buffers, which keep draining our outbox for a while after the first refusal)
# cannot absorb it: drained() must then wait for the receiver itself.
STALL_BACKLOG = 8 * 1024 * 1024
HWM = 64 * 1024


async def _fill(a: Peer, peer: str, sent: list[bytes] | None = None) -> None:
    """Send numbered 16 KiB chunks until the backlog for ``peer`` is over STALL_BACKLOG."""
    i = 0
    async with asyncio.timeout(WAIT * 2):
        while a.t.backlog(peer) < STALL_BACKLOG:
            for _ in range(16):
                chunk = i.to_bytes(4, "big") * (16 * 1024 // 4)
                if sent is not None:
                    sent.append(chunk)
                a.t.send(peer, chunk)
                i += 1
            await asyncio.sleep(0)  # the flush runs: what is still queued was refused


async def scenario_backpressure(h: Harness) -> None:
    stalled = await h.stalled()
    a = await h.start(listen=None, sndhwm=1, rcvhwm=1, backlog_hwm=HWM, max_frame_bytes=HWM)
    peer = stalled.address
    sent: list[bytes] = []
    await _fill(a, peer, sent)
    drained = asyncio.ensure_future(a.t.drained(peer))
    done, _ = await asyncio.wait({drained}, timeout=0.3)
    assert not done, "drained() returned although the receiver reads nothing"
    assert a.t.backlog(peer) >= HWM
    total = sum(map(len, sent))
    async with asyncio.timeout(WAIT * 2):
        received = await stalled.resume_and_collect(total)
        await drained
    assert received == b"".join(sent)  # nothing lost, nothing reordered
    assert a.t.backlog(peer) == 0
    assert a.t.backlog_hwm == HWM
    await a.t.drained(peer)  # returns at once now


async def scenario_drained_fails_when_peer_dies(h: Harness) -> None:
    stalled = await h.stalled()
    a = await h.start(listen=None, sndhwm=1, rcvhwm=1, backlog_hwm=HWM, max_frame_bytes=HWM)
    peer = stalled.address
    await _fill(a, peer)
    drained = asyncio.ensure_future(a.t.drained(peer))
    await stalled.kill()
    assert await a.next_down() == peer
    with pytest.raises(NodeUnavailable):
        async with asyncio.timeout(WAIT):
            await drained


SCENARIOS = {
    "exchange": scenario_exchange,
    "coalescing": scenario_coalescing,
    "peer_down_on_close": scenario_peer_down_on_close,
    "backpressure": scenario_backpressure,
}

# --------------------------------------------------------------------------- tests, all kinds


async def test_exchange_both_ways_and_replies(h: Harness) -> None:
    await scenario_exchange(h)


async def test_coalescing(h: Harness) -> None:
    await scenario_coalescing(h)


async def test_ordering_per_peer(h: Harness) -> None:
    a = await h.start()
    b = await h.start()
    c = await h.start(listen=None)
    sent: dict[str, list[bytes]] = {"a": [], "c": []}
    for i in range(40):
        for name, p in (("a", a), ("c", c)):
            for j in range(i * 7 % 50 + 1):
                chunk = b"%s%06d:%03d;" % (name.encode(), i, j)
                sent[name].append(chunk)
                p.t.send(b.address, chunk)
        await asyncio.sleep(0)  # several iterations, so several frames
    total = sum(len(x) for chunks in sent.values() for x in chunks)
    got: dict[Route, list[bytes]] = {}
    async with asyncio.timeout(WAIT):
        n = 0
        while n < total:
            frame, route = await b.recv()
            got.setdefault(route, []).append(frame)
            n += len(frame)
    streams = sorted(b"".join(frames) for frames in got.values())
    assert streams == sorted(b"".join(chunks) for chunks in sent.values())


async def test_backpressure(h: Harness) -> None:
    await scenario_backpressure(h)


async def test_backpressure_on_replies(h: Harness) -> None:
    """Replies to a caller that stops reading queue up on our side of its connection."""
    a = await h.start(sndhwm=1, rcvhwm=1, backlog_hwm=HWM, max_frame_bytes=HWM)
    if h.is_zmq:
        caller = h.raw(zmq.DEALER)
        caller.setsockopt(zmq.RCVHWM, 1)
        caller.setsockopt(zmq.RCVBUF, 4096)
        caller.connect(a.address)
        await caller.send(b"go")

        async def collect(total: int) -> bytes:
            parts: list[bytes] = []
            got = 0
            while got < total:
                parts.append(await caller.recv())
                got += len(parts[-1])
            return b"".join(parts)
    else:
        c = await h.start(listen=None)
        c.t.send(a.address, b"go")

        async def collect(total: int) -> bytes:
            h.network.resume(c.t.name)  # type: ignore[attr-defined]
            return b"".join(await c.recv_bytes(total))

    frame, route = await a.recv()
    assert frame == b"go"
    if not h.is_zmq:
        h.network.pause(c.t.name)  # type: ignore[attr-defined]
    sent: list[bytes] = []
    i = 0
    async with asyncio.timeout(WAIT * 2):
        while a.t.backlog(route) < STALL_BACKLOG:
            for _ in range(16):
                sent.append(i.to_bytes(4, "big") * 4096)
                a.t.reply(route, sent[-1])
                i += 1
            await asyncio.sleep(0)
    drained = asyncio.ensure_future(a.t.drained(route))
    done, _ = await asyncio.wait({drained}, timeout=0.3)
    assert not done
    async with asyncio.timeout(WAIT * 2):
        received = await collect(sum(map(len, sent)))
        await drained
    assert received == b"".join(sent)
    assert a.t.backlog(route) == 0


async def test_drained_fails_when_peer_dies(h: Harness) -> None:
    await scenario_drained_fails_when_peer_dies(h)


async def test_peer_down_on_close(h: Harness) -> None:
    await scenario_peer_down_on_close(h)


async def test_connection_refused(h: Harness) -> None:
    a = await h.start(listen=None)
    dead = h.dead_address()
    a.t.send(dead, b"anyone?")
    assert await a.next_down() == dead
    await a.t.drained(dead)  # backlog is small: no waiting, no error


async def test_bind_conflict_and_bad_addresses(h: Harness) -> None:
    a = await h.start()
    if h.kind != "zmq-ipc":  # ipc bind silently takes over the path, like unlink + bind
        with pytest.raises(OSError):
            await h.start(listen=a.address)
    with pytest.raises(ValueError):
        a.t.send("no-scheme-here", b"x")
    with pytest.raises(ValueError):
        await h.start(listen="bogus://x")


async def test_close_is_idempotent_and_send_after_close_is_ignored(h: Harness) -> None:
    a = await h.start()
    b = await h.start()
    a.t.send(b.address, b"x")
    await b.recv()
    await a.t.close()
    await a.t.close()
    a.t.send(b.address, b"ignored")
    with pytest.raises(NodeUnavailable):
        await a.t.drained(b.address)


async def test_forget_closes_the_connection(h: Harness) -> None:
    a = await h.start(listen=None)
    dead = h.dead_address()
    a.t.send(dead, b"x" * 10)
    assert await a.next_down() == dead
    a.t.forget(dead)
    a.t.forget(dead)  # unknown peers are ignored
    assert a.t.backlog(dead) == 0
    if isinstance(a.t, ZmqTransport):
        assert dead not in a.t._dealers
    # A later send connects afresh.
    b = await h.start()
    a.t.send(b.address, b"hello")
    a.t.forget(b.address)  # dropped, unless it left at once inside send()
    a.t.send(b.address, b"again")
    first = (await b.recv())[0]
    if first == b"hello":
        first = (await b.recv())[0]
    assert first == b"again"


# --------------------------------------------------------------------------- zmq specific

RAW_ECHO_SERVER = """
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
s.setsockopt(zmq.LINGER, 0)
s.bind("tcp://127.0.0.1:0")
print(s.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
while True:
    s.send_multipart(s.recv_multipart())
"""


@pytest.mark.parametrize("how", ["SIGKILL", "SIGSTOP"])
async def test_peer_process_dies_or_freezes(how: str) -> None:
    """A real peer process is SIGKILLed (socket reset) or SIGSTOPped (heartbeat timeout)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RAW_ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        t = ZmqTransport(heartbeat_ivl=0.1, heartbeat_timeout=0.5)
        try:
            assert proc.stdout is not None
            address = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), WAIT)
            address = address.strip()
            p = Peer(t)
            await t.start(None, p.deliver, p.downs.put_nowait)
            t.send(address, b"ping")
            assert await p.recv() == (b"ping", address)
            os.kill(proc.pid, getattr(signal, how))
            assert await p.next_down() == address
        finally:
            await t.close()
    finally:
        proc.kill()  # also ends a stopped process
        await asyncio.to_thread(proc.wait, WAIT)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_garbage_from_raw_sockets_is_dropped(zh: Harness) -> None:
    h = zh
    a = await h.start()
    # Raw DEALER -> our ROUTER: multipart and empty messages are dropped.
    dealer = h.raw(zmq.DEALER)
    dealer.connect(a.address)
    await dealer.send_multipart([b"one", b"two", b"three"])
    await dealer.send(b"")
    await dealer.send(b"good")
    frame, route = await a.recv()
    assert frame == b"good" and isinstance(route, bytes)
    a.t.reply(route, b"answer")
    async with asyncio.timeout(WAIT):
        assert await dealer.recv() == b"answer"
    # Raw ROUTER -> our DEALER: same.
    router = h.raw(zmq.ROUTER)
    router.bind(h.endpoint())
    raddr = router.getsockopt_string(zmq.LAST_ENDPOINT)
    a.t.send(raddr, b"hi")
    async with asyncio.timeout(WAIT):
        ident, hi = await router.recv_multipart()
    assert hi == b"hi"
    await router.send_multipart([ident, b"p1", b"p2"])
    await router.send_multipart([ident, b""])
    await router.send_multipart([ident, b"ok"])
    assert await a.recv() == (b"ok", raddr)
    assert a.frames.empty()
    assert isinstance(a.t, ZmqTransport) and a.t.malformed == 4


async def test_attached_messages_travel_alone_and_in_order(h: Harness) -> None:
    a = await h.start(attached=True)
    b = await h.start(listen=None, attached=True)
    b.t.send(a.address, b"?")
    _, route = await a.recv()
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: over the coalescing limit by itself
    a.t.reply(route, b"one;")
    a.t.reply_attached(route, b"head-1", memoryview(big)[1:])
    a.t.reply(route, b"two;")
    a.t.reply(route, b"three;")
    a.t.reply_attached(route, b"head-2", b"small")
    assert a.t.backlog(route) > len(big)
    got: list[Any] = []  # what arrived, consecutive frames joined (they may coalesce)
    async with asyncio.timeout(WAIT):
        while len(got) < 4:
            frame, r = await b.recv()
            assert r == a.address
            if got and isinstance(frame, bytes) and isinstance(got[-1], bytes):
                got[-1] += frame
            else:
                got.append(frame)
    assert got == [b"one;", (b"head-1", big[1:]), b"two;three;", (b"head-2", b"small")]
    assert a.t.backlog(route) == 0
    # Along a str route (an answer to a peer we send to), the same.
    b.t.reply_attached(a.address, b"head-3", memoryview(big))
    frame, _ = await a.recv()
    assert frame == (b"head-3", big)  # type: ignore[comparison-overlap]
    assert b.t.backlog(a.address) == 0


async def test_attached_messages_wait_out_backpressure(h: Harness) -> None:
    """Attached messages queued behind a caller that stops reading all arrive, in order."""
    a = await h.start(sndhwm=1, rcvhwm=1, backlog_hwm=HWM, max_frame_bytes=HWM)
    if h.is_zmq:
        caller = h.raw(zmq.DEALER)
        caller.setsockopt(zmq.RCVHWM, 1)
        caller.setsockopt(zmq.RCVBUF, 4096)
        caller.connect(a.address)
        await caller.send(b"go")

        async def collect(n: int) -> list[Any]:
            return [await caller.recv_multipart() for _ in range(n)]
    else:
        c = await h.start(listen=None, attached=True)
        c.t.send(a.address, b"go")

        async def collect(n: int) -> list[Any]:
            h.network.resume(c.t.name)  # type: ignore[attr-defined]
            out = []
            for _ in range(n):
                (head, data), _ = await c.recv()
                out.append([head, data])
            return out

    _, route = await a.recv()
    if not h.is_zmq:
        h.network.pause(c.t.name)  # type: ignore[attr-defined]
    sent = []
    async with asyncio.timeout(WAIT * 2):
        while a.t.backlog(route) < STALL_BACKLOG:
            for _ in range(4):
                i = len(sent)
                sent.append([b"%d" % i, i.to_bytes(4, "big") * (64 * 1024 // 4)])
                a.t.reply_attached(route, sent[-1][0], memoryview(sent[-1][1]))
            await asyncio.sleep(0)
    async with asyncio.timeout(WAIT * 2):
        received = await collect(len(sent))
        await a.t.drained(route)
    assert received == sent
    assert a.t.backlog(route) == 0


async def test_attached_messages_from_raw_sockets(zh: Harness) -> None:
    h = zh
    a = await h.start(attached=True)
    dealer = h.raw(zmq.DEALER)
    dealer.connect(a.address)
    await dealer.send_multipart([b"head", b"attachment"])
    (frame, route) = await a.recv()
    assert frame == (b"head", b"attachment")  # type: ignore[comparison-overlap]
    await dealer.send_multipart([b"", b"attachment"])  # no frame before the attachment
    await dealer.send_multipart([b"a", b"b", b"c"])  # more parts than an attached message
    await dealer.send(b"good")
    assert await a.recv() == (b"good", route)
    assert isinstance(a.t, ZmqTransport) and a.t.malformed == 2
    assert a.frames.empty()


async def test_an_oversized_message_drops_the_connection_unread(zh: Harness) -> None:
    """ZMQ_MAXMSGSIZE: libzmq drops the connection at the part's size, before assembling it;
    the caller reconnects and is served (what it queued behind the big one is lost)."""
    h = zh
    a = await h.start(max_message_size=64 * 1024)
    dealer = h.raw(zmq.DEALER)
    dealer.connect(a.address)
    await dealer.send(b"x" * (1 << 20))
    got: tuple[bytes, Route] | None = None
    async with asyncio.timeout(WAIT):
        for i in itertools.count():
            await dealer.send(b"small %d" % i)
            with contextlib.suppress(TimeoutError):
                got = await a.recv(timeout=0.2)
                break
    assert got is not None and got[0].startswith(b"small ")
    while not a.frames.empty():  # the big one never arrived
        assert len(a.frames.get_nowait()[0]) < 1024


async def _unread_replies(h: Harness, a: Peer) -> tuple[Any, Route]:
    """A raw caller that sent one frame and then reads nothing, and the route to it."""
    caller = h.raw(zmq.DEALER)
    caller.setsockopt(zmq.RCVHWM, 1)
    caller.setsockopt(zmq.RCVBUF, 4096)
    caller.connect(a.address)
    await caller.send(b"go")
    frame, route = await a.recv()
    assert frame == b"go"
    return caller, route


async def test_a_caller_that_does_not_read_its_replies_is_cut_off(zh: Harness) -> None:
    h = zh
    limit = 256 * 1024
    a = await h.start(sndhwm=1, rcvhwm=1, max_backlog=limit, max_frame_bytes=HWM, cut_off=0.5)
    assert isinstance(a.t, ZmqTransport)
    caller, route = await _unread_replies(h, a)
    other = h.raw(zmq.DEALER)
    other.connect(a.address)
    chunk = b"r" * (16 * 1024)
    most = 0
    async with asyncio.timeout(WAIT * 2):
        while not a.t.cut_offs:
            for _ in range(16):
                a.t.reply(route, chunk)
                most = max(most, a.t.backlog(route))
            await asyncio.sleep(0)  # the flush runs
    assert most <= limit + len(chunk)  # bounded in bytes, never more
    assert a.t.backlog(route) == 0 and a.t.dropped_bytes >= limit
    # while cut off: its requests are dropped unread, replies to it are not queued
    await caller.send(b"ignored")
    a.t.reply(route, chunk)
    assert a.t.backlog(route) == 0
    # ... and another caller is served as before
    await other.send(b"other")
    frame, route2 = await a.recv()
    assert frame == b"other"
    a.t.reply(route2, b"answer")
    async with asyncio.timeout(WAIT):
        assert await other.recv() == b"answer"
    async with asyncio.timeout(WAIT):
        while not a.t.ignored:
            await asyncio.sleep(0.01)
    assert a.frames.empty()
    # once it reads again and the cut-off has passed, it is served again
    async with asyncio.timeout(WAIT * 2):
        while await caller.poll(0):
            await caller.recv()
        for i in itertools.count():
            await caller.send(b"back %d" % i)
            with contextlib.suppress(TimeoutError):
                frame, route3 = await a.recv(timeout=0.1)
                break
    assert frame.startswith(b"back ") and route3 == route


async def test_a_peer_that_takes_nothing_gets_nothing_more_queued(zh: Harness) -> None:
    h = zh
    stalled = await h.stalled()
    limit = 256 * 1024
    a = await h.start(listen=None, sndhwm=1, rcvhwm=1, max_backlog=limit, max_frame_bytes=HWM)
    assert isinstance(a.t, ZmqTransport)
    peer = stalled.address
    chunk = b"s" * (16 * 1024)
    most = 0
    async with asyncio.timeout(WAIT * 2):
        while not a.t.dropped_bytes:
            for _ in range(16):
                a.t.send(peer, chunk)
                most = max(most, a.t.backlog(peer))
            await asyncio.sleep(0)
    assert limit <= most <= limit + len(chunk)
    for _ in range(100):
        a.t.send(peer, chunk)
        a.t.reply_attached(peer, b"head", chunk)
    assert a.t.backlog(peer) <= limit + len(chunk)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_close_leaves_no_sockets_open(zh: Harness) -> None:
    h = zh
    before = _open_fds()
    a = ZmqTransport()
    b = ZmqTransport()
    pa, pb = Peer(a), Peer(b)
    await a.start(h.endpoint(), pa.deliver, pa.downs.put_nowait)
    await b.start(h.endpoint(), pb.deliver, pb.downs.put_nowait)
    a.send(b.address, b"x")
    _, route = await pb.recv()
    b.reply(route, b"y")
    await pa.recv()
    b.send(a.address, b"z")
    await pa.recv()
    dead = h.dead_address()
    a.send(dead, b"lost")
    assert await pa.next_down() == dead
    assert _open_fds() > before
    await a.close()
    await b.close()
    assert _open_fds() == before
    assert a._ctx.closed and b._ctx.closed


# --------------------------------------------------------------------------- keyed links


class Keys:
    """Key pairs by name, and the :class:`CurveKeys` of one of them trusting some of them."""

    def __init__(self, *names: str) -> None:
        self.pairs = {n: zmq.curve_keypair() for n in names}

    def public(self, name: str) -> bytes:
        return self.pairs[name][0]

    def of(self, name: str, trusts: str) -> CurveKeys:
        public, secret = self.pairs[name]
        return CurveKeys(public, secret, frozenset(self.public(n) for n in trusts.split()))


async def _no_frame(peer: Peer, after: Peer, probe: Peer) -> None:
    """``peer`` got nothing: a round trip from ``probe`` through ``peer`` (which reads its
    socket in order) comes back, and nothing else arrived before it."""
    probe.t.send(peer.address, b"probe")
    frame, route = await peer.recv()
    assert frame == b"probe" and peer.frames.empty()
    peer.t.reply(route, b"probe answered")
    assert await probe.recv() == (b"probe answered", peer.address)
    assert after.frames.empty()


async def test_keyed_transports_find_each_others_key_and_talk(zh: Harness) -> None:
    h = zh
    k = Keys("a", "b", "c", "unused")
    a = await h.start(curve=k.of("a", "a b c unused"), attached=True)
    b = await h.start(curve=k.of("b", "a b c unused"), attached=True)
    a.t.send(b.address, b"a->b")
    frame, route = await b.recv()
    assert frame == b"a->b" and isinstance(route, bytes)
    b.t.reply(route, b"b->a")
    assert await a.recv() == (b"b->a", b.address)
    b.t.reply_attached(route, b"head", memoryview(b"tail" * 1000))
    assert await a.recv() == ((b"head", b"tail" * 1000), b.address)
    b.t.send(a.address, b"b->a on b's own DEALER")
    frame, _ = await a.recv()
    assert frame == b"b->a on b's own DEALER"
    # a pure client with a key of its own
    c = await h.start(listen=None, curve=k.of("c", "a b"))
    for i in range(50):  # queued while the key is being found: all arrive, in order
        c.t.send(a.address, b"%02d" % i)
    assert b"".join(await a.recv_bytes(100)) == b"".join(b"%02d" % i for i in range(50))
    assert isinstance(a.t, ZmqTransport) and isinstance(c.t, ZmqTransport)
    dealer = c.t._dealers[a.address]
    assert dealer.serverkey == k.public("a") and not dealer.candidates
    assert a.t._zap is not None and a.t._zap.allowed == 2 and a.t._zap.denied == 0
    assert a.downs.empty() and b.downs.empty() and c.downs.empty()


async def test_untrusted_peers_get_nothing_through(
    zh: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = zh
    k = Keys("server", "friend", "stranger")
    server = await h.start(curve=k.of("server", "server friend"))
    friend = await h.start(listen=None, curve=k.of("friend", "server"))
    # a keyed peer that knows the server's key but whose own key is not trusted
    stranger = await h.start(listen=None, curve=k.of("stranger", "server"))
    stranger.t.send(server.address, b"let me in")
    assert await stranger.next_down() == server.address
    stranger_key = k.public("stranger").decode()
    assert f"{server.address} refused our key {stranger_key}" in caplog.text
    # a peer without keys
    plain = await h.start(listen=None)
    plain.t.send(server.address, b"let me in too")
    assert await plain.next_down() == server.address
    # a raw DEALER without keys
    raw = h.raw(zmq.DEALER)
    mon = raw.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    )

    async def close_monitor() -> None:
        raw.disable_monitor()
        mon.close(linger=0)

    h.cleanups.insert(0, close_monitor)
    raw.connect(server.address)
    await raw.send(b"and me")
    async with asyncio.timeout(WAIT):
        await mon.recv_multipart()
    await _no_frame(server, server, friend)
    assert isinstance(server.t, ZmqTransport) and server.t._zap is not None
    assert server.t._zap.denied >= 1 and server.t._zap.allowed == 1
    # and the server's answers reach only who asked: the stranger got nothing either
    assert stranger.frames.empty() and plain.frames.empty()


async def test_a_keyed_node_talks_only_to_servers_it_trusts(
    zh: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = zh
    k = Keys("a", "b")
    b = await h.start(curve=k.of("b", "a b"))  # b would let a in...
    a = await h.start(curve=k.of("a", "a"))  # ...but a does not trust b's key
    a.t.send(b.address, b"hello?")
    assert await a.next_down() == b.address
    assert f"no trusted key works for {b.address}" in caplog.text
    assert b.frames.empty()
    assert isinstance(b.t, ZmqTransport) and b.t._zap is not None
    assert b.t._zap.allowed == 0  # no candidate of a's ever reached b's ZAP


async def test_a_new_key_at_a_known_address_is_found_again(zh: Harness) -> None:
    h = zh
    k = Keys("a", "b1", "b2")
    a = await h.start(curve=k.of("a", "a b1 b2"), reconnect_ivl_max=0.2)
    b1 = await h.start(curve=k.of("b1", "a"))
    a.t.send(b1.address, b"to b1")
    assert (await b1.recv())[0] == b"to b1"
    address = b1.address
    await b1.t.close()
    assert await a.next_down() == address
    b2 = await h.start(listen=address, curve=k.of("b2", "a"))  # another node, same address
    a.t.send(address, b"to whoever is there")
    assert (await b2.recv())[0] == b"to whoever is there"
    assert isinstance(a.t, ZmqTransport)
    assert a.t._dealers[address].serverkey == k.public("b2")


async def test_a_peer_that_refused_our_key_is_tried_again(zh: Harness) -> None:
    h = zh
    k = Keys("a", "b")
    a = await h.start(listen=None, curve=k.of("a", "b"), reconnect_ivl_max=0.2)
    strict = await h.start(curve=k.of("b", "b"))  # b's key, not trusting a
    address = strict.address
    a.t.send(address, b"queued while refused")
    assert await a.next_down() == address
    assert strict.frames.empty()
    await strict.t.close()
    kind = await h.start(listen=address, curve=k.of("b", "a b"))  # b again, now trusting a
    assert (await kind.recv())[0] == b"queued while refused"


async def test_a_keyed_router_requires_zap(zh: Harness) -> None:
    # With ZAP_ENFORCE_DOMAIN a handshake fails when no handler answers (closed, not open:
    # tests/test_security.py shows libzmq doing so); the ROUTER is a CURVE server.
    k = Keys("a")
    a = await zh.start(curve=k.of("a", "a"))
    assert isinstance(a.t, ZmqTransport)
    router = a.t._router
    assert router.getsockopt(zmq.ZAP_ENFORCE_DOMAIN) == 1
    assert router.getsockopt(zmq.CURVE_SERVER) == 1
    assert router.getsockopt(zmq.MECHANISM) == zmq.CURVE


async def test_keyed_close_leaves_no_sockets_open(zh: Harness) -> None:
    h = zh
    k = Keys("a", "b", "c", "d")
    before = _open_fds()
    a = ZmqTransport(curve=k.of("a", "a b c d"))
    b = ZmqTransport(curve=k.of("b", "a b c d"))
    pa, pb = Peer(a), Peer(b)
    await a.start(h.endpoint(), pa.deliver, pa.downs.put_nowait)
    await b.start(h.endpoint(), pb.deliver, pb.downs.put_nowait)
    a.send(b.address, b"x")
    await pb.recv()
    a.send(h.dead_address(), b"resolving when closed")
    await a.close()
    await b.close()
    assert _open_fds() == before


# --------------------------------------------------------------------------- memory specific


@pytest.fixture
async def mem() -> AsyncIterator[Harness]:
    harness = Harness("memory")
    try:
        yield harness
    finally:
        await harness.close()


async def test_memory_delivery_is_never_reentrant(mem: Harness) -> None:
    a = await mem.start()
    b = await mem.start()
    a.t.send(b.address, b"x")
    assert b.frames.empty()
    assert await b.recv() == (b"x", a.t.route_id)  # type: ignore[attr-defined]


async def test_memory_partition_and_heal(mem: Harness) -> None:
    a, b, c = [await mem.start() for _ in range(3)]
    a.t.send(b.address, b"1")
    b.t.send(a.address, b"2")
    await b.recv()
    await a.recv()
    mem.network.partition({a.address}, {b.address, c.address})
    assert await a.next_down() == b.address
    assert await b.next_down() == a.address
    a.t.send(b.address, b"lost")
    b.t.send(c.address, b"b->c is fine")
    assert (await c.recv())[0] == b"b->c is fine"
    with pytest.raises(TimeoutError):
        await b.recv(timeout=0.1)
    assert a.downs.empty()  # once per outage
    mem.network.heal()
    a.t.send(b.address, b"after heal")
    assert (await b.recv())[0] == b"after heal"
    mem.network.partition({a.address}, {b.address})
    assert await a.next_down() == b.address  # down again after being up


async def test_memory_held_partition_delivers_what_waited_at_the_heal(mem: Harness) -> None:
    a, b, c = [await mem.start() for _ in range(3)]
    a.t.send(b.address, b"0")
    assert (await b.recv())[0] == b"0"
    mem.network.hold({a.address}, {b.address, c.address})
    assert mem.network.cut and mem.network.held(a.address, b.address)
    for i in range(1, 4):
        a.t.send(b.address, b"%d" % i)
    b.t.send(c.address, b"b->c is fine")
    assert (await c.recv())[0] == b"b->c is fine"
    with pytest.raises(TimeoutError):
        await b.recv(timeout=0.1)
    assert a.downs.empty() and b.downs.empty()  # a held link is not reported down
    mem.network.heal()
    assert not mem.network.cut
    assert b"".join(await b.recv_bytes(3)) == b"123"  # all of it, in order
    a.t.send(b.address, b"after")
    assert (await b.recv())[0] == b"after"


async def test_memory_kill(mem: Harness) -> None:
    a = await mem.start()
    b = await mem.start()
    a.t.send(b.address, b"hi")
    _, route = await b.recv()
    mem.network.kill(b.address)
    assert await a.next_down() == b.address
    a.t.send(b.address, b"to the dead")
    b.t.reply(route, b"from the dead")
    b.t.send(a.address, b"from the dead")
    with pytest.raises(TimeoutError):
        await a.recv(timeout=0.1)
    assert b.frames.empty()
    assert b.address not in mem.network.addresses


async def test_memory_delay_keeps_order(mem: Harness) -> None:
    a = await mem.start()
    b = await mem.start()
    delays = iter([0.05, 0.0, 0.03, 0.0, 0.01])
    mem.network.delay = lambda src, dst: next(delays)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for i in range(5):
        a.t.send(b.address, b"%d" % i)
        await asyncio.sleep(0)
    frames = await b.recv_bytes(5)
    assert b"".join(frames) == b"01234"
    assert loop.time() - t0 >= 0.045  # (uvloop's clock has millisecond resolution)


def test_coalesce_caps_frames() -> None:
    chunks = [b"a" * 3, b"b" * 3, b"c" * 7, b"d", b"e" * 2]
    frames = coalesce(chunks, 6)
    assert b"".join(frames) == b"".join(chunks)
    assert frames == [b"aaabbb", b"c" * 7, b"dee"]
    assert coalesce([b"x"], 1) == [b"x"]


# --------------------------------------------------------------------------- event loops

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("kind", ["zmq-tcp", "memory"])
@pytest.mark.parametrize("loop", list(LOOPS))
def test_on_each_event_loop(loop: str, kind: str, scenario: str) -> None:
    """The scenarios on an explicitly chosen loop, whatever loop the other tests run on."""

    async def main() -> None:
        harness = Harness(kind)
        try:
            await SCENARIOS[scenario](harness)
        finally:
            await harness.close()

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())
