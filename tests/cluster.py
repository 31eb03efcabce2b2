"""Real node processes for multi-node tests: started on loopback, always cleaned up.

A :class:`NodeProcess`'s output is drained by a thread of its own into ``output``, so a chatty
node never blocks on a full pipe. Inside an async test use the ``a``-prefixed methods
(:meth:`NodeProcess.astart`, :meth:`NodeProcess.aterminate`, :meth:`NodeProcess.await_output`):
a blocking wait on the test's loop would freeze the client node's SWIM with it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from actors import ActorError, Node
from router.ring import Ring

ROOT = Path(__file__).resolve().parent.parent

#: Every node process started and not yet reaped: killed at exit whatever happened.
_LIVE: set[NodeProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()


class NodeProcess:
    """A ``shoal node`` child process; ``address`` is what it printed once serving."""

    def __init__(
        self,
        seeds: Sequence[str] = (),
        imports: Sequence[str] = ("tests.sample_actors",),
        listen: str = "tcp://127.0.0.1:0",
        timeout: float = 20.0,
        extra: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> None:
        cmd = [*wrapper, sys.executable, "-m", "runtime", "node", "--listen", listen]
        for seed in seeds:
            cmd += ["--seed", seed]
        for module in imports:
            cmd += ["--import", module]
        cmd += list(extra)
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.output: list[str] = []
        self._changed = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        _LIVE.add(self)
        self._reader = threading.Thread(
            target=self._drain, name=f"node-{self.proc.pid}-output", daemon=True
        )
        self._reader.start()
        try:
            self.address = self._wait_for_address(timeout)
        except BaseException:
            self.kill()
            raise

    @classmethod
    async def astart(cls, **kwargs: Any) -> NodeProcess:
        """Start a node process without blocking the running loop."""
        return await asyncio.to_thread(cls, **kwargs)

    def _drain(self) -> None:
        """The reader thread: every line the node prints goes to ``output`` until EOF."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                with self._changed:
                    self.output.append(line)
                    self._changed.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._changed:
                self._eof = True
                self._changed.notify_all()

    def _wait_for_address(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.output:
                    if line.startswith("listening on "):
                        return line.split()[-1]
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._changed.wait(left)
        raise RuntimeError(f"node did not start: {self.read_output()}")

    def read_output(self) -> str:
        """Everything the node printed so far."""
        with self._changed:
            return "".join(self.output)

    async def await_output(self, text: str, timeout: float) -> str:
        """Wait (without blocking the loop) until the node has printed ``text``; returns the
        whole output, or fails with it past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.read_output()
            if text in out:
                return out
            if time.monotonic() > deadline or self._eof:
                raise AssertionError(f"{text!r} not printed within {timeout} s:\n{out}")
            await asyncio.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def _reap(self) -> None:
        """After the process ended: let the reader reach EOF, then close the pipe."""
        self._reader.join(timeout=10)
        if not self._reader.is_alive() and self.proc.stdout is not None:
            self.proc.stdout.close()
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL and reap (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._reap()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL past ``timeout``); returns the exit code.
        Blocks: in an async test use :meth:`aterminate`."""
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self._reap()
        return code

    async def aterminate(self, timeout: float = 15.0) -> int:
        """:meth:`terminate` in a thread, so the loop (and its SWIM) keeps running."""
        return await asyncio.to_thread(self.terminate, timeout)


@contextmanager
def cluster(size: int, **kwargs: Any) -> Iterator[list[NodeProcess]]:
    """``size`` node processes, each seeded with the first; all killed on exit."""
    nodes: list[NodeProcess] = []
    try:
        nodes.append(NodeProcess(**kwargs))
        for _ in range(size - 1):
            nodes.append(NodeProcess(seeds=[nodes[0].address], **kwargs))
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def ring_owner(members: Sequence[str], type_name: str, key: str) -> str:
    """The member that owns (and by default hosts) an actor on a ring of ``members``, as
    ``placement="hash"`` places it when every member serves the type."""
    return Ring(members).owner_of(type_name, key)


async def info_keys(client: Node, addresses: Sequence[str]) -> dict[str, str]:
    """A NodeInfo key hosted by each address (so each call runs on that node), found by
    asking the actors where they run."""
    found: dict[str, str] = {}
    i = 0
    failures: list[ActorError] = []
    while len(found) < len(addresses):
        key = f"info-{i}"
        try:
            found.setdefault(await client.ref("NodeInfo", key).address(), key)
        except ActorError as err:
            # a link that is coming back (right after a heal, a rejoin) fails the calls in
            # flight on it: ask again, a bounded number of times
            failures.append(err)
            assert len(failures) < 20, f"NodeInfo calls keep failing: {failures[-3:]}"
            await asyncio.sleep(0.1)
            continue
        i += 1
        assert i < 1_000, f"no NodeInfo key lands on some of {addresses}: {found}"
    assert sorted(found) == sorted(addresses), found
    return found


async def until(
    predicate: Callable[[], Awaitable[object] | object], timeout: float, step: float = 0.05
) -> float:
    """Poll ``predicate`` (sync or async) until it returns a true value; returns the seconds it
    took. Past ``timeout`` it fails, naming the last value and the last ``ActorError`` seen."""
    start = time.monotonic()
    last_value: object = None
    last_error: ActorError | None = None
    while True:
        try:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return time.monotonic() - start
            last_value = value
        except ActorError as err:
            last_error = err
        if time.monotonic() - start > timeout:
            raise AssertionError(
                f"condition not met within {timeout} s: last value {last_value!r}, "
                f"last error {last_error!r}"
            )
        await asyncio.sleep(step)


@asynccontextmanager
async def converged_client(
    procs: list[NodeProcess], members: int, **options: Any
) -> AsyncIterator[Node]:
    """A pure client of ``procs`` once it and every node see ``members`` members; stopped on
    exit, also when waiting for convergence fails. ``options`` go to ``Node`` (``key=``...)."""
    client = Node(seeds=[p.address for p in procs], serve=(), default_timeout=10, **options)
    await client.start()
    try:
        await until(lambda: len(client.members) == members, 15)
        addresses = sorted(p.address for p in procs)
        for key in (await info_keys(client, addresses)).values():

            async def sees_all(key: str = key) -> bool:
                return sorted(await client.ref("NodeInfo", key).view()) == addresses

            await until(sees_all, 15)
        yield client
    finally:
        await client.stop()


class ProbeLoad:
    """Steady asks to ``Probe`` actors, each with a unique call id, recording every outcome as
    ``(kind, call_id)``: ``"ok"`` or the typed error's name (``NodeUnavailable``,
    ``ActorTimeout``), so a test can check that acknowledged calls ran exactly once."""

    def __init__(self, client: Node, keys: list[str], timeout: float, backoff: float) -> None:
        self.client = client
        self.outcomes: dict[str, list[tuple[str, int]]] = {k: [] for k in keys}
        self._timeout = timeout
        self._backoff = backoff
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._seq = 0
        self._workers = [asyncio.ensure_future(self._run(k)) for k in keys]

    async def _run(self, key: str) -> None:
        from actors import ActorTimeout, NodeUnavailable

        while not self._stop.is_set():
            self._seq += 1
            call_id = self._seq
            try:
                await self.client.ref("Probe", key).touch.ask(call_id, timeout=self._timeout)
                self.outcomes[key].append(("ok", call_id))
                self._progress.set()
            except (NodeUnavailable, ActorTimeout) as err:
                self.outcomes[key].append((type(err).__name__, call_id))
                await asyncio.sleep(self._backoff)

    def acked(self, key: str) -> set[int]:
        """The call ids that were answered."""
        return {cid for kind, cid in self.outcomes[key] if kind == "ok"}

    async def advance(self, acks: int, timeout: float, keys: Sequence[str] | None = None) -> None:
        """Wait until every key (of ``keys``, default all) has ``acks`` more answered calls
        than now: the load is running, not merely started."""
        keys = list(self.outcomes) if keys is None else list(keys)
        want = {k: len(self.acked(k)) + acks for k in keys}
        behind = keys
        try:
            async with asyncio.timeout(timeout):
                while True:
                    behind = [k for k in keys if len(self.acked(k)) < want[k]]
                    if not behind:
                        return
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            raise AssertionError(
                f"{len(behind)} keys got fewer than {acks} answers within {timeout} s, "
                f"e.g. {behind[0]}: {self.outcomes[behind[0]][-5:]}"
            ) from None

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._workers), timeout)


@asynccontextmanager
async def host_and_client(name: str, mailbox_limit: int) -> AsyncIterator[tuple[Node, Node]]:
    """A member (``mem://NAME``) that hosts everything, with ``mailbox_limit``, and a pure
    client of it, over one in-process network; both stopped on exit."""
    from runtime.memory_transport import MemoryNetwork, MemoryTransport

    net = MemoryNetwork()
    host = Node(listen=f"mem://{name}", transport=MemoryTransport(net), mailbox_limit=mailbox_limit)
    client = Node(
        seeds=[f"mem://{name}"], serve=(), transport=MemoryTransport(net), default_timeout=10
    )
    await host.start()
    try:
        await client.start()
        try:
            await until(lambda: client.members == [host.address], 10)
            yield host, client
        finally:
            await client.stop()
    finally:
        await host.stop()


def queued(node: Node, type_name: str, key: str) -> int:
    """Messages queued at ``node``'s activation of ``type_name``/``key``."""
    from runtime.activation import Activation

    act = node._catalog.lookup(type_name, key)
    assert isinstance(act, Activation)
    return 0 if act.queue is None else len(act.queue)
