"""Bad input against a running node process: it answers typed errors and keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import zmq

from actors import (
    MessageTooLarge,
    Node,
    ProtocolError,
    SerializationError,
    UnknownActorType,
    UnknownMethod,
)
from runtime import wire
from tests.cluster import NodeProcess, until
from tests.sample_actors import Counter, Interleaver

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server() -> Iterator[NodeProcess]:
    node = NodeProcess()
    try:
        yield node
    finally:
        node.kill()


def _dealer(address: str) -> zmq.Socket:  # type: ignore[type-arg]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(address)
    return sock


def _ask(sock: zmq.Socket, env: wire.Envelope) -> list[wire.Envelope]:  # type: ignore[type-arg]
    sock.send(wire.encode_envelope(env))
    return wire.decode_frame(sock.recv())


def _env(**fields: object) -> wire.Envelope:
    base: dict[str, object] = dict(
        kind=wire.ASK,
        corr=7,
        type_name="Counter",
        key="raw",
        method="incr",
        args=[1],
        deadline=time.time() + 10,
    )
    base.update(fields)
    return wire.Envelope(**base)  # type: ignore[arg-type]


def test_raw_dealer_gets_typed_errors_and_answers(server: NodeProcess) -> None:
    sock = _dealer(server.address)
    try:
        [reply] = _ask(sock, _env())
        assert reply.kind == wire.REPLY and reply.corr == 7 and isinstance(reply.body, int)
        [err] = _ask(sock, _env(type_name="NoSuchType"))
        assert err.kind == wire.ERROR and isinstance(wire.body_to_error(err.body), UnknownActorType)
        [err] = _ask(sock, _env(method="nope"))
        assert isinstance(wire.body_to_error(err.body), UnknownMethod)
        [err] = _ask(sock, _env(method="_secret"))
        assert isinstance(wire.body_to_error(err.body), UnknownMethod)
        sock.send(b"\x9e\x02garbage")
        [err] = wire.decode_frame(sock.recv())
        assert err.kind == wire.ERROR and err.corr == 0
        assert isinstance(wire.body_to_error(err.body), ProtocolError)
        sock.send_multipart([b"a", b"b", b"c"])  # multipart: dropped, the node keeps going
        [reply] = _ask(sock, _env(corr=8))
        assert reply.kind == wire.REPLY and reply.corr == 8
    finally:
        sock.close(linger=0)


def test_random_frames_and_raw_tcp_garbage_do_not_stop_the_node(server: NodeProcess) -> None:
    rng = random.Random(1234)
    sock = _dealer(server.address)
    try:
        valid = wire.encode_envelope(_env(corr=9))
        for i in range(2000):
            if i % 2:
                frame = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
            else:
                mutated = bytearray(valid)
                for _ in range(rng.randint(1, 4)):
                    mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
                frame = bytes(mutated)
            sock.send(frame)
        host, port = server.address.removeprefix("tcp://").rsplit(":", 1)
        for _ in range(20):
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                raw.sendall(os.urandom(rng.randint(1, 4096)))
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"\xff\x00\x00\x00\x00\x00\x00\x00\x01\x7f" + os.urandom(100))
        # drain what the node answered to the random frames, then a real call must work
        sock.setsockopt(zmq.RCVTIMEO, 200)
        while True:
            try:
                sock.recv()
            except zmq.Again:
                break
        sock.setsockopt(zmq.RCVTIMEO, 5000)
        [reply] = _ask(sock, _env(corr=10))
        assert reply.kind == wire.REPLY and reply.corr == 10
    finally:
        sock.close(linger=0)


async def test_node_serves_other_callers_while_one_sends_garbage(server: NodeProcess) -> None:
    async with Node(seeds=[server.address], serve=(), default_timeout=10) as client:
        c = client.ref(Counter, "during-garbage")
        sock = _dealer(server.address)
        try:
            for i in range(200):
                sock.send(os.urandom(32))
                assert await c.incr() == i + 1
        finally:
            sock.close(linger=0)


async def test_oversized_and_unserialisable_arguments_fail_at_the_caller(
    server: NodeProcess,
) -> None:
    async with Node(seeds=[server.address], serve=(), max_frame_size=1 << 20) as client:
        c = client.ref(Counter, "big")
        with pytest.raises(MessageTooLarge):
            await c.echo(b"x" * (2 << 20))
        with pytest.raises(SerializationError):
            await c.echo(object())
        assert await c.incr() == 1


async def test_oversized_result_fails_with_message_too_large() -> None:
    async with (
        Node(listen="tcp://127.0.0.1:0", max_frame_size=1 << 16) as small,
        Node(seeds=[small.address], serve=(), default_timeout=10) as client,
    ):
        c = client.ref(Counter, "big-result")
        assert len(await c.blob(1 << 10)) == 1 << 10
        with pytest.raises(MessageTooLarge):
            await c.blob(1 << 17)  # the request fits the host's limit, its result does not
        assert await c.incr() == 1  # and the actor lives on


async def test_oversized_frame_is_rejected_by_the_receiver() -> None:
    # libzmq (ZMQ_MAXMSGSIZE) drops the connection at the frame's size, before reading it:
    # no answer to it; the DEALER reconnects and what it sends next is answered
    async with Node(listen="tcp://127.0.0.1:0", max_frame_size=1 << 16) as small:
        sock = _dealer(small.address)
        try:
            sock.send(wire.encode_envelope(_env(args=[b"x" * (1 << 17)], type_name="Counter")))
            sock.setsockopt(zmq.RCVTIMEO, 500)
            loop = asyncio.get_running_loop()
            answers: list[wire.Envelope] = []
            for corr in range(11, 31):  # what was sent before the reconnect is lost with it
                sock.send(wire.encode_envelope(_env(corr=corr)))
                with contextlib.suppress(zmq.Again):
                    answers = wire.decode_frame(await loop.run_in_executor(None, sock.recv))
                    break
            [reply] = answers
            assert reply.kind == wire.REPLY and reply.corr >= 11, reply
        finally:
            sock.close(linger=0)
        assert await small.ref(Counter, "still-up").incr() == 1


async def test_asks_to_a_dead_peer_fail_with_node_unavailable() -> None:
    from actors import ActorTimeout, NodeUnavailable

    proc = NodeProcess()
    try:
        async with Node(seeds=[proc.address], serve=(), default_timeout=10) as client:
            c = client.ref(Interleaver, "doomed")
            pending = asyncio.ensure_future(c.work(30))

            async def running() -> bool:  # a reentrant actor answers while the turn runs
                return await c.running() == 1

            await until(running, 10)  # the ask is in flight: its turn runs on the node
            proc.kill()
            t0 = time.monotonic()
            with pytest.raises((NodeUnavailable, ActorTimeout)) as info:
                await asyncio.wait_for(pending, 15)
            assert isinstance(info.value, NodeUnavailable), info.value
            assert time.monotonic() - t0 < 9
    finally:
        proc.kill()


async def test_tells_to_a_stalled_peer_get_backpressure_and_nothing_is_lost() -> None:
    from runtime.zmq_transport import ZmqTransport

    proc = NodeProcess()
    try:
        transport = ZmqTransport(backlog_hwm=64 * 1024, sndhwm=4, max_frame_bytes=16 * 1024)
        async with Node(seeds=[proc.address], serve=(), transport=transport) as client:
            c = client.ref(Counter, "pressure")
            assert await c.incr(0) == 0
            proc.signal(signal.SIGSTOP)
            sent = 0
            blocked = None
            payload = "x" * 1000
            try:
                # Fill zmq's queue and the kernel's socket buffers until the link pushes back
                # and stays pushed back: then tell() hands out a wait that does not finish.
                while True:
                    waiter = c.record.tell(payload)
                    sent += 1
                    if transport.backlog(proc.address) < transport.backlog_hwm:
                        continue
                    try:
                        await asyncio.wait_for(asyncio.shield(waiter), 0.3)  # type: ignore[arg-type]
                    except TimeoutError:
                        blocked = waiter
                        break
                    assert sent < 200_000
                assert blocked is not None, "the link never pushed back"
                # memory stays bounded: the sender stopped at the mark
                assert transport.backlog(proc.address) < 2 * transport.backlog_hwm
            finally:
                proc.signal(signal.SIGCONT)
            await asyncio.wait_for(blocked, 20)  # type: ignore[arg-type]
            assert len(await c.history.ask(timeout=20)) == sent
    finally:
        proc.kill()


async def test_ask_deadlines_share_one_sweep_and_out_of_order_ones_get_a_timer() -> None:
    """Asks whose deadlines come in order are timed out by one shared sweep; one with an
    earlier deadline than the ask before it gets its own timer; a forgotten ask never fails."""
    from actors import ActorTimeout
    from runtime.memory_transport import MemoryNetwork, MemoryTransport
    from runtime.messaging import Messaging

    def ignore(*_: object) -> None:
        pass

    net = MemoryNetwork()
    silent = MemoryTransport(net)  # a peer that never answers
    await silent.start("mem://silent", ignore, ignore)
    m = Messaging(MemoryTransport(net), ignore, ignore)
    await m.start(None)
    try:
        loop = asyncio.get_running_loop()
        now = loop.time()

        def ask(key: str, timeout: float) -> tuple[int, asyncio.Future[object]]:
            return m.ask(
                "mem://silent", "T", key, "m", [], {}, 0.0, 0, 0, loop, now + timeout, timeout
            )

        _, first = ask("a", 0.3)
        _, second = ask("b", 0.4)
        _, early = ask("c", 0.1)  # earlier than the ask before it: a timer of its own
        forgotten, never = ask("d", 0.2)
        m.forget(forgotten)
        with pytest.raises(ActorTimeout, match=r"T/c\.m did not answer within 0\.1 s"):
            await asyncio.wait_for(early, 5)
        assert not first.done() and not second.done()
        with pytest.raises(ActorTimeout, match=r"T/a\.m did not answer within 0\.3 s"):
            await asyncio.wait_for(first, 5)
        assert loop.time() - now >= 0.3 - 0.002  # never before its deadline (1 ms clock)
        assert not second.done()
        with pytest.raises(ActorTimeout, match=r"T/b\.m"):
            await asyncio.wait_for(second, 5)
        assert loop.time() - now >= 0.4 - 0.002
        assert not never.done()
    finally:
        await m.close()
        await silent.close()


async def test_attached_replies_reach_the_caller_with_their_attachment() -> None:
    """A control answered with ``RemoteReply.set_attached`` arrives as the result with the
    attachment appended (a memoryview); one over the frame limit fails as MessageTooLarge."""
    from runtime.memory_transport import MemoryNetwork, MemoryTransport
    from runtime.messaging import Messaging, RemoteReply
    from runtime.transport import Route

    big = bytes(range(256)) * 4096  # 1 MiB

    def ignore(*_: object) -> None:
        pass

    def on_control(env: wire.Envelope, route: Route) -> None:
        reply = RemoteReply(server, route, env.corr)
        size = env.body
        reply.set_attached(["head", size], memoryview(big)[:size])

    net = MemoryNetwork()
    server = Messaging(MemoryTransport(net), ignore, on_control, max_frame=1 << 19)
    client = Messaging(MemoryTransport(net), ignore, ignore)
    await server.start("mem://server")
    await client.start(None)
    try:
        answer = await client.control("mem://server", "data", 1000, timeout=5)
        assert answer[:2] == ["head", 1000] and type(answer[2]) is memoryview
        assert bytes(answer[2]) == big[:1000]
        with pytest.raises(MessageTooLarge):
            await client.control("mem://server", "data", 1 << 20, timeout=5)  # over 512 KiB
        assert client.received[wire.REPLY] == 1 and client.received[wire.ERROR] == 1
    finally:
        await client.close()
        await server.close()


def test_malformed_attached_messages_are_answered_with_protocol_errors(
    server: NodeProcess,
) -> None:
    sock = _dealer(server.address)
    try:
        for parts in (
            [b"\xc1", b"data"],  # not msgpack
            [wire.encode_envelope(_env()), b"data"],  # an ASK: only replies carry attachments
            [wire.encode_reply(5, "", {"not": "a list"}), b"data"],
        ):
            sock.send_multipart(parts)
            [err] = wire.decode_frame(sock.recv())
            assert err.kind == wire.ERROR and err.corr == 0
            assert isinstance(wire.body_to_error(err.body), ProtocolError)
        # a well-formed attached reply nobody waits for is dropped, and the node serves on
        sock.send_multipart([wire.encode_attached_reply(12345, [1], 4), b"data"])
        [reply] = _ask(sock, _env(corr=11))
        assert reply.kind == wire.REPLY and reply.corr == 11
    finally:
        sock.close(linger=0)


@pytest.mark.parametrize("kind", ["memory", "zmq"])
async def test_a_reply_counts_only_from_the_peer_the_ask_went_to(kind: str) -> None:
    """Forged REPLY, ERROR and attached replies from a third party, even with the right
    correlation id, are dropped: the ask gets its real answer. Correlation ids start at a
    random point, not at 1."""
    from runtime.memory_transport import MemoryNetwork, MemoryTransport
    from runtime.messaging import Messaging, RemoteReply
    from runtime.transport import Route, Transport
    from runtime.zmq_transport import ZmqTransport

    held: list[tuple[Route, int]] = []
    arrived = asyncio.Event()

    def ignore(*_: object) -> None:
        pass

    def on_control(env: wire.Envelope, route: Route) -> None:
        held.append((route, env.corr))
        arrived.set()

    net = MemoryNetwork()

    def transport() -> Transport:
        return MemoryTransport(net) if kind == "memory" else ZmqTransport()

    def address(name: str) -> str:
        return f"mem://{name}" if kind == "memory" else "tcp://127.0.0.1:0"

    server = Messaging(transport(), ignore, on_control)
    caller = Messaging(transport(), ignore, ignore)
    evil = Messaging(transport(), ignore, ignore)
    server_address = await server.start(address("server"))
    caller_address = await caller.start(address("caller"))
    await evil.start(address("evil"))
    try:
        ask = asyncio.ensure_future(caller.control(server_address, "slow", None, timeout=10))
        await asyncio.wait_for(arrived.wait(), 5)
        route, corr = held[0]
        assert corr > 1 << 16  # not guessable by counting from 1
        forged = [
            wire.encode_reply(corr, "", "forged"),
            evil.encode_error(corr, RuntimeError("forged")),
        ]
        for _ in range(50):
            for frame in forged:
                evil.transport.send(caller_address, frame)
        RemoteReply(evil, caller_address, corr).set_attached(["forged"], b"x" * 100)
        deadline = time.monotonic() + 5
        while caller.forged < 101 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert caller.forged == 101 and not ask.done()
        RemoteReply(server, route, corr).set_result("real")
        assert await asyncio.wait_for(ask, 5) == "real"
    finally:
        for m in (evil, caller, server):
            await m.close()


def test_control_fields_out_of_range_are_refused_and_wedge_nothing(server: NodeProcess) -> None:
    """A peer (even one that may talk to the node) cannot poison the epoch clock, plant an
    actor's state as a client, or send an actor's state to a node outside the cluster: each
    request gets a typed error, and moves and counts work as before."""
    sock = _dealer(server.address)

    def control(op: str, body: object, sender: str = "client://raw") -> wire.Envelope:
        env = wire.Envelope(wire.CONTROL, 11, sender, method=op, body=body)
        [reply] = _ask(sock, env)
        return reply

    try:
        [reply] = _ask(sock, _env(key="vault", args=[50]))
        assert reply.body == 50
        for op, body, expected in [
            ("register", ["Counter", "vault", "tcp://evil:1", 2**64 - 1], ProtocolError),
            ("register", ["Counter", "vault", "tcp://evil:1", -5], ProtocolError),
            ("handoff", ["Counter", "vault2", {"count": 1000}, 1], Exception),
            ("migrate", ["Counter", "vault", "tcp://evil:1"], Exception),
            ("unregister", ["Counter", "vault", server.address, 2**63], ProtocolError),
        ]:
            err = control(op, body)
            assert err.kind == wire.ERROR, (op, body, err)
            error = wire.body_to_error(err.body)
            assert isinstance(error, expected), (op, error)
        # handoff with a state from a client, migrate to a non-member: NodeUnavailable
        assert "client" in str(
            wire.body_to_error(control("handoff", ["Counter", "v3", {}, 1]).body)
        )
        moved = wire.body_to_error(control("migrate", ["Counter", "vault", "tcp://evil:1"]).body)
        assert "not a hosting member" in str(moved)
        [reply] = _ask(sock, _env(key="vault", args=[1], corr=12))
        assert reply.body == 51  # the actor stayed, with its state
        [reply] = _ask(sock, _env(key="vault2", args=[1], corr=13))
        assert reply.body == 1  # no planted state
        # the epoch clock was not poisoned: a fresh activation and a move still work
        fresh = control("handoff", ["Counter", "fresh", None, 0])
        assert fresh.kind == wire.REPLY and 0 < fresh.body < 2**62
    finally:
        sock.close(linger=0)
