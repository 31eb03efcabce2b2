"""The transport's hot socket calls: the compiled set and the pure pyzmq set behave alike."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import zmq

from runtime import _zmqcalls
from tests.cluster import ROOT

PURE = SimpleNamespace(
    token=_zmqcalls._py_token,
    events=_zmqcalls._py_events,
    send=_zmqcalls._py_send,
    recv=_zmqcalls._py_recv,
    recv_routed=_zmqcalls._py_recv_routed,
)


#: Set, the compiled calls may be missing (the Makefile runs this file once that way).
NO_EXTENSIONS = os.environ.get("SHOAL_NO_EXTENSIONS", "") not in ("", "0")


def _compiled() -> tuple[SimpleNamespace | None, str]:
    try:
        from runtime import _fastzmq
    except ImportError as err:
        return None, f"runtime._fastzmq does not import: {err!r}"
    return (
        SimpleNamespace(
            token=_zmqcalls._c_token,
            events=_fastzmq.events,
            send=_fastzmq.send,
            recv=_fastzmq.recv,
            recv_routed=_fastzmq.recv_routed,
        ),
        "",
    )


COMPILED, COMPILED_MISSING = _compiled()
IMPLS = [
    pytest.param(PURE, id="pure"),
    pytest.param(
        COMPILED,
        id="compiled",
        marks=[pytest.mark.skip(reason=f"SHOAL_NO_EXTENSIONS is set and {COMPILED_MISSING}")]
        if COMPILED is None and NO_EXTENSIONS
        else [],
    ),
]


@pytest.fixture(params=IMPLS)
def calls(request: pytest.FixtureRequest) -> SimpleNamespace:
    impl: SimpleNamespace | None = request.param
    if impl is None:  # not built, and nobody said it may be missing
        pytest.fail(f"{COMPILED_MISSING} (set SHOAL_NO_EXTENSIONS=1 to test without it)")
    return impl


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    """A ROUTER and a DEALER connected over inproc (delivery is synchronous: no waiting)."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.bind("inproc://calls")
        dealer.connect("inproc://calls")
        yield router, dealer
    finally:
        router.close(linger=0)
        dealer.close(linger=0)
        ctx.term()


def test_compiled_calls_are_used_when_built() -> None:
    if NO_EXTENSIONS:
        assert not _zmqcalls.ACCELERATED
    else:
        assert COMPILED is not None, COMPILED_MISSING
        assert _zmqcalls.ACCELERATED
        assert _zmqcalls.events is COMPILED.events


def test_no_extensions_forces_the_pure_calls() -> None:
    env = dict(os.environ, SHOAL_NO_EXTENSIONS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", "from runtime import _zmqcalls; print(_zmqcalls.ACCELERATED)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_request_and_reply(calls: SimpleNamespace, pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    r, d = calls.token(router), calls.token(dealer)
    assert not calls.events(r) & zmq.POLLIN
    calls.send(d, b"hello", zmq.NOBLOCK)
    assert calls.events(r) & zmq.POLLIN
    ident, data, more = calls.recv_routed(r)
    assert (data, more) == (b"hello", 0)
    assert not calls.events(r) & zmq.POLLIN
    calls.send(r, ident, zmq.NOBLOCK | zmq.SNDMORE)
    calls.send(r, b"world" * 1000, zmq.NOBLOCK)
    assert calls.events(d) & zmq.POLLIN
    assert calls.recv(d) == (b"world" * 1000, 0)
    assert calls.events(d) == zmq.POLLOUT


def test_parts_report_more(calls: SimpleNamespace, pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    r, d = calls.token(router), calls.token(dealer)
    dealer.send_multipart([b"a", b"", b"c"])
    ident, data, more = calls.recv_routed(r)
    assert (data, more) == (b"a", 1)
    assert calls.recv(r) == (b"", 1)
    assert calls.recv(r) == (b"c", 0)
    router.send_multipart([ident, b"x", b"y"])
    assert calls.recv(d) == (b"x", 1)
    assert calls.recv(d) == (b"y", 0)


def test_nothing_to_read_raises_again(calls: SimpleNamespace, pair: tuple[Any, Any]) -> None:
    router, dealer = pair
    with pytest.raises(zmq.Again):
        calls.recv(calls.token(dealer))
    with pytest.raises(zmq.Again):
        calls.recv_routed(calls.token(router))


def test_errors_are_pyzmqs(calls: SimpleNamespace, pair: tuple[Any, Any]) -> None:
    router, _ = pair
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    r = calls.token(router)
    with pytest.raises(zmq.ZMQError) as unreachable:
        calls.send(r, b"nobody", zmq.NOBLOCK | zmq.SNDMORE)
    assert unreachable.value.errno == errno.EHOSTUNREACH
    for call in (calls.events, calls.recv, calls.recv_routed):
        with pytest.raises(zmq.ZMQError) as closed:
            call(None)  # the token of a socket the transport closed
        assert closed.value.errno == errno.ENOTSOCK
    with pytest.raises(zmq.ZMQError) as closed:
        calls.send(None, b"x", zmq.NOBLOCK)
    assert closed.value.errno == errno.ENOTSOCK


def test_buffers_travel_without_copies(calls: SimpleNamespace, pair: tuple[Any, Any]) -> None:
    """``send_buffer``/``recv_buffer`` (pyzmq's zero-copy calls, on the pyzmq socket) mix with
    either set's calls in one message: how the transport sends an attached message."""
    router, dealer = pair
    r, d = calls.token(router), calls.token(dealer)
    big = bytes(range(256)) * 1024  # over pyzmq's copy threshold: sent from where it is
    calls.send(d, b"head", zmq.NOBLOCK | zmq.SNDMORE)
    _zmqcalls.send_buffer(dealer, memoryview(big)[3:], zmq.NOBLOCK)
    ident, head, more = calls.recv_routed(r)
    assert (head, more) == (b"head", 1)
    view, more = _zmqcalls.recv_buffer(router)
    assert type(view) is memoryview and view.format == "B" and more == 0
    assert view == big[3:]
    calls.send(r, ident, zmq.NOBLOCK | zmq.SNDMORE)
    _zmqcalls.send_buffer(router, b"small", zmq.NOBLOCK | zmq.SNDMORE)
    _zmqcalls.send_buffer(router, b"", zmq.NOBLOCK)
    assert _zmqcalls.recv_buffer(dealer)[0] == b"small"
    assert calls.recv(d) == (b"", 0)
    with pytest.raises(zmq.Again):
        _zmqcalls.recv_buffer(dealer)


def test_unfilled_bytes_are_filled_in_place() -> None:
    if _zmqcalls.unfilled_bytes is None:
        assert not _zmqcalls.ACCELERATED
        pytest.skip("no compiled accelerator: fetched bytes payloads are joined instead")
    for size in (0, 10, 9 << 20):  # the largest one is advised to use huge pages
        data, view = _zmqcalls.unfilled_bytes(size)
        assert type(data) is bytes and len(data) == size and not view.readonly
        view[:] = bytes(range(256)) * (size // 256) + bytes(size % 256)
        view.release()
        assert data == bytes(range(256)) * (size // 256) + bytes(size % 256)
    with pytest.raises(ValueError):
        _zmqcalls.unfilled_bytes(-1)
    with pytest.raises(MemoryError):
        _zmqcalls.unfilled_bytes(1 << 62)
