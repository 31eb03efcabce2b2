"""Real node processes for multi-node tests: started on loopback, always cleaned up."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from actors import ActorError, Node

ROOT = Path(__file__).resolve().parent.parent


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
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.output: list[str] = []
        self.address = self._wait_for_address(timeout)

    def _wait_for_address(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if not line and self.proc.poll() is not None:
                    break
                self.output.append(line)
                if line.startswith("listening on "):
                    return line.split()[-1]
            elif self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"node did not start: {''.join(self.output)}")

    def read_output(self, timeout: float) -> str:
        """Whatever the node printed since, reading for up to ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
        return "".join(self.output)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL and reap (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a graceful exit (SIGKILL past ``timeout``); returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        if self.proc.stdout is not None:
            self.output.extend(self.proc.stdout.readlines())
            self.proc.stdout.close()
        return code


@contextmanager
def cluster(size: int, **kwargs: object) -> Iterator[list[NodeProcess]]:
    """``size`` node processes, each seeded with the first; all killed on exit."""
    nodes: list[NodeProcess] = []
    try:
        nodes.append(NodeProcess(**kwargs))  # type: ignore[arg-type]
        for _ in range(size - 1):
            nodes.append(NodeProcess(seeds=[nodes[0].address], **kwargs))  # type: ignore[arg-type]
        yield nodes
    finally:
        for n in nodes:
            n.kill()


def info_keys(client: Node, addresses: list[str]) -> dict[str, str]:
    """A NodeInfo key owned by each address (so each call runs on that node)."""
    assert client._cluster is not None
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(addresses):
        key = f"info-{i}"
        owner = client._cluster.owner("NodeInfo", key)
        found.setdefault(owner, key)
        i += 1
        assert i < 10_000
    return found


async def until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.05
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took (fails past ``timeout``)."""
    start = time.monotonic()
    while True:
        try:
            if await predicate():
                return time.monotonic() - start
        except ActorError:
            pass
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


async def converged_client(procs: list[NodeProcess], members: int) -> Node:
    client = Node(seeds=[p.address for p in procs], serve=(), default_timeout=10)
    await client.start()

    async def converged() -> bool:
        return len(client.members) == members

    await until(converged, 15)
    addresses = sorted(p.address for p in procs)
    for key in info_keys(client, addresses).values():

        async def sees_all(key: str = key) -> bool:
            return sorted(await client.ref("NodeInfo", key).view()) == addresses

        await until(sees_all, 15)
    return client


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
            except (NodeUnavailable, ActorTimeout) as err:
                self.outcomes[key].append((type(err).__name__, call_id))
                await asyncio.sleep(self._backoff)

    def acked(self, key: str) -> set[int]:
        """The call ids that were answered."""
        return {cid for kind, cid in self.outcomes[key] if kind == "ok"}

    async def stop(self, timeout: float) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._workers), timeout)
