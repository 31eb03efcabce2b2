"""Turn execution: inline first steps, continuation tasks, isolation and exclusivity."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from actors import ActorTimeout, Node, Overloaded, actor
from actors.ref import Sent
from runtime.activation import Activation, check, plain
from runtime.clock import Clock
from tests.sample_actors import Gated, gate

pytestmark = pytest.mark.timeout(30)

LEAK: contextvars.ContextVar[str] = contextvars.ContextVar("leak", default="clean")


@actor(name="TurnProbe")
class Probe:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.finished = 0

    async def task_id(self) -> int:
        return id(asyncio.current_task())

    async def task_ids_around_await(self) -> list[int]:
        before = id(asyncio.current_task())
        await asyncio.sleep(0)
        return [before, id(asyncio.current_task())]

    async def set_var(self) -> str:
        LEAK.set("dirty")
        return LEAK.get()

    async def long(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.finished += 1

    def done_count(self) -> int:
        return self.finished

    def stop_iteration(self) -> None:
        raise StopIteration("from a plain method")

    async def returns_at_once(self) -> str:
        return "done"


async def test_idle_target_runs_inline_in_the_callers_task() -> None:
    async with Node() as node:
        p = node.ref(Probe, "inline")
        await p.task_id()  # activation
        assert await p.task_id() == id(asyncio.current_task())
        assert not node._host.turn_tasks


async def test_suspending_turn_continues_in_its_own_task() -> None:
    async with Node() as node:
        before, after = await node.ref(Probe, "suspend").task_ids_around_await()
        assert before == id(asyncio.current_task())
        assert after != before


async def test_context_changes_inside_a_turn_do_not_leak_to_the_caller() -> None:
    async with Node() as node:
        assert await node.ref(Probe, "ctx").set_var() == "dirty"
        assert LEAK.get() == "clean"


async def test_caller_timeout_does_not_cancel_the_turn() -> None:
    async with Node() as node:
        p = node.ref(Probe, "no-cancel")
        with pytest.raises(ActorTimeout):
            await p.long.ask(0.2, timeout=0.02)
        # the turn still ends: the next call waits behind it and sees it finished
        assert await p.done_count() == 1


async def test_caller_cancellation_does_not_cancel_the_turn() -> None:
    async with Node() as node:
        p = node.ref(Probe, "cancel")
        call = asyncio.ensure_future(p.long(0.05))
        await asyncio.sleep(0)  # one loop pass: the call starts its turn
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await p.done_count() == 1


async def test_stop_lets_running_turns_finish() -> None:
    node = Node()
    async with node:
        p = node.ref(Probe, "grace")
        call = asyncio.ensure_future(p.long(0.05))
        await asyncio.sleep(0)  # one loop pass: the call starts its turn
    assert call.done() and call.exception() is None


async def test_a_plain_method_raising_stop_iteration_fails_the_turn() -> None:
    """A turn that finishes in its first step returns its value; a StopIteration escaping a
    plain method is an error of the turn, not a return value."""
    from actors import RemoteError

    async with Node() as node:
        p = node.ref(Probe, "stop")
        assert await p.returns_at_once() == "done"
        with pytest.raises(RemoteError) as info:
            await p.stop_iteration()
        assert info.value.type_name == "StopIteration"
        assert await p.done_count() == 0  # the actor still serves


@actor(name="Failing")
class Failing:
    def sync_fail(self, message: str) -> None:
        raise ValueError(message)

    async def async_fail(self, message: str) -> None:
        await asyncio.sleep(0)
        raise KeyError(message)

    def other_fail(self) -> None:
        raise RuntimeError("other")

    def ok(self) -> bool:
        return True


class Wall:
    """A wall clock moved by hand (the node's clock seam)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shoal.actor"]


async def test_failing_tells_are_logged_once_per_kind_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="shoal.actor")
    wall = Wall()
    async with Node(clock=Clock(wall=wall)) as node:
        for i in range(50):
            node.ref(Failing, f"k{i}").sync_fail.tell(f"bad {i}")
        node.ref(Failing, "k0").other_fail.tell()  # another method: a line of its own
        for i in range(50):
            assert await node.ref(Failing, f"k{i}").ok()  # queued behind the tells
        first, other = _errors(caplog)
        assert first.startswith("tell to Failing/k0 failed in sync_fail: ValueError: bad 0 (at ")
        assert first.endswith(" in sync_fail)")
        assert other.startswith("tell to Failing/k0 failed in other_fail: RuntimeError: other")
        wall.now += 9.9
        node.ref(Failing, "k1").sync_fail.tell("still within the interval")
        assert await node.ref(Failing, "k1").ok()  # (after the tell: it has run)
        assert len(_errors(caplog)) == 2
        wall.now += 0.1
        node.ref(Failing, "k2").sync_fail.tell("next interval")
        assert await node.ref(Failing, "k2").ok()
        assert _errors(caplog)[2].startswith(
            "tell to Failing/k2 failed in sync_fail: ValueError: next interval"
        )
        assert _errors(caplog)[2].endswith("; 50 more like it since the last one logged")
        # a turn that suspends fails in its own task: logged the same way, once
        for i in range(5):
            node.ref(Failing, f"a{i}").async_fail.tell("later")
        await node.ref(Failing, "a4").ok()  # queued behind its tell: that turn has ended
        assert [m for m in _errors(caplog) if "async_fail" in m] == [
            m for m in _errors(caplog)[3:4]
        ]
        assert "KeyError: 'later'" in _errors(caplog)[3]
        node.ref(Failing, "k3").sync_fail.tell("left out")
        assert await node.ref(Failing, "k3").ok()
    # stopping reports what was left out and not reported yet
    stopped = [r.getMessage() for r in caplog.records if r.name == "shoal.actor"][4:]
    assert sorted(stopped) == [
        "1 more tells to Failing.sync_fail failed with ValueError since the last one logged",
        "4 more tells to Failing.async_fail failed with KeyError since the last one logged",
    ]


