"""Partitions: the minority side serves nothing; after the heal, one activation per actor.

Run over the in-memory transport's fault hook (always, five nodes in one process) and between
real node processes in two network namespaces that the test makes itself (skipped, with the
reason, where namespaces cannot be made).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from actors import ActorError, ActorTimeout, Node, NodeUnavailable
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from tests.cluster import NodeProcess
from tests.sample_actors import Counter

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


async def _until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float) -> float:
    start = time.monotonic()
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def test_three_two_split_minority_refuses_majority_serves_heal_converges() -> None:
    net = MemoryNetwork()
    names = [f"mem://p{i}" for i in range(5)]
    nodes = [
        Node(listen=name, seeds=names[:1], transport=MemoryTransport(net), default_timeout=3)
        for name in names
    ]
    try:
        for n in nodes:
            await n.start()
        await _until(lambda: all(len(n.members) == 5 for n in nodes), 15)
        keys = [f"part-{i}" for i in range(100)]
        for k in keys:
            assert await nodes[0].ref(Counter, k).incr() == 1
        majority, minority = nodes[:3], nodes[3:]
        minority_hosted = {k for n in minority for k in n._catalog._by_type.get("Counter", {})}
        assert minority_hosted

        net.partition(names[:3], names[3:])
        took = await _until(lambda: all(len(n.members) == 3 for n in majority), 10)
        print(f"majority removed the minority {took:.2f} s after the split")
        assert all(n._cluster is not None and not n._cluster.serving() for n in minority)
        await _until(lambda: all(n.activation_count == 0 for n in minority), 5)

        # the majority serves every actor, the minority's reactivated afresh
        for k in keys:
            count = await majority[1].ref(Counter, k).incr()
            assert count == (1 if k in minority_hosted else 2), k
        # the minority refuses: no actor runs there
        for k in keys[:10]:
            with pytest.raises((NodeUnavailable, ActorTimeout)):
                await minority[0].ref(Counter, k).incr.ask(timeout=1.0)
        assert all(n.activation_count == 0 for n in minority)

        net.heal()

        def converged() -> bool:
            return all(len(n.members) == 5 and n._cluster.serving() for n in nodes)  # type: ignore[union-attr]

        took = await _until(converged, 20)
        print(f"converged to 5 members {took:.2f} s after the heal")

        async def all_reachable() -> bool:
            try:
                await asyncio.gather(*(minority[0].ref(Counter, k).peek() for k in keys))
            except ActorError:
                return False
            return True

        await _until(all_reachable, 10)
        hosted = [k for n in nodes for k in n._catalog._by_type.get("Counter", {})]
        assert len(hosted) == len(set(hosted)) == len(keys)
        for k in keys:
            expected = 2 if k in minority_hosted else 3
            assert await nodes[4].ref(Counter, k).incr() == expected, k
    finally:
        for n in reversed(nodes):
            await n.stop()


class _Namespaces:
    """Two network namespaces on a bridge, made (and removed) by the test itself."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"sbr{tag}"
        self.ns = {"a": f"shoalA{tag}", "b": f"shoalB{tag}"}
        self.ip = {"a": "10.250.7.1", "b": "10.250.7.2"}
        self.root_ends: dict[str, str] = {}
        self.made: list[list[str]] = []

    def _run(self, *cmd: str) -> None:
        subprocess.run(["ip", *cmd], check=True, capture_output=True, timeout=10)

    def create(self) -> None:
        self._run("link", "add", self.bridge, "type", "bridge")
        self.made.append(["link", "del", self.bridge])
        self._run("addr", "add", "10.250.7.254/24", "dev", self.bridge)
        self._run("link", "set", self.bridge, "up")
        for side, ns in self.ns.items():
            self._run("netns", "add", ns)
            self.made.append(["netns", "del", ns])
            inner, outer = f"s{side}i{os.getpid() % 100000}", f"s{side}o{os.getpid() % 100000}"
            self._run("link", "add", inner, "type", "veth", "peer", "name", outer)
            self.made.append(["link", "del", outer])
            self._run("link", "set", inner, "netns", ns)
            self._run("link", "set", outer, "master", self.bridge)
            self._run("link", "set", outer, "up")
            self._run("netns", "exec", ns, "ip", "addr", "add", f"{self.ip[side]}/24", "dev", inner)
            self._run("netns", "exec", ns, "ip", "link", "set", inner, "up")
            self._run("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self.root_ends[side] = outer

    def cut(self, side: str) -> None:
        self._run("link", "set", self.root_ends[side], "nomaster")

    def mend(self, side: str) -> None:
        self._run("link", "set", self.root_ends[side], "master", self.bridge)

    def destroy(self) -> None:
        for cmd in reversed(self.made):
            subprocess.run(["ip", *cmd], capture_output=True, timeout=10)


@pytest.fixture
def namespaces() -> Iterator[_Namespaces]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    ns = _Namespaces()
    try:
        ns.create()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        ns.destroy()
        stderr = getattr(err, "stderr", b"") or b""
        pytest.skip(f"cannot make network namespaces here: {stderr.decode().strip() or err}")
    try:
        yield ns
    finally:
        ns.destroy()


async def test_three_two_split_between_network_namespaces(namespaces: _Namespaces) -> None:
    procs: list[NodeProcess] = []
    try:
        for i in range(5):
            side = "a" if i < 3 else "b"
            seeds = [procs[0].address] if procs else []
            procs.append(
                NodeProcess(
                    seeds=seeds,
                    listen=f"tcp://{namespaces.ip[side]}:0",
                    wrapper=["ip", "netns", "exec", namespaces.ns[side]],
                )
            )
        client = Node(seeds=[procs[0].address], serve=(), default_timeout=3)
        await client.start()
        try:
            await _until(lambda: len(client.members) == 5, 20)
            keys = [f"ns-{i}" for i in range(60)]
            for k in keys:
                assert await client.ref(Counter, k).incr() == 1
            assert client._cluster is not None
            on_b = {
                k
                for k in keys
                if client._cluster.owner("Counter", k) in {p.address for p in procs[3:]}
            }
            assert on_b

            namespaces.cut("b")
            took = await _until(lambda: len(client.members) == 3, 15)
            print(f"majority removed the minority {took:.2f} s after the cut")
            for k in keys:
                assert await client.ref(Counter, k).incr() == (1 if k in on_b else 2), k
            for p in procs[3:]:
                await p.await_output("lost quorum", 5.0)

            namespaces.mend("b")
            took = await _until(lambda: len(client.members) == 5, 30)
            print(f"five members again {took:.2f} s after the heal")
            infos: dict[str, str] = {}
            i = 0
            while len(infos) < 5:
                infos.setdefault(client._cluster.owner("NodeInfo", f"info-{i}"), f"info-{i}")
                i += 1

            async def one_each() -> bool:
                per_node = await asyncio.gather(
                    *(client.ref("NodeInfo", k).active_keys("Counter") for k in infos.values())
                )
                seen = [k for ks in per_node for k in ks]
                return len(seen) == len(set(seen))

            await _until(one_each, 10)
            for k in keys:
                assert await client.ref(Counter, k).incr() == (2 if k in on_b else 3), k
        finally:
            await client.stop()
    finally:
        for p in procs:
            p.kill()
