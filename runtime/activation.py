"""An activation: one live instance of an actor on this node, and its turns.

Turn rules (one place, so every path keeps them):

- A non-reentrant activation runs one turn at a time. Messages that arrive meanwhile wait in
  FIFO order in a mailbox that exists only while there is a backlog.
- Call-chain reentrancy: every ask carries the id of the call chain it belongs to. A message
  whose chain is the chain of the turn in progress runs at once, so A -> B -> A completes instead
  of deadlocking (as Orleans' call-chain reentrancy). Two *different* chains that wait on each
  other (A -> B while B -> A) still deadlock and fail with ``ActorTimeout`` at their deadline.
- ``reentrant=True`` lets any message start while other turns wait at an ``await``.
- The mailbox is bounded (``Node(mailbox_limit=N)``, ``Host.mailbox_limit``): an ask never
  joins a mailbox that holds ``N`` messages (a local one waits for room within its deadline,
  one from the wire is refused with ``Overloaded``: ``runtime.calls``, ``runtime.dispatch``);
  a local tell is always queued, and what ``tell`` returns then waits until the mailbox has
  room again (at most half full); a tell from the wire beyond ``2 * N`` is dropped, and the
  acknowledgement a paced tell asks for is held while the mailbox is full (that is how the
  pushback reaches a remote sender). :meth:`Activation.full`, :meth:`Activation.room` and
  :meth:`Activation.when_room` are the pieces.

Execution: a turn starts in the task of whoever delivered it. Its first step runs inline; a
method that finishes without suspending (the common case) costs no task, no future and no timer.
A turn that suspends continues in a task of its own, so that the caller giving up (deadline,
cancellation) never cancels a turn half-way. Each turn runs in its own copy of the context, so
context-variable changes made by actor code do not leak into the caller.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from contextvars import copy_context
from typing import TYPE_CHECKING, Any, Final

from actors.errors import ActorError, Deadlock, Overloaded, RemoteError, SerializationError
from runtime.context import TURN
from runtime.lifecycle import ACTIVE, DEAD
from runtime.logs import Throttle, last_frame
from runtime.mailbox import Message, ReplySink

if TYPE_CHECKING:
    from actors.decorator import ActorType, Method
    from runtime.affinity import Affinity
    from runtime.node import Node

__all__ = [
    "DEFAULT_MAILBOX_LIMIT",
    "INT_MAX",
    "INT_MIN",
    "SCALARS",
    "Activation",
    "Host",
    "check",
    "check_args",
    "check_result",
    "new_chain",
    "plain",
    "plain_args",
    "remote_error",
]

log = logging.getLogger("shoal.actor")

#: Messages an activation's mailbox holds before asks are refused (``Node(mailbox_limit=)``).
DEFAULT_MAILBOX_LIMIT: Final = 10_000

_CHAIN_PREFIX: Final = random.getrandbits(31) << 32
#: Passed as ``reply`` for a tell: a suspended turn then logs its failure instead.
NO_REPLY: Final[Any] = object()
_chain_counter = itertools.count(1)


#: Seconds between two log lines about failed (or dropped) tells of one kind.
FAILURE_LOG_INTERVAL: Final = 10.0

#: Outcomes of starting a turn.
DONE: Final = 0
RAISED: Final = 1
SUSPENDED: Final = 2


def new_chain() -> int:
    """A fresh call-chain id, unique with high probability across processes."""
    return _CHAIN_PREFIX | (next(_chain_counter) & 0xFFFFFFFF)


def remote_error(exc: BaseException) -> RemoteError | Deadlock:
    """The ``RemoteError`` a caller receives for an exception raised inside a turn (a
    ``Deadlock`` that a nested ask raised stays one: the whole chain is deadlocked)."""
    if isinstance(exc, RemoteError | Deadlock):
        return exc
    tb = "".join(traceback.format_exception(exc))
    return RemoteError(type(exc).__qualname__, str(exc), tb)


def _first_step(
    turn: tuple[Activation, int, float, Any], method: Method, inst: Any, args: Any, kwargs: Any
) -> tuple[Coroutine[Any, Any, Any] | None, Any]:
    """Inside the turn's context: call the method and, if it is a coroutine, run its first step.
    Returns ``(None, result)``, or ``(coroutine, what it yielded)`` if it suspended."""
    TURN.set(turn)
    result = method.fn(inst, *args, **kwargs) if kwargs else method.fn(inst, *args)
    if method.is_async:
        try:
            return result, result.send(None)
        except StopIteration as stop:  # finished without suspending: caught here, cheaply
            return None, stop.value
    return None, result


class _Resume:
    """Continues a coroutine whose first step already ran, from the future it yielded."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self.coro, self.yielded
        self.yielded = None
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # forwarded into the actor's code, cancellation too
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class Host:
    """What activations need of the node that runs them, and nothing more: its loop, the
    coarse idle clock (advanced by the catalog), the set of suspended turns (``stop`` waits
    for them) and the check that a result can cross the wire. ``node`` is the public ``Node``
    (what ``actors.ref`` inside a turn sends through), and the mailbox bound of its
    activations (``mailbox_limit``: see the module docstring)."""

    __slots__ = (
        "check_serializable",
        "failures",
        "loop",
        "mailbox_limit",
        "node",
        "running",
        "tick",
        "turn_tasks",
    )

    def __init__(
        self, node: Node, check_serializable: bool, wall: Callable[[], float] = time.time
    ) -> None:
        self.node = node
        self.check_serializable = check_serializable
        self.mailbox_limit = DEFAULT_MAILBOX_LIMIT
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start
        self.running = False
        self.tick = 0.0
        """The coarse idle clock (loop time, set by the catalog): what turns stamp."""
        self.turn_tasks: set[asyncio.Task[Any]] = set()
        #: failed and dropped tells, logged once per kind per interval (``wall``: the clock)
        self.failures = Throttle(FAILURE_LOG_INTERVAL, wall)

    def tell_failed(self, act: Activation, method: str, err: BaseException) -> None:
        """Log the failure of a turn nobody waits for (a tell): once per actor type, method
        and error type per :data:`FAILURE_LOG_INTERVAL`, with the count of those left out
        and where the first one raised (its traceback at DEBUG level)."""
        remote = err if isinstance(err, RemoteError) else None
        kind = remote.type_name if remote is not None else type(err).__qualname__
        left_out = self.failures.admit(("failed", act.type.name, method, kind))
        if left_out is None:
            return
        message = remote.message if remote is not None else str(err)
        where = last_frame(remote.remote_traceback) if remote is not None else ""
        log.error(
            "tell to %s/%s failed in %s: %s: %s%s%s",
            act.type.name,
            act.key,
            method,
            kind,
            message,
            f" (at {where})" if where else "",
            _left_out(left_out),
        )
        if remote is not None and remote.remote_traceback and log.isEnabledFor(logging.DEBUG):
            log.debug("traceback of that tell: %s", remote.remote_traceback)

    def tell_dropped(self, type_name: str, key: str, method: str, err: BaseException) -> None:
        """Log a tell that could not be delivered (a warning, once per kind per interval)."""
        left_out = self.failures.admit(("dropped", type_name, method, type(err).__qualname__))
        if left_out is not None:
            log.warning(
                "tell to %s/%s.%s dropped: %s%s", type_name, key, method, err, _left_out(left_out)
            )

    def flush_failures(self) -> None:
        """Log the counts of failures left out and not reported yet (when the node stops)."""
        for kind, count in self.failures.drain():
            if isinstance(kind, tuple):
                what, type_name, method, error = kind
                log.log(
                    logging.ERROR if what == "failed" else logging.WARNING,
                    "%d more tells to %s.%s %s with %s since the last one logged",
                    count,
                    type_name,
                    method,
                    what,
                    error,
                )
            else:
                log.warning("%d more tells failed or were dropped since the last logged", count)

    def settle(self, reply: ReplySink, value: Any) -> None:
        """Answer ``reply`` with a turn's result (an error if it could not cross the wire:
        checked for a local caller; a remote one's reply is encoded, which checks it)."""
        if self.check_serializable and isinstance(reply, asyncio.Future):
            try:
                check_result(value)
            except SerializationError as err:
                reply.set_exception(err)
                return
        reply.set_result(value)


