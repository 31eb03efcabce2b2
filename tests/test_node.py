"""Behaviour of asks and tells through a node: the semantics every deployment must keep.

The ``node`` fixture is parametrised: each test runs against an embedded node and, once the
transport lands, against a second real node process, so remote semantics equal local ones.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from actors import (
    ActorError,
    ActorTimeout,
    Deadlock,
    Node,
    NodeUnavailable,
    RemoteError,
    SerializationError,
    UnknownActorType,
    UnknownMethod,
)
from runtime.security import keygen
from tests.cluster import NodeProcess, cluster
from tests.sample_actors import Counter, Deadlocker, Fragile, Interleaver, Journal, Pool, Probe

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def two_processes() -> Iterator[list[NodeProcess]]:
    """Two real ``shoal node`` processes on loopback serving the sample actors."""
    with cluster(2) as nodes:
        yield nodes


@pytest.fixture(params=["local", "remote"])
async def node(request: pytest.FixtureRequest) -> AsyncIterator[Node]:
    """An embedded node, or a pure client of two real node processes (every call remote)."""
    if request.param == "local":
        async with Node(check_serializable=True, default_timeout=10.0) as n:
            yield n
        return
    procs = request.getfixturevalue("two_processes")
    seeds = [p.address for p in procs]
    async with Node(seeds=seeds, serve=(), default_timeout=10.0) as n:
        assert len(n.members) == 2
        yield n


async def test_ask_returns_value_and_state_persists_between_calls(node: Node) -> None:
    c = node.ref(Counter, "ask")
    assert await c.incr(5) == 5
    assert await c.incr() == 6
    assert await c.peek() == 6


async def test_ref_by_name_reaches_same_actor(node: Node) -> None:
    await node.ref(Counter, "byname").incr(3)
    assert await node.ref("Counter", "byname").peek() == 3


async def test_key_is_set_before_init(node: Node) -> None:
    assert await node.ref(Counter, "k-1").whoami() == "k-1"


async def test_thousand_concurrent_incr_end_at_exactly_thousand(node: Node) -> None:
    c = node.ref(Counter, "thousand")
    results = await asyncio.gather(*(c.incr() for _ in range(1000)))
    assert sorted(results) == list(range(1, 1001))
    assert await c.peek() == 1000


async def test_thousand_concurrent_suspending_calls_keep_one_turn_at_a_time(node: Node) -> None:
    c = node.ref(Counter, "turns")
    results = await asyncio.gather(*(c.work(0) for _ in range(200)))
    assert max(results) == 1


async def test_tell_is_fire_and_forget_and_ordered(node: Node) -> None:
    c = node.ref(Counter, "tells")
    for i in range(500):
        c.record.tell(i)
    assert await c.history() == list(range(500))


async def test_tells_and_asks_from_one_sender_keep_order(node: Node) -> None:
    c = node.ref(Counter, "mixed")
    c.record.tell("a")
    await c.record("b")
    c.record.tell("c")
    assert await c.history() == ["a", "b", "c"]


async def test_tell_returns_awaitable(node: Node) -> None:
    c = node.ref(Counter, "awaitable-tell")
    await c.incr.tell(2)
    assert await c.peek() == 2


async def test_tell_from_inside_actor(node: Node) -> None:
    a = node.ref(Counter, "teller")
    await a.tell_other("tellee", "hello")
    # the tell and this ask come from different senders: no order between them, so poll
    deadline = asyncio.get_running_loop().time() + 5
    while await node.ref(Counter, "tellee").history() != ["hello"]:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


async def test_exception_becomes_remote_error_and_actor_survives(node: Node) -> None:
    c = node.ref(Counter, "errors")
    await c.incr(2)
    with pytest.raises(RemoteError) as info:
        await c.boom("kaput")
    err = info.value
    assert err.type_name == "ValueError"
    assert err.message == "kaput"
    assert "boom" in err.remote_traceback and "ValueError: kaput" in err.remote_traceback
    with pytest.raises(RemoteError) as sync_info:
        await c.sync_boom()
    assert sync_info.value.type_name == "KeyError"
    assert await c.peek() == 2


async def test_unknown_method_and_private_names(node: Node) -> None:
    c = node.ref(Counter, "unknown")
    with pytest.raises(UnknownMethod):
        await c.no_such_method()
    with pytest.raises(UnknownMethod):
        await c._secret()
    with pytest.raises(UnknownMethod):
        await c.on_activate()
    with pytest.raises(UnknownMethod):
        c.no_such_method.tell()


async def test_an_ask_does_nothing_until_awaited(node: Node) -> None:
    c = node.ref(Counter, "lazy")
    bad = c.no_such_method()  # errors too are raised by the await, not by the call
    first = c.incr(5)
    assert await c.peek() == 0  # nothing was sent or run for `first` yet
    assert await first == 5
    with pytest.raises(UnknownMethod):
        await bad


async def test_unknown_actor_type(node: Node) -> None:
    with pytest.raises(UnknownActorType):
        await node.ref("NoSuchActor", "x").anything()


async def test_errors_share_one_base(node: Node) -> None:
    with pytest.raises(ActorError):
        await node.ref("NoSuchActor", "x").anything()
    assert issubclass(ActorTimeout, TimeoutError)


async def test_deadline_gives_actor_timeout(node: Node) -> None:
    c = node.ref(Counter, "slow")
    with pytest.raises(ActorTimeout):
        await c.sleep.ask(0.5, timeout=0.1)
    # the actor is still serving after the timeout (the slow turn ends, then this runs)
    assert await c.sleep.ask(0.0, timeout=10.0) == "slept"


async def test_queued_message_past_its_deadline_never_runs(node: Node) -> None:
    c = node.ref(Counter, "expired")
    c.sleep.tell(0.3)  # queued first: the ask below waits behind it
    with pytest.raises(ActorTimeout):
        await c.incr.ask(1, timeout=0.05)
    assert await c.peek() == 0


async def test_node_default_timeout_applies() -> None:
    async with Node(default_timeout=0.1) as n:
        with pytest.raises(ActorTimeout):
            await n.ref(Counter, "default-timeout").sleep(0.5)


async def test_call_chain_reentrancy_a_b_a_completes(node: Node) -> None:
    a = node.ref(Counter, "chain-a")
    await a.incr(7)
    assert await a.ping_back("chain-b") == 7


async def test_cross_chain_deadlock_fails_at_once_naming_the_chain(node: Node) -> None:
    x, y = node.ref(Deadlocker, "x"), node.ref(Deadlocker, "y")
    t0 = time.monotonic()
    results = await asyncio.gather(
        x.hold_then_call.ask("y", 0.05, timeout=5.0),
        y.hold_then_call.ask("x", 0.05, timeout=5.0),
        return_exceptions=True,
    )
    # x, busy in one chain, asks y while y, busy in another, asks x: one of the two nested
    # asks fails at once with Deadlock (it reaches its chain's caller as itself), and never
    # runs; the other then runs and its chain completes. Nobody waits for a deadline.
    [failed] = [r for r in results if isinstance(r, BaseException)]
    assert isinstance(failed, Deadlock), results
    assert str(failed) in {
        "call-chain deadlock: Deadlocker/x -> Deadlocker/y -> Deadlocker/x (each waits for "
        "the next; Deadlocker/x is busy in a turn that waits for this call)",
        "call-chain deadlock: Deadlocker/y -> Deadlocker/x -> Deadlocker/y (each waits for "
        "the next; Deadlocker/y is busy in a turn that waits for this call)",
        "call-chain deadlock: Deadlocker/x -> Deadlocker/y -> Deadlocker/x (each waits for "
        "the next; Deadlocker/x is busy in a turn that waits for Deadlocker/y)",
        "call-chain deadlock: Deadlocker/y -> Deadlocker/x -> Deadlocker/y (each waits for "
        "the next; Deadlocker/y is busy in a turn that waits for Deadlocker/x)",
    }, failed
    assert sorted(r for r in results if isinstance(r, str)) in (["x"], ["y"])
    assert time.monotonic() - t0 < 2.0
    assert await x.quick.ask(timeout=2.0) == "x"
    assert await y.quick.ask(timeout=2.0) == "y"


async def test_nested_ask_inherits_the_turns_shorter_deadline(node: Node) -> None:
    outer = node.ref(Counter, "deadline-outer")
    # The turn's deadline is 0.3 s; its nested ask asks for 20 s, to an actor that takes 3 s.
    # At 0.3 s the caller's timer and the turn's answer (None: its nested ask failed) race.
    t0 = time.monotonic()
    try:
        answer = await outer.timed_call.ask("deadline-inner", "sleep", 20.0, 3.0, timeout=0.3)
    except ActorTimeout:
        answer = None
    assert answer is None and time.monotonic() - t0 < 1.0
    # The nested ask failed at the turn's deadline, so the turn ended then and this (queued
    # behind it) runs within its own 2 s; without the inheritance it would wait out the 3 s.
    outcome, took = await outer.last_timed.ask(timeout=2.0)
    assert outcome == "ActorTimeout"
    assert 0.25 <= took < 1.5, took


async def test_nested_ask_keeps_its_own_shorter_timeout(node: Node) -> None:
    outer = node.ref(Counter, "own-deadline-outer")
    assert await outer.timed_call.ask("own-deadline-inner", "sleep", 0.2, 3.0, timeout=8.0) is None
    outcome, took = await outer.last_timed()
    assert outcome == "ActorTimeout"
    assert 0.15 <= took < 1.5, took


async def test_reentrant_actor_interleaves(node: Node) -> None:
    r = node.ref(Interleaver, "re")
    results = await asyncio.gather(*(r.work(0.02) for _ in range(20)))
    assert max(results) > 1


async def test_non_reentrant_actor_does_not_interleave(node: Node) -> None:
    c = node.ref(Counter, "nonre")
    results = await asyncio.gather(*(c.work(0.005) for _ in range(20)))
    assert max(results) == 1


async def test_stateless_worker_serves_in_parallel(node: Node) -> None:
    p = node.ref(Pool, "pool")
    await p.reset()
    results = await asyncio.gather(*(p.work(0.02) for _ in range(16)))
    assert 1 < max(results) <= 4


async def test_failing_constructor_gives_remote_error_and_next_call_retries(node: Node) -> None:
    with pytest.raises(RemoteError) as info:
        await node.ref(Fragile, "bad-1").ok()
    assert info.value.type_name == "RuntimeError"
    with pytest.raises(RemoteError):
        await node.ref(Fragile, "hook-1").ok()
    assert await node.ref(Fragile, "good").ok() is True


async def test_unserialisable_argument_rejected(node: Node) -> None:
    c = node.ref(Counter, "ser")
    with pytest.raises(SerializationError):
        await c.echo(object())
    with pytest.raises(SerializationError):
        c.record.tell({1, 2, 3})


async def test_unserialisable_result_rejected(node: Node) -> None:
    with pytest.raises(SerializationError):
        await node.ref(Counter, "ser-result").bad_result()


async def test_args_and_kwargs_pass_through(node: Node) -> None:
    c = node.ref(Counter, "echo")
    assert await c.echo(1, "two", [3.0], key={"a": None}) == [
        [1, "two", [3.0]],
        {"key": {"a": None}},
    ]


async def test_many_actors_are_independent(node: Node) -> None:
    refs = [node.ref(Counter, f"many-{i}") for i in range(100)]
    await asyncio.gather(*(r.incr(i) for i, r in enumerate(refs)))
    assert await asyncio.gather(*(r.peek() for r in refs)) == list(range(100))


async def test_ask_with_kwargs_through_ask_options(node: Node) -> None:
    c = node.ref(Counter, "kw")
    assert await c.incr.ask(n=4, timeout=5.0) == 4


async def test_migrate_to_a_non_member_is_refused(node: Node) -> None:
    c = node.ref(Counter, "stay-put")
    assert await c.incr() == 1
    with pytest.raises(NodeUnavailable):
        await node.migrate(c, to="tcp://127.0.0.1:1")
    where = await node.locate(c)
    assert where is not None
    await node.migrate(c, to=where)  # already there: nothing to do
    assert await c.incr() == 2


async def test_serve_hosts_only_the_named_types() -> None:
    async with Node(serve=["Counter", Journal], check_serializable=True) as node:
        assert await node.ref(Counter, "served").incr() == 1
        assert await node.ref("Journal", "served").read() == []
        with pytest.raises(UnknownActorType):
            await node.ref(Probe, "not-served").touch()
        with pytest.raises(UnknownActorType):
            node.ref(Probe, "not-served").touch.tell()
        assert node.activation_count == 2


async def test_tell_exception_is_logged_on_the_hosting_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    async with Node() as node:
        c = node.ref(Counter, "tell-boom")
        c.boom.tell("told to fail")
        c.sync_boom.tell()

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

        deadline = time.monotonic() + 5
        while len(logged()) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        messages = logged()
        assert len(messages) == 2, messages
        assert "Counter/tell-boom" in messages[0] and "told to fail" in messages[0]
        assert "ValueError" in messages[0]  # the remote traceback comes with it
        assert "Counter/tell-boom" in messages[1] and "KeyError" in messages[1]
        assert await c.incr() == 1  # the actor lives on


async def test_tell_exception_is_logged_by_the_node_process_that_hosts_it(
    two_processes: list[NodeProcess],
) -> None:
    async with Node(seeds=[p.address for p in two_processes], serve=()) as client:
        c = client.ref(Counter, "remote-tell-boom")
        assert await c.incr() == 1
        host = await client.locate(c)
        [hosting] = [p for p in two_processes if p.address == host]
        c.boom.tell("remote tell failed")
        await hosting.await_output("remote tell failed", 10)
        out = hosting.read_output()
        assert "tell to Counter/remote-tell-boom failed" in out
        [other] = [p for p in two_processes if p is not hosting]
        assert "remote tell failed" not in other.read_output()
        assert await c.incr() == 2


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ({"listen": "127.0.0.1:5700"}, ValueError,
         "listen '127.0.0.1:5700' has no scheme: expected tcp://HOST:PORT, ipc://PATH or "
         "mem://NAME (did you mean 'tcp://127.0.0.1:5700'?)"),
        ({"seeds": "tcp://127.0.0.1:5700"}, TypeError,
         "seeds must be a list of addresses, not 'tcp://127.0.0.1:5700' (a str): use "
         "seeds=['tcp://127.0.0.1:5700']"),
        ({"default_timeout": "30"}, TypeError,
         "default_timeout must be a positive number of seconds (finite, > 0), not '30' (a str)"),
        ({"default_timeout": -1}, ValueError, "default_timeout must be a positive number"),
        ({"resources": {"gpu": -1}}, ValueError, "resources must be a mapping of resource "
                                                 "names to numbers >= 0, e.g. {'gpu': 1}: "
                                                 "'gpu' is -1"),
        ({"check_serializable": "no"}, TypeError,
         "check_serializable must be True or False, not 'no' (a str)"),
        ({"serve": "Counter"}, TypeError, "serve must be a list of @actor classes or actor names"),
        ({"join_timeout": 0}, ValueError, "join_timeout must be a positive number of seconds"),
        ({"max_frame_size": 10}, ValueError, "max_frame_size must be an int >= 4096, not 10"),
        ({"rebalance_period": "1"}, TypeError, "rebalance_period must be a positive number"),
        ({"data_limit": "1k"}, TypeError, "data_limit must be an int (bytes) or None, got str"),
        ({"storage": 1}, TypeError, "storage must be a URL"),
    ],
)  # fmt: skip
def test_node_arguments_are_checked_where_they_are_given(
    given: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        Node(**given)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["ftp://host/state", "state.db", "sqlite://state.db"])
async def test_a_storage_url_of_no_known_kind_fails_start_naming_it(url: str) -> None:
    node = Node(storage=url)  # as the shared API says: Node.start fails
    with pytest.raises(ValueError, match=re.escape(f"storage URL {url!r} is not supported")):
        await node.start()


@pytest.mark.parametrize("url", ["memory://", "sqlite:///state.db", "redis://localhost/0"])
async def test_storage_urls_of_the_api_are_accepted(url: str) -> None:
    async with Node(storage=url) as node:
        assert node.storage == url


async def test_an_embedded_node_checks_that_calls_could_cross_the_wire_by_default() -> None:
    # Code that passes embedded must not fail on a cluster: Node() checks by default.
    async with Node() as node:
        c = node.ref(Counter, "check-default")
        for bad in (object(), "lone \ud800 surrogate", 2**64, [1, {2, 3}], -(2**63) - 1):
            with pytest.raises(SerializationError, match=r"^arguments cannot cross the wire"):
                await c.echo(bad)
        with pytest.raises(SerializationError):
            await c.echo(key=object())
        with pytest.raises(SerializationError):
            c.record.tell(object())
        with pytest.raises(SerializationError, match=r"^result cannot cross the wire"):
            await c.bad_result()
        # plain values and what msgpack carries pass, as they are
        assert await c.echo(1, 2.5, "ascii", "ünïcode", b"raw", None, True, 2**64 - 1) == [
            [1, 2.5, "ascii", "ünïcode", b"raw", None, True, 2**64 - 1],
            {},
        ]
        assert await c.echo([1, "x"], {"a": (1, 2)}) == [[[1, "x"], {"a": (1, 2)}], {}]


async def test_check_serializable_false_opts_out() -> None:
    async with Node(check_serializable=False) as node:
        c = node.ref(Counter, "unchecked")
        thing = object()
        assert await c.echo(thing) == [[thing], {}]  # passed as it is, never copied
        assert isinstance(await c.bad_result(), object)


async def test_node_methods_check_what_they_are_given() -> None:
    async with Node() as node:
        c = node.ref(Counter, "given")
        with pytest.raises(ValueError, match=r"^to '127\.0\.0\.1:5700' has no scheme"):
            await node.migrate(c, to="127.0.0.1:5700")
        with pytest.raises(TypeError, match=r"^expected an actor reference .*not 'given'"):
            await node.migrate("given", to="tcp://127.0.0.1:1")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^expected an actor reference"):
            await node.locate(("Counter", "given"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^expected an actor reference"):
            await node.epoch(None)  # type: ignore[arg-type]


def test_key_and_trust_are_checked_when_the_node_is_built(tmp_path: Path) -> None:
    public, secret = keygen(tmp_path)
    listen = "tcp://127.0.0.1:0"
    with pytest.raises(ValueError, match=r"^key needs trust as well"):
        Node(listen=listen, key=secret)
    with pytest.raises(ValueError, match=r"^trust needs key as well"):
        Node(listen=listen, trust=tmp_path)
    with pytest.raises(TypeError, match=r"^key must be the path of a secret key file"):
        Node(listen=listen, key=42, trust=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds a public key only"):
        Node(listen=listen, key=public, trust=tmp_path)
    with pytest.raises(ValueError, match=r"an embedded node .* has none"):
        Node(key=secret, trust=tmp_path)
    with pytest.raises(ValueError, match="not a transport= given, nor mem:// addresses"):
        Node(listen="mem://keyed", key=secret, trust=tmp_path)
    Node(listen=listen, key=secret, trust=tmp_path)  # and a good pair is taken
    Node(seeds=[listen], serve=(), key=str(secret), trust=str(tmp_path))
