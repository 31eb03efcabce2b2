"""Turn execution: inline first steps, continuation tasks, isolation and exclusivity."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from actors import ActorTimeout, Node, Overloaded, actor
from actors.ref import Sent
from runtime.activation import Activation
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
