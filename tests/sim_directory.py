"""Seeded random schedules of a cluster under churn, in virtual time, checked for one activation.

Each seed builds a cluster of 3-5 nodes on the in-memory transport, inside a virtual-time loop
(``runtime.simloop``), with random per-frame latency (so frames on different connections
overtake each other), and plays a random schedule of joins, graceful leaves, kills and
partitions (healed later; half of them hold what they cannot carry and deliver it at the heal,
as TCP does) while every live node sends a steady stream of calls, a third of them
first calls, to ``SimProbe`` actors. Checked:

* **one activation, continuously**: every millisecond of virtual time, no key is active on two
  nodes that would serve it (not killed, and with quorum or leaving; a migrating source does
  not serve);
* **nothing run twice**: no call's tag appears twice in its actor's record;
* **nothing acknowledged lost**: every acknowledged call is in its actor's record at the end,
  unless the node that answered it, or one its state was handed to afterwards, was killed or
  later dropped its activations (it lost quorum or learned it had been removed -- while it
  answered, it was the only one serving);
* a planned change (join, leave) with no fault in the schedule fails no call.

Run: ``PYTHONHASHSEED=0 python -m tests.sim_directory --seeds 0-199`` (a failing seed prints
the command that replays it: ``--seeds N -v``). ``tests/test_directory_sim.py`` runs a batch.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from actors import ActorError, Node, actor
from router.swim import Status, SwimConfig
from runtime.activation import Activation
from runtime.context import current_node
from runtime.lifecycle import MIGRATING
from runtime.memory_transport import MemoryNetwork, MemoryTransport
from runtime.simloop import VirtualTimeLoop, sim_clock


@actor
class SimProbe:
    """Records the tag of every call it ran; answers with the address of its node."""

    def __init__(self) -> None:
        self.tags: list[str] = []

    def mark(self, tag: str) -> str:
        self.tags.append(tag)
        return current_node().address

    def ran(self) -> list[str]:
        return self.tags


@dataclass
class Run:
    """What one seed's run saw."""

    seed: int
    events: list[str] = field(default_factory=list)
    #: tag -> (key, host that answered, time it was sent)
    acked: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    killed: set[str] = field(default_factory=set)
    dropped: dict[str, float] = field(default_factory=dict)  # host -> last drop time
    handed: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # key -> (to, t)
    faults: bool = False

    def fail(self, what: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(what)


class Sim:
    """One seed's cluster, schedule and checks."""

    def __init__(self, seed: int, loop: VirtualTimeLoop, verbose: bool) -> None:
        self.seed = seed
        self.loop = loop
        self.rng = random.Random(seed)
        self.net = MemoryNetwork()
        self.net.delay = self._delay
        self.nodes: dict[str, Node] = {}
        self.live: list[str] = []
        self.run = Run(seed)
        self.keys: list[str] = []
        self.verbose = verbose
        self._count = 0
        self._in_flight = 0
        self.doubled: set[str] = set()

    def _delay(self, src: str, dst: str) -> float:
        r = self.rng.random()
        if r < 0.05:
            return self.rng.uniform(0.02, 0.08)  # a slow frame: later ones overtake it
        return self.rng.uniform(0.0002, 0.003)

    def log(self, text: str) -> None:
        line = f"{self.loop.time():8.3f} {text}"
        self.run.events.append(line)
        if self.verbose:
            print(line)

    async def start_node(self, name: str) -> None:
        seeds = [self.live[0]] if self.live else []
        node = Node(
            listen=f"mem://{name}",
            seeds=seeds,
            transport=MemoryTransport(self.net),
            default_timeout=3.0,
            serve=[SimProbe],
            clock=sim_clock(self.loop, self.rng.getrandbits(32)),
        )
        node.swim_config = SwimConfig()
        self._watch_drops(node, name)
        await node.start()
        self.nodes[node.address] = node
        self.live.append(node.address)
        self.log(f"joined {node.address}")

    def _watch_drops(self, node: Node, name: str) -> None:
        """Record when a node drops its activations (lost quorum, removed by the others)."""
        run, loop = self.run, self.loop

        def observe(event: str, act: Activation) -> None:
            if event == "dropped":
                if run.dropped.get(node.address) != loop.time():
                    self.log(f"{node.address} drops its activations")
                run.dropped[node.address] = loop.time()
            elif event == "handoff":
                run.handed.setdefault(act.key, []).append((node.address, loop.time()))

        node._catalog.observers.append(observe)

    # -- the load -------------------------------------------------------------------------

    async def call(self, sender: Node, key: str) -> None:
        self._count += 1
        tag = f"t{self._count}"
        self._in_flight += 1
        sent = self.loop.time()  # it ran between this and its answer
        try:
            host = await sender.ref(SimProbe, key).mark.ask(tag, timeout=2.0)
            self.run.acked[tag] = (key, host, sent)
        except ActorError as err:
            name = type(err).__name__
            self.run.failed[name] = self.run.failed.get(name, 0) + 1
        finally:
            self._in_flight -= 1

    async def load(self, until: float) -> None:
        """Calls from random live nodes every 2 ms, a third of them to fresh keys."""
        tasks: set[asyncio.Task[None]] = set()
        while self.loop.time() < until:
            if self.live and self._in_flight < 64:
                sender = self.nodes[self.rng.choice(self.live)]
                if not self.keys or self.rng.random() < 0.33:
                    self.keys.append(f"k{len(self.keys)}")
                    key = self.keys[-1]
                else:
                    key = self.rng.choice(self.keys)
                task = asyncio.ensure_future(self.call(sender, key))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    # -- the continuous check ---------------------------------------------------------------

    def serving(self, address: str, node: Node) -> bool:
        cluster = node._cluster
        if address in self.run.killed or cluster is None or not node._running:
            return False
        return cluster.may_serve()

    async def watch(self, until: float) -> None:
        while self.loop.time() < until:
            where: dict[str, str] = {}
            for address, node in self.nodes.items():
                if not self.serving(address, node):
                    continue
                table = node._catalog.by_type.get("SimProbe", {})
                for key, act in table.items():
                    if getattr(act, "status", None) == MIGRATING:
                        continue
                    other = where.setdefault(key, address)
                    if other != address and key not in self.doubled:
                        self.doubled.add(key)
                        self.run.fail(
                            f"{self.loop.time():.3f}: {key} active on {other} and {address}"
                        )
            await asyncio.sleep(0.001)

    # -- the schedule ---------------------------------------------------------------------

    async def schedule(self, end: float) -> None:
        """3 to 6 changes at random times, then heal and let the views settle."""
        changes = self.rng.randint(3, 6)
        times = sorted(self.rng.uniform(0.5, end - 3.0) for _ in range(changes))
        partitioned = False
        for at in times:
            await asyncio.sleep(max(0.0, at - self.loop.time()))
            kinds = ["join", "leave"]
            if len(self.live) >= 3 and not self._removal_pending():
                # one fault at a time: a second kill before the first is removed could leave
                # no majority anywhere, and nothing could be checked after it
                kinds += ["kill", "partition"]
            kind = self.rng.choice(kinds) if len(self.live) > 2 else "join"
            if kind == "join":
                await self.start_node(f"n{len(self.nodes)}")
            elif kind == "leave":
                address = self.rng.choice(self.live[1:])
                self.live.remove(address)
                self.log(f"leaving {address}")
                await self.nodes[address].stop()
                self.log(f"left {address}")
            elif kind == "kill":
                address = self.rng.choice(self.live[1:])
                self.live.remove(address)
                self.run.killed.add(address)
                self.run.faults = True
                self.net.kill(address)
                self.log(f"killed {address}")
            elif kind == "partition" and not partitioned:
                names = list(self.live)
                self.rng.shuffle(names)
                cut = self.rng.randint(1, len(names) // 2)
                # dropping (a network that loses what it cannot carry) or holding (TCP's
                # buffers: what waited out the cut arrives at the heal, before anything newer)
                held = self.rng.random() < 0.5
                (self.net.hold if held else self.net.partition)(names[:cut], names[cut:])
                self.run.faults = True
                partitioned = True
                kind = "held partition" if held else "partition"
                self.log(f"{kind} {names[:cut]} | {names[cut:]}")
                heal_at = self.loop.time() + self.rng.uniform(1.0, 3.0)
                self.loop.call_at(heal_at, self._heal)

    def _removal_pending(self) -> bool:
        """Whether a killed node is still in a live node's view, or a partition is cut."""
        if self.net.cut:
            return True
        return any(k in self.nodes[a].members for a in self.live for k in self.run.killed)

    def _heal(self) -> None:
        self.net.heal()
        self.log("healed")

    async def converge(self, timeout: float) -> None:
        """Until every live node sees exactly the live nodes, all ALIVE (a suspicion still
        pending would change the view again), and has settled its view."""
        give_up = self.loop.time() + timeout
        want = sorted(self.live)

        def calm(node: Node) -> bool:
            cluster = node._cluster
            if cluster is None or cluster.swim is None or not cluster.settled:
                return False
            return all(status is Status.ALIVE for _, status, _ in cluster.swim.members().values())

        while self.loop.time() < give_up:
            if all(self.nodes[a].members == want and calm(self.nodes[a]) for a in self.live):
                return
            await asyncio.sleep(0.05)
        views = {a: self.nodes[a].members for a in self.live}
        self.run.fail(f"views did not converge to {want}: {views}")

    def _where(self, key: str) -> str:
        """What every live node knows of ``key`` (for a failure report)."""
        out = []
        for address in self.live:
            node = self.nodes[address]
            cluster = node._cluster
            assert cluster is not None
            entry = cluster.directory.lookup("SimProbe", key)
            active = node._catalog.lookup("SimProbe", key) is not None
            locator = node._locator
            located = locator.route("SimProbe", key) if locator is not None else None
            out.append(
                f"{address}: active={active} owner={cluster.owner('SimProbe', key)} "
                f"entry={entry} located={located}"
            )
        return "; ".join(out)

    def _lost(self, host: str, since: float) -> bool:
        """Whether what ``host`` held at ``since`` was lost: killed, or dropped after."""
        return host in self.run.killed or self.run.dropped.get(host, -1.0) >= since

    async def final_check(self) -> None:
        """Every acknowledged call in its actor's record, none twice."""
        asker = self.nodes[self.live[0]]
        keys = sorted({k for k, _, _ in self.run.acked.values()})
        records: dict[str, list[str]] = {}
        for i in range(0, len(keys), 50):
            batch = keys[i : i + 50]
            for attempt in range(3):  # a view change in the middle fails reads: read again
                got = await asyncio.gather(
                    *(asker.ref(SimProbe, k).ran.ask(timeout=5.0) for k in batch),
                    return_exceptions=True,
                )
                failed = []
                for key, tags in zip(batch, got, strict=True):
                    if not isinstance(tags, BaseException):
                        records[key] = tags
                    elif attempt == 2:
                        self.run.fail(f"reading {key} failed: {tags!r}; {self._where(key)}")
                    else:
                        failed.append(key)
                if not failed:
                    break
                batch = failed
                await asyncio.sleep(0.5)  # a node that just rejoined renews its lease
                await self.converge(10)
        for key, tags in records.items():
            if len(tags) != len(set(tags)):
                twice = sorted(t for t in set(tags) if tags.count(t) > 1)
                self.run.fail(f"{key} ran a call twice: {twice[:3]}")
        for tag, (key, host, at) in self.run.acked.items():
            if key not in records or tag in records[key]:
                continue
            if self._lost(host, at) or any(
                t >= at and self._lost(h, t) for h, t in self.run.handed.get(key, ())
            ):
                continue  # its state went with a node that was killed or dropped it
            self.run.fail(f"acknowledged {tag} (by {host} at {at:.3f}) missing from {key}")
        if not self.run.faults and self.run.failed:
            self.run.fail(f"calls failed with no fault in the schedule: {self.run.failed}")

    async def main(self) -> Run:
        for i in range(self.rng.randint(3, 5)):
            await self.start_node(f"n{i}")
        await self.converge(10)
        self.log("formed")
        end = self.loop.time() + 10.0
        watcher = asyncio.ensure_future(self.watch(end + 8.0))
        load = asyncio.ensure_future(self.load(end))
        await self.schedule(end)
        await load
        self.net.heal()
        self.log("load done, healed")
        await self.converge(15)
        await self.final_check()
        watcher.cancel()
        for address in list(self.live):
            await self.nodes[address].stop()
        for address, node in self.nodes.items():
            if address in self.run.killed and node._cluster is not None:
                await node._cluster.close()  # its loop tasks: it is gone as far as anyone knows
        return self.run


class _VirtualTime(logging.Filter):
    """Stamps log records with the running loop's virtual time (``%(vt)s``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.vt = f"{asyncio.get_running_loop().time():8.3f}"
        except RuntimeError:
            record.vt = "       -"
        return True


def run_seed(seed: int, verbose: bool = False) -> Run:
    loop = VirtualTimeLoop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(Sim(seed, loop, verbose).main())
    finally:
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        asyncio.set_event_loop(None)
        loop.close()


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0-99", help="e.g. 0-199 or 5,17")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the schedule")
    parser.add_argument(
        "--trace", action="store_true", help="print every run's schedule and outcome"
    )
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_VirtualTime())
    handler.setFormatter(logging.Formatter("%(vt)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.CRITICAL, handlers=[handler]
    )
    bad = 0
    started = time.perf_counter()
    acked = failed = 0
    for seed in _seeds(args.seeds):
        run = run_seed(seed, args.verbose)
        acked += len(run.acked)
        failed += sum(run.failed.values())
        if args.trace:
            report(f"seed {seed}: {len(run.acked)} acknowledged, failed {run.failed}")
            for line in run.events:
                report(f"  {line}")
        if run.violations:
            bad += 1
            report(
                f"seed {seed} FAILED: replay with "
                f"PYTHONHASHSEED=0 python -m tests.sim_directory --seeds {seed} -v"
            )
            for line in run.events:
                report(f"  {line}")
            for v in run.violations:
                report(f"  violation: {v}")
    n = len(_seeds(args.seeds))
    report(
        f"{n} schedules, {acked} acknowledged calls, {failed} failed calls, "
        f"{bad} with violations, {time.perf_counter() - started:.1f} s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
