"""Messages waiting in an activation's mailbox, and the sinks their replies go to.

A mailbox is a ``collections.deque`` of :class:`Message`, created only while an activation has
a backlog: an idle actor owns no queue and no task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from actors.decorator import Method

__all__ = ["Message", "ReplySink"]


class ReplySink(Protocol):
    """Where a turn's outcome goes: an ``asyncio.Future`` locally, a reply envelope remotely."""

    def done(self) -> bool: ...
    def set_result(self, result: Any, /) -> None: ...
    def set_exception(self, exception: BaseException, /) -> None: ...


class Message:
    """One queued request: the method, its arguments, where the reply goes and its deadline.

    ``reply`` is None for a tell. ``deadline`` is on the event loop's clock (0.0 = none);
    ``chain`` is the call-chain id that allows A -> B -> A reentrancy; ``waits`` what waits on
    the call (the asking turn, or the list an ask from the wire carried; see
    ``runtime.chains``), None for none.
    """

    __slots__ = ("args", "chain", "deadline", "kwargs", "method", "reply", "waits")

    def __init__(
        self,
        method: Method,
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        reply: ReplySink | None,
        deadline: float,
        chain: int,
        waits: Any = None,
    ) -> None:
        self.method = method
        self.args = args
        self.kwargs = kwargs
        self.reply = reply
        self.deadline = deadline
        self.chain = chain
        self.waits = waits