#: Types whose values cross the wire unchanged whatever they hold (``int`` and ``str`` are
#: looked at more closely in :func:`plain`).
SCALARS: Final = frozenset({float, bool, type(None), bytes})
INT_MIN: Final = -(1 << 63)
INT_MAX: Final = (1 << 64) - 1


def plain(value: Any) -> bool:
    """Whether ``value`` surely crosses the wire as it is, decided without encoding it: a
    float, bool, None, bytes, an int in msgpack's range or an ASCII str (a non-ASCII str may
    hold a lone surrogate, which UTF-8 cannot encode). Anything else is encoded to know."""
    t = type(value)
    if t is int:
        return bool(INT_MIN <= value <= INT_MAX)
    if t is str:
        return bool(value.isascii())
    return t in SCALARS


def check(value: Any, what: str) -> None:
    """``SerializationError`` naming ``what`` unless ``value`` can cross the wire."""
    from runtime import wire

    try:
        wire.check_serializable(wire.DEFAULT_CODEC, value)
    except SerializationError as err:
        raise SerializationError(f"{what} cannot cross the wire: {err}") from None


def plain_args(args: tuple[Any, ...] | list[Any]) -> bool:
    """Whether every one of ``args`` is :func:`plain` (inline: the path of every tell)."""
    for arg in args:
        t = type(arg)
        if t is int:
            if not -0x8000000000000000 <= arg <= 0xFFFFFFFFFFFFFFFF:
                return False
        elif t is str:
            if not arg.isascii():
                return False
        elif t not in SCALARS:
            return False
    return True


