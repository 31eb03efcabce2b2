"""The ZeroMQ transport's hot socket calls: compiled (:mod:`runtime._fastzmq`) or pure pyzmq.

Both sets have one signature: a socket is passed as its *token* (:func:`token`; ``None`` once
the transport closed it, which raises ``ENOTSOCK``), and errors are pyzmq's (``zmq.Again``,
``zmq.ZMQError``). The compiled set calls libzmq directly and is picked when it was built and
loads; set ``SHOAL_NO_EXTENSIONS=1`` to force the pure one. :data:`ACCELERATED` tells which.
The same choice gives the data store :data:`unfilled_bytes` (None in pure Python).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any, Final

import zmq
import zmq.backend

__all__ = [
    "ACCELERATED",
    "events",
    "recv",
    "recv_buffer",
    "recv_routed",
    "send",
    "send_buffer",
    "token",
    "unfilled_bytes",
]

_NOBLOCK: Final = int(zmq.NOBLOCK)
_EVENTS: Final = int(zmq.EVENTS)
# The backend's calls skip the sugar layer (DRAFT routing_id/group handling on send).
_send: Final = zmq.backend.Socket.send
_recv: Final = zmq.backend.Socket.recv
_get: Final[Callable[[Any, int], Any]] = zmq.backend.Socket.get


def _closed() -> zmq.ZMQError:
    return zmq.ZMQError(errno.ENOTSOCK)


def _py_token(sock: Any) -> Any:
    """The socket itself."""
    return sock


def _py_events(sock: Any) -> int:
    if sock is None:
        raise _closed()
    return int(_get(sock, _EVENTS))


def _py_send(sock: Any, data: bytes, flags: int) -> None:
    if sock is None:
        raise _closed()
    _send(sock, data, flags)


def _py_recv(sock: Any) -> tuple[bytes, int]:
    if sock is None:
        raise _closed()
    # A Frame (copy=False) carries the "more" flag, saving a getsockopt(RCVMORE).
    msg = _recv(sock, _NOBLOCK, False)
    return msg.bytes, msg.more


def _py_recv_routed(sock: Any) -> tuple[bytes, bytes, int]:
    identity, more = _py_recv(sock)
    if not more:
        return identity, b"", 0
    data, more = _py_recv(sock)
    return identity, data, more


def send_buffer(sock: Any, data: Any, flags: int) -> None:
    """Send ``data`` (any contiguous buffer) as one message part without copying it: libzmq
    reads it from where it is, and pyzmq keeps a reference to it until libzmq is done.
    ``sock`` is the pyzmq socket itself (not its token); pyzmq's call in both sets."""
    _send(sock, data, flags, False)


def recv_buffer(sock: Any) -> tuple[memoryview, int]:
    """Receive one message part without copying it: ``(view, more)``, ``view`` a memoryview
    of the zmq message (kept alive by it). ``sock`` is the pyzmq socket itself; pyzmq's call
    in both sets. Raises ``zmq.Again`` if none."""
    msg = _recv(sock, _NOBLOCK, False)
    return msg.buffer, msg.more


def _c_token(sock: Any) -> Any:
    """The socket's libzmq handle."""
    return sock.underlying


token: Callable[[Any], Any] = _py_token
"""What the other calls take for ``sock`` (keep it while the socket is open)."""
events: Callable[[Any], int] = _py_events
"""``getsockopt(EVENTS)``; it also processes the socket's pending commands."""
send: Callable[[Any, bytes, int], None] = _py_send
"""Send one message part with ``flags`` (NOBLOCK, SNDMORE)."""
recv: Callable[[Any], tuple[bytes, int]] = _py_recv
"""Receive one part without waiting: ``(data, more)``; raises ``zmq.Again`` if none."""
recv_routed: Callable[[Any], tuple[bytes, bytes, int]] = _py_recv_routed
"""A ROUTER's identity part and the part after it: ``(identity, data, more)``."""
unfilled_bytes: Callable[[int], tuple[bytes, memoryview]] | None = None
"""``unfilled_bytes(size)``: a bytes object to fill in place and a writable view of it
(``runtime._fastzmq.unfilled_bytes``); None without the compiled module."""
ACCELERATED = False
"""Whether the compiled calls are in use."""

if os.environ.get("SHOAL_NO_EXTENSIONS", "") in ("", "0"):
    try:
        from runtime import _fastzmq
    except ImportError:  # not built, or libzmq not found through pyzmq
        pass
    else:
        token, events, send = _c_token, _fastzmq.events, _fastzmq.send
        recv, recv_routed = _fastzmq.recv, _fastzmq.recv_routed
        unfilled_bytes = _fastzmq.unfilled_bytes
        ACCELERATED = True
