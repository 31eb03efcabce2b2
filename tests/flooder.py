"""A flood against a node, as an outsider would send it: ``python -m tests.flooder KIND ADDRESS
SECONDS [ARG]``. Runs in a process of its own (so the test's client measures the node, not the
flood's own loop), prints one line ``sent N`` when its time is up, and exits.

Kinds:

* ``oversized``: a raw DEALER sends frames of ARG bytes (default 1 GB) over and over, from an
  untouched anonymous memory map (zero pages: the flood itself costs no memory);
* ``unread``: a raw DEALER that never reads sends asks for ``Counter.blob(ARG)`` (default
  16 KiB) to keys ``unread-0..63``, a thousand envelopes per frame;
* ``tells``: a raw DEALER sends tells ``Counter.slow_incr(0.001)`` to the key ARG, a thousand
  envelopes per frame, with no pacing;
* ``activations``: a raw DEALER sends tells ``Counter.incr()`` to fresh keys ``act-N``;
* ``silent``: opens ARG TCP connections that send nothing, and holds them.
"""

from __future__ import annotations

import mmap
import socket
import sys
import time

import zmq

from runtime import wire

BATCH = 1000


def _dealer(ctx: zmq.Context, address: str, unread: bool = False) -> zmq.Socket:  # type: ignore[type-arg]
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100)
    if unread:
        sock.setsockopt(zmq.RCVHWM, 1)
        sock.setsockopt(zmq.RCVBUF, 4096)
    sock.connect(address)
    return sock


def _request(kind: int, corr: int, key: str, method: str, args: list[object]) -> bytes:
    deadline = time.time() + 60 if kind == wire.ASK else 0.0
    return wire.encode_request(kind, corr, "", "Counter", key, method, args, {}, deadline, 0, 0)


def _send(sock: zmq.Socket, frame: bytes | memoryview, until: float) -> bool:  # type: ignore[type-arg]
    """Send one frame, waiting for room until ``until``; False once time is up."""
    while time.monotonic() < until:
        try:
            sock.send(frame, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            time.sleep(0.001)
    return False


def _frame(kind: str, arg: str | None, n: int) -> bytes:
    """The ``n``-th frame of a flood of ``kind``: BATCH envelopes."""
    chunks = []
    for i in range(n * BATCH, (n + 1) * BATCH):
        if kind == "unread":
            chunk = _request(wire.ASK, i + 1, f"unread-{i % 64}", "blob", [int(arg or 16384)])
        elif kind == "tells":
            chunk = _request(wire.TELL, 0, arg or "flooded", "slow_incr", [0.001])
        else:
            chunk = _request(wire.TELL, 0, f"act-{i}", "incr", [])
        chunks.append(chunk)
    return b"".join(chunks)


def main(kind: str, address: str, seconds: float, arg: str | None) -> None:
    until = time.monotonic() + seconds
    sent = 0
    ctx = zmq.Context()
    if kind == "silent":
        from runtime.cli import raise_descriptor_limit

        raise_descriptor_limit()
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        held = [
            socket.create_connection((host, int(port)), timeout=5) for _ in range(int(arg or 1))
        ]
        print(f"open {len(held)}", flush=True)
        time.sleep(max(0.0, until - time.monotonic()))
        sent = len(held)
    elif kind == "oversized":
        size = int(arg or 1 << 30)
        frame = memoryview(mmap.mmap(-1, size))
        sock = _dealer(ctx, address)
        while time.monotonic() < until:
            try:
                sock.send(frame, zmq.NOBLOCK, copy=False)
                sent += 1
            except zmq.Again:
                pass
            time.sleep(0.05)
    else:
        # The frames are made before the flood, so that it costs this process little CPU
        # (on a small machine the node and the test's client get the rest).
        frames = [_frame(kind, arg, n) for n in range(200 if kind == "activations" else 1)]
        sock = _dealer(ctx, address, unread=kind == "unread")
        n = 0
        while _send(sock, frames[n % len(frames)], until):
            sent += BATCH
            n += 1
    print(f"sent {sent}", flush=True)
    ctx.destroy(linger=0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