def check_args(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> None:
    """:func:`check` of a call's arguments; plain ones (the common case) are not encoded."""
    if kwargs or not plain_args(args):
        check((args, kwargs), "arguments")


def check_result(value: Any) -> None:
    """:func:`check` of a turn's result; a plain one is not encoded."""
    if not plain(value):
        check(value, "result")


class Activation:
    """One live instance of an actor type on this node."""

    __slots__ = (
        "affinity",
        "awaiting",
        "epoch",
        "host",
        "instance",
        "key",
        "lock_chain",
        "passed",
        "pumping",
        "queue",
        "running",
        "status",
        "tick",
        "type",
        "waiting",
    )

    def __init__(self, host: Host, atype: ActorType, key: str, epoch: int) -> None:
        self.host = host
        self.type = atype
        self.key = key
        self.epoch = epoch
        self.instance: Any = None
        self.running = 0
        self.lock_chain = 0
        self.queue: deque[Message] | None = None
        self.pumping = False
        self.status = ACTIVE
        self.tick = host.tick
        #: the idle clock when an eviction last passed it over (``runtime.catalog``)
        self.passed = self.tick
        #: what it reads and whom it calls (``placement="data"`` on a cluster; else None)
        self.affinity: Affinity | None = None
        #: the actors its turns' remote asks wait on now, with counts (``runtime.chains``)
        self.awaiting: dict[tuple[str, str], int] | None = None
        #: who waits for room in the mailbox (local tellers, paced tells' acknowledgements)
        self.waiting: list[ReplySink] | None = None

    @property
    def node(self) -> Node:
        """The node that runs this activation."""
        return self.host.node

    def __repr__(self) -> str:
        return f"<Activation {self.type.name}/{self.key} epoch={self.epoch} running={self.running}>"

    # -- admission -------------------------------------------------------------------------------

    def can_run_now(self, chain: int) -> bool:
        """Whether a message of call chain ``chain`` may start a turn right now."""
        if self.status != ACTIVE:
            return False
        if self.running == 0:
            return not self.queue
        return self.type.reentrant or (chain != 0 and chain == self.lock_chain)

    def full(self) -> bool:
        """Whether the mailbox holds ``mailbox_limit`` messages (an ask is refused)."""
        queue = self.queue
        return queue is not None and len(queue) >= self.host.mailbox_limit

    def overloaded(self) -> Overloaded:
        """The error of an ask refused because the mailbox is full."""
        n = 0 if self.queue is None else len(self.queue)
        return Overloaded(
            f"{self.type.name}/{self.key} has {n} messages queued "
            f"(mailbox_limit {self.host.mailbox_limit}): the ask was not queued"
        )

    def room(self) -> asyncio.Future[None]:
        """A future that is resolved once the mailbox has room again (at most half full):
        what a local ``tell`` to a full mailbox returns. One future is shared by all."""
        waiting = self.waiting
        if waiting is None:
            waiting = self.waiting = []
        elif waiting:
            last = waiting[-1]
            if isinstance(last, asyncio.Future) and not last.done():
                return last
        fut: asyncio.Future[None] = self.host.loop.create_future()
        waiting.append(fut)
        return fut

    def when_room(self, sink: ReplySink) -> None:
        """Answer ``sink`` (with None) once the mailbox has room again (at most half full)."""
        if self.waiting is None:
            self.waiting = [sink]
        else:
            self.waiting.append(sink)

    def _release(self) -> None:
        waiting, self.waiting = self.waiting, None
        for sink in waiting or ():
            if not sink.done():
                sink.set_result(None)

    def enqueue(self, msg: Message) -> None:
        """Queue a message behind the current turn(s); it runs when its turn comes."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        queue.append(msg)
        if self.running == 0 or self.type.reentrant:
            self._schedule()

    # -- turns ----------------------------------------------------------------------------------

    def start_turn(
        self,
        method: Method,
        args: Any,
        kwargs: Any,
        chain: int,
        deadline: float,
        reply: ReplySink | None,
        waits: Any = None,
    ) -> tuple[int, Any]:
        """Begin a turn in the calling task.

        Returns ``(DONE, result)`` or ``(RAISED, RemoteError)`` when the turn ended without
        suspending (``reply`` is then left to the caller), or ``(SUSPENDED, reply)`` when it
        continues in a task that settles ``reply`` at its end. With ``reply`` None a suspended
        turn gets a fresh future as its reply; pass ``NO_REPLY`` for a tell.
        ``deadline`` (loop clock, 0.0 = none) bounds the asks the turn makes; ``waits`` is
        what waits on the turn (``runtime.chains``).
        """
        self.running += 1
        if chain == 0:
            chain = _CHAIN_PREFIX | (next(_chain_counter) & 0xFFFFFFFF)
        if self.running == 1:
            self.lock_chain = chain
        self.tick = self.host.tick
        ctx = copy_context()
        try:
            coro, value = ctx.run(
                _first_step, (self, chain, deadline, waits), method, self.instance, args, kwargs
            )
        except Exception as exc:
            self.end_turn()
            return RAISED, remote_error(exc)
        if coro is None:
            self.end_turn()
            return DONE, value
        host = self.host
        if reply is None:
            reply = host.loop.create_future()
        task = host.loop.create_task(
            self._finish(_Resume(coro, value), None if reply is NO_REPLY else reply, method.name),
            context=ctx,
        )
        host.turn_tasks.add(task)
        task.add_done_callback(host.turn_tasks.discard)
        return SUSPENDED, reply

    async def _finish(self, resume: _Resume, reply: ReplySink | None, method: str) -> None:
        try:
            result = await resume
        except asyncio.CancelledError:
            if reply is not None and not reply.done():
                reply.set_exception(ActorError("the turn was cancelled (node stopping)"))
            raise
        except Exception as exc:
            err = remote_error(exc)
            if reply is None:
                self.host.tell_failed(self, method, err)
            elif not reply.done():
                reply.set_exception(err)
        else:
            if reply is not None and not reply.done():
                self.host.settle(reply, result)
        finally:
            self.end_turn()

    def end_turn(self) -> None:
        """Account for a finished turn and let the next queued message in."""
        self.running -= 1
        if self.running == 0:
            self.lock_chain = 0
            if self.queue:
                self._schedule()
            else:
                self.queue = None
                if self.waiting is not None:
                    self._release()

    def run_message(self, msg: Message) -> bool:
        """Run a queued message's turn, settling ``msg.reply``; True if the turn suspended."""
        reply = msg.reply
        outcome, value = self.start_turn(
            msg.method,
            msg.args,
            msg.kwargs,
            msg.chain,
            msg.deadline,
            NO_REPLY if reply is None else reply,
            msg.waits,
        )
        if outcome == SUSPENDED:
            return True
        if reply is None:
            if outcome == RAISED:
                self.host.tell_failed(self, msg.method.name, value)
        elif not reply.done():
            if outcome == DONE:
                self.host.settle(reply, value)
            else:
                reply.set_exception(value)
        return False

    # -- the pump: runs queued messages without a task of its own ---------------------------------

    def schedule(self) -> None:
        """Run queued messages soon (after ``on_activate`` finished, for instance)."""
        self._schedule()

    def _schedule(self) -> None:
        if not self.pumping:
            self.pumping = True
            self.host.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self.pumping = False
        queue = self.queue
        reentrant = self.type.reentrant
        now = self.host.loop.time()
        half = self.host.mailbox_limit >> 1
        while queue and self.status != DEAD:
            if self.status != ACTIVE:
                return  # activating: wait for it; deactivating: the backlog moves on
            if self.running and not reentrant:
                head = queue[0]
                if not (head.chain and head.chain == self.lock_chain):
                    return
            msg = queue.popleft()
            if self.waiting is not None and len(queue) <= half:
                self._release()
            reply = msg.reply
            if reply is not None and (reply.done() or (msg.deadline and msg.deadline < now)):
                continue  # the caller gave up: a message past its deadline never runs
            if self.run_message(msg) and not reentrant:
                return  # the turn's end schedules the pump again
        if queue is not None and not queue:
            self.queue = None

    def take_backlog(self) -> list[Message]:
        """Remove and return every queued message (for re-dispatch after deactivation); who
        waited for room in the mailbox stops waiting."""
        queue = self.queue
        self.queue = None
        if self.waiting is not None:
            self._release()
        return list(queue) if queue else []


def _left_out(count: int) -> str:
    return f"; {count} more like it since the last one logged" if count else ""