async def test_a_forged_key_or_message_cannot_put_a_newline_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="shoal.actor")
    async with Node() as node:
        node.ref(Failing, "k\n2026-01-01 ERROR forged").sync_fail.tell("m\nforged too")
        assert await node.ref(Failing, "x").ok()
    [line] = _errors(caplog)
    assert "\n" not in line
    assert line.startswith(
        "tell to Failing/'k\\n2026-01-01 ERROR forged' failed in sync_fail: "
        "ValueError: 'm\\nforged too'"
    )


@pytest.mark.parametrize(
    ("value", "is_plain"),
    [(1, True), (2**64 - 1, True), (-(2**63), True), (2**64, False), (-(2**63) - 1, False),
     (1.5, True), (True, True), (None, True), (b"x", True), ("ascii", True),
     ("ünïcode", False), ("\ud800", False), ([1], False), ((1,), False), (object(), False)],
)  # fmt: skip
def test_plain_values_are_known_to_cross_the_wire_without_encoding(
    value: object, is_plain: bool
) -> None:
    assert plain(value) is is_plain
    if is_plain:
        check(value, "value")  # it does cross: plain never lets through what would fail


# -- the mailbox bound ----------------------------------------------------------------------------


async def test_an_ask_to_a_full_mailbox_waits_for_room_within_its_deadline() -> None:
    async with Node(mailbox_limit=4) as node:
        g = node.ref(Gated, "full-ask")
        name = "full-ask"
        for _ in range(4):
            g.hold.tell(name)  # queued at once: the first turn has not even started
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(Overloaded, match="mailbox_limit 4"):
            await g.counts.ask(timeout=0.1)  # still full at its deadline: never queued
        assert loop.time() - t0 >= 0.09
        pending = asyncio.ensure_future(g.counts())
        done, _ = await asyncio.wait({pending}, timeout=0.05)
        assert not done  # it waits for room ...
        gate(name).set()
        assert await asyncio.wait_for(pending, 5) == [4, 0]  # ... then is queued and runs


async def test_a_local_tell_to_a_full_mailbox_is_queued_and_its_await_waits_for_room() -> None:
    async with Node(mailbox_limit=4) as node:
        g = node.ref(Gated, "full-tell")
        name = "full-tell"
        sent = [g.hold.tell(name) for _ in range(4)]
        assert all(isinstance(s, Sent) for s in sent)  # up to the limit: nothing to wait for
        waits = [g.note.tell(i) for i in range(3)]  # beyond it: queued all the same, and wait
        assert not isinstance(waits[0], Sent) and all(w is waits[0] for w in waits)
        assert isinstance(waits[0], asyncio.Future) and not waits[0].done()
        gate(name).set()
        async with asyncio.timeout(5):
            await waits[0]  # room again: at most half full
        assert await g.counts() == [4, 3]
        assert await g.notes() == [0, 1, 2]
        assert isinstance(g.note.tell(3), Sent)


async def test_tells_stop_waiting_when_the_activation_ends() -> None:
    async with Node(mailbox_limit=2) as node:
        g = node.ref(Gated, "ends")
        g.hold.tell("ends")
        g.hold.tell("ends")
        wait = g.note.tell(0)
        assert isinstance(wait, asyncio.Future)
        act = node._catalog.lookup("Gated", "ends")
        assert isinstance(act, Activation)
        act.take_backlog()  # what deactivation and migration do with a backlog
        assert wait.done()
        gate("ends").set()


@pytest.mark.parametrize("bad", [0, -1])
def test_mailbox_limit_must_be_at_least_one(bad: int) -> None:
    with pytest.raises(ValueError, match="mailbox_limit must be at least 1"):
        Node(mailbox_limit=bad)


@pytest.mark.parametrize("bad", ["10", 2.5, True, None])
def test_mailbox_limit_must_be_a_whole_number(bad: object) -> None:
    with pytest.raises(TypeError, match="mailbox_limit must be a whole number"):
        Node(mailbox_limit=bad)  # type: ignore[arg-type]
