"""SWIM failure detection and gossip (router/swim.py), checked in a deterministic simulator.

The simulator holds N :class:`Swim` instances on a virtual clock, ticks each of them every
``period / 4`` (at its own phase), and delivers every message through a msgpack round trip
with configurable latency, loss, partitions, killed nodes and paused (SIGSTOPped) nodes.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.swim import MAX_AHEAD, Event, Outgoing, Status, Swim, SwimConfig

CFG = SwimConfig()
STEP = CFG.period / 4

DropRule = Callable[[str, str, list[Any]], bool]
DelayRule = Callable[[str, str, list[Any]], float]


class Sim:
    """N Swim nodes, a virtual clock, and a lossy, partitionable network."""

    def __init__(
        self,
        seed: int,
        *,
        loss: float = 0.0,
        latency: tuple[float, float] = (0.001, 0.01),
        config: SwimConfig = CFG,
    ) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.latency = latency
        self.config = config
        self.now = 0.0
        self.nodes: dict[str, Swim] = {}
        self.events: dict[str, list[tuple[float, Event]]] = {}
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.held: dict[str, list[tuple[str, list[Any]]]] = {}
        self.groups: list[set[str]] | None = None
        self.drop_rule: DropRule | None = None
        self.delay_rule: DelayRule | None = None
        self.sent = 0
        self.causes: dict[str, list[tuple[Event, Any]]] = {}
        """Per node: each event with the message whose delivery caused it (None: a tick)."""
        self._input: Any = None
        self._heap: list[tuple[float, int, str, str, Any]] = []
        self._counter = 0

    # -- setup ------------------------------------------------------------

    def add(self, address: str, seeds: Iterable[str] = (), *, incarnation: int = 0) -> Swim:
        node = Swim(
            address,
            {"types": ["Counter"], "addr": address},
            incarnation,
            random.Random(self.rng.getrandbits(64)),
            self.config,
        )
        self.nodes[address] = node
        self.events[address] = []
        self.causes[address] = []
        self._push(self.now + self.rng.uniform(0, STEP), "tick", address, None)
        self.send(address, node.join(list(seeds), self.now))
        return node

    def cluster(self, n: int, *, join_window: float = CFG.period) -> list[str]:
        """``n`` nodes all joining through the first one, spread over ``join_window``."""
        names = [f"n{i:02d}" for i in range(n)]
        self.add(names[0])
        for name in names[1:]:
            self.run_until(self.now + self.rng.uniform(0, join_window / n))
            self.add(name, [names[0]])
        return names

    # -- network ----------------------------------------------------------

    def _push(self, at: float, kind: str, a: str, payload: Any) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, a, payload))

    def _blocked(self, src: str, dst: str) -> bool:
        if self.groups is None:
            return False
        return not any(src in g and dst in g for g in self.groups)

    def send(self, src: str, out: Outgoing) -> None:
        for dst, message in out:
            assert isinstance(dst, str) and isinstance(message, list)
            wire = msgpack.packb(message)  # every message must be msgpack-able
            self.sent += 1
            if dst in self.killed or self._blocked(src, dst):
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            if self.drop_rule is not None and self.drop_rule(src, dst, message):
                continue
            delay = self.rng.uniform(*self.latency)
            if self.delay_rule is not None:
                delay += self.delay_rule(src, dst, message)
            self._push(self.now + delay, "msg", dst, (src, msgpack.unpackb(wire)))

    def _collect(self, address: str) -> None:
        for event in self.nodes[address].drain_events():
            self.events[address].append((self.now, event))
            self.causes[address].append((event, self._input))

    def run_until(self, t: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t:
            at, _, kind, address, payload = heapq.heappop(heap)
            self.now = at
            if address in self.killed:
                continue
            node = self.nodes[address]
            if kind == "tick":
                self._push(at + STEP, "tick", address, None)
                if address in self.paused:
                    continue
                self._input = None
                out = node.tick(at)
            else:
                src, message = payload
                if address in self.paused:
                    self.held[address].append((src, message))
                    continue
                self._input = message
                out = node.receive(src, message, at)
            self._collect(address)
            self.send(address, out)
        self.now = t

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    def run_until_true(self, predicate: Callable[[], bool], limit: float) -> float | None:
        """Run in ticks until ``predicate()``; the virtual time it took, or None."""
        start = self.now
        while self.now - start < limit:
            if predicate():
                return self.now - start
            self.run_for(STEP / 2)
        return self.now - start if predicate() else None

    # -- faults -----------------------------------------------------------

    def kill(self, address: str) -> None:
        self.killed.add(address)

    def pause(self, address: str) -> None:
        self.paused.add(address)
        self.held[address] = []

    def resume(self, address: str) -> None:
        self.paused.discard(address)
        for src, message in self.held.pop(address):
            self._push(self.now, "msg", address, (src, message))

    # -- observations -----------------------------------------------------

    def live(self) -> list[str]:
        return [a for a in self.nodes if a not in self.killed]

    def converged(self, addresses: Iterable[str] | None = None) -> bool:
        """Every given node sees exactly the given nodes, all ALIVE, and has quorum."""
        expected = set(self.live() if addresses is None else addresses)
        for address in expected:
            node = self.nodes[address]
            view = node.members()
            if set(view) != expected or not node.has_quorum():
                return False
            if any(status is not Status.ALIVE for _, status, _ in view.values()):
                return False
        return True

    def kinds(self, address: str, kind: str, about: str | None = None) -> list[float]:
        return [
            t
            for t, (k, a, _) in self.events[address]
            if k == kind and (about is None or a == about)
        ]


# -- convergence -------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "periods"), [(5, 4), (50, 10)])
def test_join_through_one_seed_converges(n: int, periods: int) -> None:
    for seed in range(3):
        sim = Sim(seed)
        names = sim.cluster(n)
        took = sim.run_until_true(sim.converged, limit=periods * CFG.period)
        assert took is not None, f"seed {seed}: no convergence in {periods} periods"
        for name in names:
            assert sim.nodes[name].view_size == n
            assert len(sim.kinds(name, "alive")) == n - 1
            assert not sim.kinds(name, "suspect") and not sim.kinds(name, "dead")


def test_join_retries_until_a_seed_answers() -> None:
    sim = Sim(1)
    sim.add("a")
    sim.drop_rule = lambda src, dst, m: m[0] == "join" and sim.now < 1.2
    sim.add("b", ["a"])
    sim.run_for(1.0)
    assert set(sim.nodes["b"].members()) == {"b"}
    sim.run_for(2.0)
    assert sim.converged()


def test_a_single_node_is_alone_with_quorum() -> None:
    sim = Sim(2)
    sim.add("solo")
    sim.run_for(5.0)
    node = sim.nodes["solo"]
    assert set(node.members()) == {"solo"} and node.has_quorum() and node.view_size == 1
    assert sim.events["solo"] == []


# -- failure detection ---------------------------------------------------------------------


def test_killed_node_is_declared_dead_by_all_within_5s() -> None:
    detection: list[float] = []
    for seed in range(20):
        sim = Sim(100 + seed)
        names = sim.cluster(5)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None
        sim.run_for(sim.rng.uniform(1.0, 1.0 + CFG.period))
        victim = sim.rng.choice(names)
        killed_at = sim.now
        sim.kill(victim)
        survivors = [a for a in names if a != victim]

        def all_saw_it(
            sim: Sim = sim, victim: str = victim, survivors: list[str] = survivors
        ) -> bool:
            return all(sim.kinds(a, "dead", victim) for a in survivors)

        assert sim.run_until_true(all_saw_it, limit=10.0) is not None, f"seed {seed}"
        worst = max(sim.kinds(a, "dead", victim)[0] for a in survivors) - killed_at
        detection.append(worst)
        assert worst < 5.0, f"seed {seed}: agreement on the death took {worst:.2f}s"
        sim.run_for(2.0)
        assert sim.converged(survivors)
        for a in survivors:
            assert sim.nodes[a].view_size == 4
            assert not [e for _, e in sim.events[a] if e[0] == "dead" and e[1] != victim]
    print(
        f"\ndetection+agreement over {len(detection)} kills: "
        f"mean {statistics.mean(detection):.2f}s, max {max(detection):.2f}s, "
        f"min {min(detection):.2f}s"
    )


def test_no_false_positives_with_5_percent_loss() -> None:
    sim = Sim(7, loss=0.05)
    names = sim.cluster(10)
    assert sim.run_until_true(sim.converged, limit=5.0) is not None
    start = sim.now
    sim.run_for(60.0)
    for a in names:
        bad = [(t, e) for t, e in sim.events[a] if t >= start and e[0] != "alive"]
        bad = [(t, e) for t, e in bad if e[0] != "suspect"]
        assert bad == [], f"{a}: {bad}"
    sim.run_for(3.0)  # let any pending refutation settle
    assert sim.converged(names)


def test_a_suspected_live_member_refutes_and_survives() -> None:
    sim = Sim(11)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    slow = names[3]
    window = (sim.now, sim.now + 4.0)

    def late_acks(src: str, dst: str, message: list[Any]) -> float:
        in_window = window[0] <= sim.now < window[1]
        return CFG.period + 0.1 if src == slow and message[0] == "ack" and in_window else 0.0

    sim.delay_rule = late_acks
    sim.run_for(8.0)
    suspicions = sum(len(sim.kinds(a, "suspect", slow)) for a in names)
    assert suspicions >= 1, "the slow member was never suspected"
    assert not any(sim.kinds(a, "dead", slow) for a in names)
    assert not sim.kinds(slow, "self_dead")
    assert sim.nodes[slow].incarnation >= 1
    assert sim.converged(names)
    for a in names:
        assert sim.nodes[a].members()[slow][0] == sim.nodes[slow].incarnation


def test_graceful_leave_removes_at_once() -> None:
    sim = Sim(12)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    leaver = names[2]
    left_at = sim.now
    sim.send(leaver, sim.nodes[leaver].leave(sim.now))
    sim.run_for(sim.latency[1])
    others = [a for a in names if a != leaver]
    for a in others:
        assert sim.kinds(a, "left", leaver), a
        assert sim.kinds(a, "left", leaver)[0] - left_at <= sim.latency[1]
        assert leaver not in sim.nodes[a].members()
    assert sim.nodes[leaver].left and sim.nodes[leaver].tick(sim.now) == []
    sim.kill(leaver)
    sim.run_for(5.0)
    assert sim.converged(others)
    assert all(not sim.kinds(a, "dead") for a in others)


def test_paused_node_learns_it_was_dead_and_comes_back() -> None:
    sim = Sim(13)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    frozen = names[1]
    before = sim.nodes[frozen].incarnation
    sim.pause(frozen)
    paused_at = sim.now
    sim.run_for(10.0)
    others = [a for a in names if a != frozen]
    for a in others:
        assert sim.kinds(a, "dead", frozen), a
        assert sim.kinds(a, "dead", frozen)[0] - paused_at < 5.0
    sim.resume(frozen)
    took = sim.run_until_true(sim.converged, limit=5.0)
    assert took is not None
    assert len(sim.kinds(frozen, "self_dead")) == 1
    assert not sim.kinds(frozen, "dead")  # its own stall made it declare no one dead
    inc = sim.nodes[frozen].incarnation
    assert inc > before
    for a in others:
        assert sim.nodes[a].members()[frozen][:2] == (inc, Status.ALIVE)
        assert sim.kinds(a, "alive", frozen)[-1] > paused_at + 10.0
        assert sim.nodes[a].view_size == 5


def test_partition_3_2_majority_serves_minority_rejoins_after_heal() -> None:
    sim = Sim(14)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    major, minor = names[:3], names[3:]
    split_at = sim.now
    sim.groups = [set(major), set(minor)]
    sim.run_for(10.0)
    for a in major:
        node = sim.nodes[a]
        assert set(node.members()) == set(major) and node.has_quorum() and node.view_size == 3
        for b in minor:
            assert sim.kinds(a, "dead", b) and sim.kinds(a, "dead", b)[0] - split_at < 5.0
    for b in minor:
        node = sim.nodes[b]
        assert not node.has_quorum()
        assert node.view_size == 5 and len(node.members()) == 5
        assert not sim.kinds(b, "dead") and not sim.kinds(b, "self_dead")
        assert all(node.members()[a][1] is Status.SUSPECT for a in major)
    sim.groups = None
    took = sim.run_until_true(sim.converged, limit=10.0)
    assert took is not None
    for b in minor:
        assert len(sim.kinds(b, "self_dead")) == 1
        # It may hear of its minority peer's death before that peer rejoins; of no other.
        assert {e[1] for _, e in sim.events[b] if e[0] == "dead"} <= set(minor) - {b}
    for a in major:
        assert not sim.kinds(a, "self_dead")
    sim.run_for(5.0)
    assert sim.converged()


def _split_healed_through_buffers(seed: int, heal_after: float) -> tuple[Sim, set[str]]:
    """5 nodes split 3/2 for ``heal_after`` seconds, as over TCP: what crosses the cut is
    not lost but held in the connection and arrives at the heal, while the majority, which
    dropped its links to the members it removed, answers a little later (reconnecting).
    Returns the simulation, run to the heal, and the majority."""
    sim = Sim(seed)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    major = set(names[:3])
    heal_at = sim.now + heal_after

    def delay(src: str, dst: str, message: list[Any]) -> float:
        if (src in major) == (dst in major):
            return 0.0
        if sim.now < heal_at:
            return heal_at - sim.now
        return 0.3 if src in major and sim.now < heal_at + 1.0 else 0.0

    sim.delay_rule = delay
    sim.run_until(heal_at)
    return sim, major


def test_a_healed_minority_does_not_decide_its_stale_suspicions() -> None:
    # The minority's suspicions of the far side ran out long ago; the buffered messages are
    # evidence of a majority again before any tombstone has come. The suspicions must get a
    # full timeout again (the suspects refute), not be decided at once: that removed a live
    # majority member, which heard its tombstone and dropped its activations
    # (tests/test_partition.py, between network namespaces).
    removed = 0
    for heal_after in (4.0, 4.5):
        for seed in range(3000, 3040):
            sim, major = _split_healed_through_buffers(seed, heal_after)
            minor = set(sim.nodes) - major
            if not all(sim.kinds(a, "dead", b) for a in major for b in minor):
                continue  # not removed yet: nothing to learn after the heal
            removed += 1
            assert sim.run_until_true(sim.converged, limit=8.0) is not None, (heal_after, seed)
            for a in major:
                assert not sim.kinds(a, "self_dead"), (heal_after, seed, a)
            for b in minor:
                verdicts = [e[1] for _, e in sim.events[b] if e[0] == "dead" and e[1] in major]
                assert not verdicts, (heal_after, seed, b, verdicts)
                assert len(sim.kinds(b, "self_dead")) == 1, (heal_after, seed, b)
    assert removed >= 70


@pytest.mark.parametrize("n", [5, 7])
def test_a_minority_never_removes_anyone_whichever_the_split(n: int) -> None:
    # Partitions are noticed member by member: the minority must not count the far members
    # it has not suspected yet as reachable (it would "have quorum" and remove the others).
    for seed in range(12):
        sim = Sim(1000 * n + seed)
        names = sim.cluster(n)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None
        sim.run_for(sim.rng.uniform(0.5, 2.0))
        shuffled = sim.rng.sample(names, n)
        cut = sim.rng.randint(n // 2 + 1, n - 1)
        major, minor = set(shuffled[:cut]), set(shuffled[cut:])
        split_at = sim.now
        sim.groups = [major, minor]
        sim.run_for(8.0)
        for b in minor:
            assert not sim.nodes[b].has_quorum(), (seed, b)
            assert not [e for t, e in sim.events[b] if t >= split_at and e[0] == "dead"]
        assert all(set(sim.nodes[a].members()) == major for a in major), seed
        sim.groups = None
        assert sim.run_until_true(sim.converged, limit=8.0) is not None, seed


def test_whoever_is_declared_dead_during_a_pause_learns_it() -> None:
    for seed in range(30):
        sim = Sim(2000 + seed)
        names = sim.cluster(5)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None
        frozen = sim.rng.choice(names)
        sim.pause(frozen)
        sim.run_for(sim.rng.uniform(0.3, 5.0))
        sim.resume(frozen)
        assert sim.run_until_true(sim.converged, limit=6.0) is not None, seed
        declared = any(sim.kinds(a, "dead", frozen) for a in names if a != frozen)
        assert not declared or sim.kinds(frozen, "self_dead"), seed
        assert all(e[1] == frozen for a in names for _, e in sim.events[a] if e[0] == "dead")


def _doubt_events(sim: Sim, address: str) -> list[tuple[float, str]]:
    return [(t, e[0]) for t, e in sim.events[address] if e[0] in ("doubt", "trusted", "self_dead")]


def test_a_stalled_node_in_a_pair_doubts_then_is_trusted_and_keeps_its_life() -> None:
    # 2 nodes: nobody can be removed (no quorum without both), so a 15 s stall must not
    # make the stalled node throw its activations away -- it doubts, asks, is trusted.
    for seed in range(5):
        sim = Sim(3000 + seed)
        names = sim.cluster(2)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None, seed
        frozen, peer = names[seed % 2], names[1 - seed % 2]
        before = sim.nodes[frozen].incarnation
        sim.pause(frozen)  # no tick, nothing delivered (held, as a kernel would)
        sim.run_for(15.0)
        assert sim.kinds(peer, "suspect", frozen) and not sim.kinds(peer, "dead"), seed
        resumed_at = sim.now
        sim.resume(frozen)
        sim.run_for(0.001)  # the held messages: the stall is noticed
        node = sim.nodes[frozen]
        assert node.doubting and not node.has_quorum(), seed
        while node.doubting:
            assert not node.has_quorum(), seed
            sim.run_for(STEP / 4)
            assert sim.now - resumed_at < 3.0, f"seed {seed}: still in doubt"
        assert [k for _, k in _doubt_events(sim, frozen)] == ["doubt", "trusted"], seed
        assert node.has_quorum() and node.incarnation > before  # it refuted its suspicion
        assert sim.run_until_true(sim.converged, limit=3.0) is not None, seed
        assert not any(sim.kinds(a, "self_dead") or sim.kinds(a, "dead") for a in names)
        trusted_at = sim.kinds(frozen, "trusted")[0]
        print(f"seed {3000 + seed}: in doubt for {trusted_at - resumed_at:.3f}s after resume")


def test_a_node_stalled_until_declared_dead_doubts_until_it_hears_its_tombstone() -> None:
    for seed in range(5):
        sim = Sim(3100 + seed)
        names = sim.cluster(5)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None, seed
        frozen = names[1 + seed % 4]
        paused_at = sim.now
        sim.pause(frozen)
        sim.run_for(15.0)
        others = [a for a in names if a != frozen]
        assert all(sim.kinds(a, "dead", frozen) for a in others), seed
        assert all(sim.kinds(a, "dead", frozen)[0] - paused_at < 5.0 for a in others), seed
        resumed_at = sim.now
        sim.resume(frozen)
        node = sim.nodes[frozen]
        while not sim.kinds(frozen, "self_dead"):
            sim.run_for(STEP / 4)
            if sim.kinds(frozen, "doubt") and not sim.kinds(frozen, "self_dead"):
                assert node.doubting and not node.has_quorum(), seed
            assert sim.now - resumed_at < 3.0, f"seed {seed}: never told"
        assert [k for _, k in _doubt_events(sim, frozen)] == ["doubt", "self_dead"], seed
        doubt_at, dead_at = sim.kinds(frozen, "doubt")[0], sim.kinds(frozen, "self_dead")[0]
        assert resumed_at <= doubt_at <= dead_at, seed  # (a held message may carry it)
        # The self_dead came with a message carrying our tombstone, not from the stall.
        ((cause,),) = [[c] for e, c in sim.causes[frozen] if e[0] == "self_dead"]
        assert cause is not None, seed
        records = cause[-1] if cause[0] != "sync" else cause[1]
        assert any(r[0] == frozen and r[2] in (D, L) for r in records), (seed, cause)
        assert sim.run_until_true(sim.converged, limit=5.0) is not None, seed
        assert not sim.kinds(frozen, "trusted") and len(sim.kinds(frozen, "self_dead")) == 1
        print(f"seed {3100 + seed}: self_dead {dead_at - resumed_at:.3f}s after resume")


def test_doubt_ends_in_trust_exactly_when_nobody_declared_the_node_dead() -> None:
    # Stalls of 2.5 s in 5 nodes: sometimes the others declare the node dead, sometimes it
    # refutes in time. Either way its doubt must end the right way.
    outcomes: dict[tuple[bool, tuple[str, ...]], int] = {}
    for seed in range(30):
        sim = Sim(5000 + seed)
        names = sim.cluster(5)
        assert sim.run_until_true(sim.converged, limit=3.0) is not None, seed
        sim.run_for(sim.rng.uniform(0.0, 1.0))
        frozen = sim.rng.choice(names)
        sim.pause(frozen)
        sim.run_for(2.5)
        sim.resume(frozen)
        sim.run_for(STEP)  # (converged() may hold before it noticed anything)
        assert sim.run_until_true(sim.converged, limit=6.0) is not None, seed
        declared = any(sim.kinds(a, "dead", frozen) for a in names if a != frozen)
        kinds = tuple(k for _, k in _doubt_events(sim, frozen))
        assert kinds == ("doubt", "self_dead" if declared else "trusted"), (seed, kinds)
        outcomes[(declared, kinds)] = outcomes.get((declared, kinds), 0) + 1
    print(f"\n2.5 s stalls, seeds 5000..5029: {outcomes}")
    assert outcomes.get((False, ("doubt", "trusted")), 0) > 0  # kept its life (it used not to)


LIFEGUARD_OFF = SwimConfig(health_max=0, suspicion_max_mult=1.0)


def _slow_node_run(seed: int, config: SwimConfig, delay: float, seconds: float) -> tuple[int, ...]:
    """5 nodes, one whose every outgoing message takes ``delay`` s more: (false DEADs of the
    slow node, false DEADs of healthy nodes, suspicions), summed over the nodes' events."""
    sim = Sim(seed, config=config)
    names = sim.cluster(5)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None, seed
    slow = names[-1]
    start = sim.now
    sim.delay_rule = lambda src, dst, m: delay if src == slow else 0.0
    sim.run_for(seconds)
    events = [e for a in names for t, e in sim.events[a] if t >= start]
    return (
        sum(1 for e in events if e[0] == "dead" and e[1] == slow),
        sum(1 for e in events if e[0] == "dead" and e[1] != slow),
        sum(1 for e in events if e[0] == "suspect"),
    )


def test_a_slow_node_with_and_without_lifeguard() -> None:
    # Every message the slow node sends arrives `delay` s late, the others' in 1-10 ms.
    # Lifeguard (LHM + dynamic suspicion) makes it stop accusing healthy members; the slow
    # node itself survives as long as its refutation beats the (minimum) suspicion timeout.
    seeds = range(4000, 4006)
    results: dict[tuple[float, str], list[int]] = {}
    for delay in (0.8, 1.6):
        for name, config in (("on", CFG), ("off", LIFEGUARD_OFF)):
            total = [0, 0, 0]
            for seed in seeds:
                for i, count in enumerate(_slow_node_run(seed, config, delay, 20.0)):
                    total[i] += count
            results[(delay, name)] = total
            print(
                f"delay {delay}s, Lifeguard {name}, seeds {seeds.start}..{seeds.stop - 1}: "
                f"slow node declared dead {total[0]}x, healthy nodes {total[1]}x, "
                f"suspicions {total[2]}"
            )
    assert results[(0.8, "on")][:2] == [0, 0] and results[(0.8, "off")][:2] == [0, 0]
    assert results[(0.8, "on")][2] * 2 < results[(0.8, "off")][2]  # far fewer accusations
    assert results[(1.6, "on")][1] == 0 < results[(1.6, "off")][1]  # no healthy node killed


def test_local_health_rises_when_probes_fail_and_heals_on_acks() -> None:
    node = _node()
    for peer in "bcd":
        _gossip(node, [peer, 0, A, None])
    drive = _Driver(node, ())  # nobody answers, not even a nack: we are the slow one
    drive.run(20.0)
    assert node.health == CFG.health_max  # capped
    drive.responsive.update("bcd")  # (b, c, d are SUSPECT now: no quorum checks go out)
    pings: list[float] = []
    healed_at = math.inf
    while drive.now < healed_at + 2.0:
        out = drive.tick(drive.now + STEP)
        if any(m[0] == "ping" for _, m in out):
            pings.append(drive.now)
        if not node.health:
            healed_at = min(healed_at, drive.now)
        assert drive.now < 80.0
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert gaps[0] == pytest.approx(CFG.period * (CFG.health_max + 1))  # 9 periods apart
    assert gaps[-1] == pytest.approx(CFG.period)  # healthy again: one period
    node = _node()
    for peer in "bcd":
        _gossip(node, [peer, 0, A, None])
    _Driver(node, "cd").run(6.0)  # b is dead, but c and d nack: not our fault
    assert node.health == 0 and node.record("b") is not None
    node.receive("x", ["gossip", [["me", 0, S, None, "x"]]], 6.0)
    assert node.health == 1 and node.incarnation == 1  # refuting counts against us


def test_suspicion_timeout_shrinks_with_independent_confirmations() -> None:
    slow = {"period": 10.0, "ping_timeout": 1.0, "quorum_probes": 0}  # no probe of our own
    node = _node(suspicion_timeout=1.0, suspicion_max_mult=4.0, suspicion_confirmations=2, **slow)
    for peer in "bcdef":
        _gossip(node, [peer, 0, A, None])
    node.tick(0.0)
    _gossip(node, ["b", 0, S, None, "c"], now=0.0)  # heard from c (its accusation)
    _gossip(node, ["b", 0, S, None, "c"], sender="y", now=0.5)  # the same one again: no
    for t in (1.0, 2.0, 2.9):
        for peer in "cdef":
            node.receive(peer, ["ack", 0, []], t)  # evidence of a majority
        node.tick(t)
    assert node.record("b") is not None and node.record("b")[1] is Status.SUSPECT  # type: ignore[index]
    _gossip(node, ["b", 0, S, None, "d"], now=2.9)  # 1 of 2: max - 3 * ln 2 / ln 3 = 2.11 s
    node.tick(2.95)
    assert node.record("b")[1] is Status.DEAD  # type: ignore[index]
    node = _node(suspicion_timeout=1.0, suspicion_max_mult=4.0, **slow)
    for peer in "bcdef":
        _gossip(node, [peer, 0, A, None])
    _gossip(node, ["b", 0, S, None, "c"], ["b", 0, S, None, "d"], ["b", 0, S, None, "e"])
    for peer in "cdef":
        node.receive(peer, ["ack", 0, []], 1.0)
    node.tick(1.0)  # 2 confirmations: the minimum, 1 s
    assert node.record("b")[1] is Status.DEAD  # type: ignore[index]


def test_partition_with_no_majority_removes_nobody() -> None:
    sim = Sim(15)
    names = sim.cluster(4)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    sim.groups = [set(names[:2]), set(names[2:])]
    sim.run_for(8.0)
    for a in names:
        assert not sim.nodes[a].has_quorum() and not sim.kinds(a, "dead")
    sim.groups = None
    assert sim.run_until_true(sim.converged, limit=8.0) is not None
    assert all(not sim.kinds(a, "dead") and not sim.kinds(a, "self_dead") for a in names)


def test_restarted_node_with_a_stale_incarnation_is_told_and_moves_past_it() -> None:
    sim = Sim(16)
    names = sim.cluster(4)
    assert sim.run_until_true(sim.converged, limit=3.0) is not None
    sim.kill(names[3])
    sim.run_for(6.0)
    assert all(sim.kinds(a, "dead", names[3]) for a in names[:3])
    sim.killed.discard(names[3])
    sim.add(names[3], [names[0]], incarnation=0)  # same address, same incarnation
    assert sim.run_until_true(sim.converged, limit=4.0) is not None
    assert sim.nodes[names[3]].incarnation > 0


# -- unit-level rules ---------------------------------------------------------------------


def _node(**kw: Any) -> Swim:
    return Swim("me", {"m": 1}, 0, random.Random(0), SwimConfig(**kw))


def _gossip(node: Swim, *records: list[Any], sender: str = "x", now: float = 0.0) -> Outgoing:
    return node.receive(sender, ["gossip", list(records)], now)


A, S, D, L = (int(s) for s in Status)


def test_precedence_rules() -> None:
    node = _node()
    _gossip(node, ["b", 1, A, "m1"])
    assert node.drain_events() == [("alive", "b", "m1")]
    _gossip(node, ["b", 0, S, "m1"], ["b", 1, A, "m1"])  # stale suspect, same alive
    assert node.drain_events() == [] and node.record("b") == (1, Status.ALIVE, "m1")
    _gossip(node, ["b", 1, S, "m1"])  # suspect overrides alive of equal incarnation
    assert node.drain_events() == [("suspect", "b", None)]
    _gossip(node, ["b", 1, A, "m1"])  # alive of equal incarnation does not clear it
    assert node.record("b") == (1, Status.SUSPECT, "m1")
    _gossip(node, ["b", 2, A, "m2"])  # refutation
    assert node.drain_events() == [("alive", "b", "m2")]
    _gossip(node, ["b", 1, D, None])  # stale death
    assert node.record("b") == (2, Status.ALIVE, "m2")
    _gossip(node, ["b", 2, D, None])
    assert node.drain_events() == [("dead", "b", None)] and "b" not in node.members()
    _gossip(node, ["b", 2, A, "m2"], ["b", 2, S, "m2"], ["b", 2, L, None])  # all final
    assert node.drain_events() == [] and node.record("b") == (2, Status.DEAD, None)
    _gossip(node, ["b", 3, A, "m3"])  # back as a new member
    assert node.drain_events() == [("alive", "b", "m3")] and "b" in node.members()
    _gossip(node, ["b", 3, L, None])
    assert node.drain_events() == [("left", "b", None)]
    _gossip(node, ["c", 5, S, "mc"])  # first heard of as suspect
    assert node.drain_events() == [("alive", "c", "mc"), ("suspect", "c", None)]
    _gossip(node, ["d", 1, D, None], ["d", 1, A, "md"])  # tombstone first: stale alive
    assert node.drain_events() == [] and "d" not in node.members()


def test_refutation_and_self_dead() -> None:
    node = _node()
    _gossip(node, ["me", 0, S, None])
    assert node.incarnation == 1 and node.drain_events() == []
    out = _gossip(node, ["me", 0, S, None])  # stale: set the sender straight
    assert out == [("x", ["gossip", [["me", 1, A, {"m": 1}]]])]
    out = _gossip(node, ["me", 0, D, None], sender="y")  # dead at our (re)join incarnation
    assert node.drain_events() == [("self_dead", "me", None)]
    assert node.incarnation == 2
    assert ("y", ["join", ["me", 2, A, {"m": 1}]]) in out
    _gossip(node, ["me", 1, D, None])  # about our previous life: no new self_dead
    assert node.drain_events() == [] and node.incarnation == 2
    _gossip(node, ["me", 7, A, None])  # a former life got further
    assert node.incarnation == 8


def test_seed_answers_join_with_full_state_and_gossips_the_newcomer() -> None:
    seed = _node()
    _gossip(seed, ["b", 0, A, "mb"], ["c", 4, D, None])
    seed.drain_events()
    ((dst, challenge),) = seed.receive("n", ["join", ["n", 3, A, "mn"]], 0.0)
    assert dst == "n" and challenge[0] == "ping"  # admitted once it answers there
    assert seed.drain_events() == [] and "n" not in seed.members()
    out = seed.receive("n", ["ack", challenge[1], []], 0.001)
    assert seed.drain_events() == [("alive", "n", "mn")]
    ((dst, message),) = out
    assert dst == "n" and message[0] == "sync" and message[2] is False
    assert sorted(map(tuple, message[1])) == sorted(
        [("me", 0, A, {"m": 1}), ("b", 0, A, "mb"), ("c", 4, D, None), ("n", 3, A, "mn")]
    )
    newcomer = Swim("n", "mn", 3, random.Random(1))
    assert newcomer.join(["me", "n", "me"], 0.0) == [("me", ["join", ["n", 3, A, "mn"]])]
    newcomer.receive("me", message, 0.01)
    assert set(newcomer.members()) == {"me", "b", "n"}
    assert newcomer.record("c") == (4, Status.DEAD, None)
    assert newcomer.view_size == 3


def test_dead_sender_is_told_first() -> None:
    node = _node()
    _gossip(node, ["b", 2, D, None])
    out = node.receive("b", ["ping", 9, []], 0.0)
    assert out == [("b", ["ack", 9, [["b", 2, D, None]]])]  # the tombstone rides first
    out = node.receive("b", ["gossip", []], 0.0)
    assert out == [("b", ["gossip", [["b", 2, D, None]]])]  # no answer: told anyway


def test_ping_req_relays_the_ack() -> None:
    node = _node()
    _gossip(node, ["a", 0, A, None], ["t", 0, A, None])
    out = node.receive("a", ["ping-req", 42, "t", []], 0.0)
    ((dst, ping),) = out
    assert dst == "t" and ping[0] == "ping"
    out = node.receive("t", ["ack", ping[1], []], 0.01)
    ((dst, ack),) = out
    assert dst == "a" and ack[:2] == ["ack", 42]
    assert node.receive("t", ["ack", ping[1], []], 0.02) == []  # relayed once


class _Driver:
    """Ticks one node and answers its pings (and ping-reqs, with a nack) on behalf of the
    responsive peers."""

    def __init__(self, node: Swim, responsive: Iterable[str]) -> None:
        self.node = node
        self.responsive = set(responsive)
        self.unanswered: list[tuple[str, int]] = []
        self.now = 0.0

    def tick(self, now: float) -> Outgoing:
        self.now = now
        out = self.node.tick(now)
        for dst, message in out:
            if message[0] == "ping":
                if dst in self.responsive:
                    self.node.receive(dst, ["ack", message[1], []], now)
                else:
                    self.unanswered.append((dst, message[1]))
            elif message[0] == "ping-req" and dst in self.responsive:
                self.node.receive(dst, ["nack", message[1], []], now)  # it tried, in vain
        return out

    def run(self, until: float, step: float = STEP) -> None:
        while self.now + step <= until + 1e-9:
            self.tick(self.now + step)

    def wake(self, peer: str) -> None:
        """``peer`` answers from now on, including the pings it left unanswered."""
        self.responsive.add(peer)
        for dst, seq in self.unanswered:
            if dst == peer:
                self.node.receive(peer, ["ack", seq, []], self.now)


def test_quorum_rule_and_view_size() -> None:
    node = _node(suspicion_timeout=1.0, suspicion_max_mult=1.0)  # a fixed timeout
    for peer in "bcde":
        _gossip(node, [peer, 0, A, None])
    assert node.view_size == 5 and node.has_quorum()
    _gossip(node, ["b", 0, S, None], ["c", 0, S, None], ["d", 0, S, None])
    assert node.alive_count == 2 and not node.has_quorum()
    drive = _Driver(node, {"e"})
    drive.run(9.0)
    assert node.view_size == 5 and len(node.members()) == 5 and not node.has_quorum()
    assert not [e for e in node.drain_events() if e[0] == "dead"]
    _gossip(node, ["b", 1, A, None], now=9.0)  # b refutes: 3 of 5 reachable
    drive.wake("b")
    drive.run(9.0 + 2 * STEP)  # re-armed suspicions: a majority is checked and confirmed
    assert node.has_quorum()
    drive.run(9.875)
    assert len(node.members()) == 5, "suspicions re-armed when quorum came back"
    drive.run(10.5)
    assert set(node.members()) == {"me", "b", "e"} and node.view_size == 3
    assert node.has_quorum()


def test_removal_needs_a_confirmed_majority_not_just_unsuspected_members() -> None:
    # 5 members; b and c are suspected, d and e not (yet), but nothing confirms we still
    # reach them (no checks here, a long period): the naive count (3 of 5) says quorum, yet
    # b and c must not be removed.
    node = _node(
        period=5.0,
        ping_timeout=1.0,
        suspicion_timeout=1.0,
        quorum_probes=0,
        suspicion_max_mult=1,
        indirect_probes=0,  # no ping-req either: their nacks would be evidence
    )
    for peer in "bcde":
        _gossip(node, [peer, 0, A, None])
    _gossip(node, ["b", 0, S, None], ["c", 0, S, None])
    drive = _Driver(node, "de")
    drive.run(0.9)
    assert node.has_quorum() and len(node.members()) == 5
    drive.run(1.9)  # unconfirmed for a whole suspicion timeout: doubt, and still no removal
    assert not node.has_quorum() and len(node.members()) == 5
    assert not [e for e in node.drain_events() if e[0] == "dead"]
    _gossip(node, sender="d", now=1.95)  # direct evidence of d and e: a confirmed majority
    _gossip(node, sender="e", now=1.95)
    drive.run(2.0)
    # Quorum is back, and the suspicions that ran out while it was lost are re-armed: b and
    # c get a full timeout to refute, as members that were only cut off from us would.
    assert node.has_quorum() and len(node.members()) == 5
    assert not [e for e in node.drain_events() if e[0] == "dead"]
    _gossip(node, sender="d", now=2.9)
    _gossip(node, sender="e", now=2.9)
    drive.run(3.0)
    assert set(node.members()) == {"me", "d", "e"} and node.view_size == 3
    assert node.has_quorum()


def test_own_suspicion_checks_the_others_at_once() -> None:
    node = _node()
    for peer in "bcde":
        _gossip(node, [peer, 0, A, None])
    node.drain_events()
    drive = _Driver(node, ())  # nobody answers (we are the cut-off one)
    out: Outgoing = []
    while not node.drain_events():
        out = drive.tick(drive.now + STEP)  # until our own probe finds a suspect
    found = drive.now
    suspect = next(a for a, (_, status, _) in node.members().items() if status is Status.SUSPECT)
    pinged = {dst for dst, message in out if message[0] == "ping"}
    assert pinged >= set("bcde") - {suspect}  # in the same tick: a check to every other
    drive.run(found + CFG.period + 2 * STEP)
    assert len(node.drain_events()) <= 1, "a failed check suspects no one"
    drive.run(found + CFG.suspicion_timeout + STEP)
    assert not node.has_quorum(), "no majority confirmed for a whole timeout"
    drive.run(found + 5.0)
    assert not node.has_quorum() and len(node.members()) == 5
    assert not [e for e in node.drain_events() if e[0] == "dead"]
    node = _node(suspicion_max_mult=1.0)  # now d and e answer, b and c do not
    for peer in "bcde":
        _gossip(node, [peer, 0, A, None])
    _Driver(node, "de").run(5.0)
    assert set(node.members()) == {"me", "d", "e"} and node.has_quorum()


def test_own_stall_defers_suspicions_and_a_long_one_means_doubt() -> None:
    # (Before doubt existed, a stall of timeout + period made the node emit self_dead at
    # once, without asking: now it doubts, and asks.)
    node = _node(suspicion_timeout=2.0, suspicion_max_mult=1.0)
    for peer in "bcde":
        _gossip(node, [peer, 0, A, None])
    drive = _Driver(node, "cde")
    while node.record("b") != (0, Status.SUSPECT, None):
        drive.tick(drive.now + STEP)
    suspected_at = drive.now
    node.drain_events()
    drive.tick(suspected_at + 1.5)  # stalled 1.5 s: b's suspicion is pushed back by as much
    drive.run(suspected_at + 3.25)
    assert node.record("b") == (0, Status.SUSPECT, None)
    drive.run(suspected_at + 3.75)  # 2.0 s after the suspicion, once the stall is discounted
    assert node.drain_events() == [("dead", "b", None)]
    assert node.has_quorum() and not node.doubting

    drive.responsive.clear()
    out = drive.tick(drive.now + 2.6)  # stalled >= timeout + period: were we declared dead?
    assert node.drain_events() == [("doubt", "me", None)]
    assert node.doubting and not node.has_quorum() and node.incarnation == 0
    assert {dst for dst, m in out if m[0] == "ping"} == {"c", "d", "e"}  # asks everyone
    assert not [m for _, m in out if m[0] == "join"]
    node.receive("c", ["ping", 77, []], drive.now)  # a message may be stale: no evidence
    drive.wake("c")  # c acks our check: 2 of 4 is no majority yet
    assert node.doubting and node.drain_events() == []
    drive.wake("d")
    assert node.drain_events() == [("trusted", "me", None)]
    assert not node.doubting and node.has_quorum() and node.incarnation == 0

    drive.responsive.clear()
    drive.unanswered.clear()
    out = drive.tick(drive.now + 2.6)
    assert node.drain_events() == [("doubt", "me", None)]
    seqs = {dst: m[1] for dst, m in out if m[0] == "ping"}
    now = drive.now
    node.receive("c", ["ack", seqs["c"], [["me", 0, S, None, "c"]]], now)  # suspects us
    assert node.incarnation == 1 and node.doubting  # refuted; that ack is no evidence
    node.receive("d", ["ack", seqs["d"], []], now)  # for pings at incarnation 0: too old
    node.receive("e", ["ack", seqs["e"], []], now)
    assert node.doubting and node.drain_events() == []
    drive.responsive.update("cde")
    drive.run(now + 4.0)  # checked again at incarnation 1
    assert node.drain_events() == [("trusted", "me", None)] and node.has_quorum()

    drive.responsive.clear()
    drive.tick(drive.now + 2.6)
    assert node.drain_events() == [("doubt", "me", None)]
    out = _gossip(node, ["me", 1, D, None], sender="c", now=drive.now)  # our tombstone
    assert node.drain_events() == [("self_dead", "me", None)]
    assert not node.doubting and node.incarnation == 2
    joins = [dst for dst, message in out if message[0] == "join"]
    assert len(joins) == 3 and set(joins) == {"c", "d", "e"}

    node = _node()
    node.tick(0.0)
    node.receive("x", ["gossip", []], 9.0)  # alone in our view: nobody to doubt
    assert node.drain_events() == [] and not node.doubting and node.has_quorum()
    _gossip(node, ["b", 0, A, None], now=9.0)
    node.drain_events()
    node.receive("b", ["gossip", []], 18.0)  # noticed on receive too
    assert node.drain_events() == [("doubt", "me", None)] and not node.has_quorum()


def test_a_member_revived_by_refutation_is_told_it_was_dead() -> None:
    node = _node()
    _gossip(node, ["b", 0, A, None], ["b", 0, D, None])
    node.drain_events()
    out = _gossip(node, ["b", 1, A, None])  # refuted a suspicion, never heard of its death
    assert node.drain_events() == [("alive", "b", None)]
    assert out == [("b", ["gossip", [["b", 0, D, None]]])]
    _gossip(node, ["c", 0, A, None], ["c", 0, D, None])
    ((_, challenge),) = node.receive("c", ["join", ["c", 1, A, None]], 0.0)  # a real rejoin
    out = node.receive("c", ["ack", challenge[1], []], 0.0)
    assert [m[0] for _, m in out] == ["sync"]


def test_leave_messages_everyone_and_goes_inert() -> None:
    node = _node()
    _gossip(node, ["b", 0, A, None], ["c", 0, A, None])
    out = node.leave(0.0)
    assert sorted(out) == [("b", ["leave", "me", 0]), ("c", ["leave", "me", 0])]
    assert node.leave(0.1) == [] and node.tick(0.2) == [] and not node.has_quorum()
    assert node.receive("b", ["ping", 1, []], 0.3) == []
    assert node.record("me") == (0, Status.LEFT, {"m": 1})


def test_update_meta_bumps_and_gossips() -> None:
    node = _node()
    _gossip(node, ["b", 0, A, None])
    node.update_meta({"m": 2})
    assert node.incarnation == 1
    out = node.tick(0.0)
    sent = [m for _, m in out if m[0] in ("ping", "gossip")]
    assert any(["me", 1, A, {"m": 2}] in m[-1] for m in sent)


def test_tombstones_are_reaped_after_retention() -> None:
    node = _node(dead_retention=10.0)
    _gossip(node, ["b", 0, A, None])
    _gossip(node, ["b", 0, D, None], now=1.0)
    node.tick(5.0)
    assert node.record("b") is not None
    node.tick(11.5)
    assert node.record("b") is None


def test_config_validation() -> None:
    for bad in (
        {"period": 0},
        {"ping_timeout": 0.6},
        {"indirect_probes": -1},
        {"max_piggyback": 0},
        {"sync_interval": -1.0},
        {"suspicion_timeout": float("nan")},
        {"gossip_fanout": True},
        {"health_max": -1},
        {"health_max": 1.5},
        {"suspicion_max_mult": 0.5},
        {"suspicion_max_mult": float("inf")},
        {"suspicion_max_mult": True},
        {"suspicion_confirmations": -1},
    ):
        with pytest.raises(ValueError):
            SwimConfig(**bad)
    for args in (("", None, 0), ("a", None, -1), ("a", None, True)):
        with pytest.raises(ValueError):
            Swim(args[0], args[1], args[2], random.Random(0))


def test_a_thousand_members_tick_cheaply() -> None:
    node = _node()
    records = [[f"tcp://10.0.{i // 250}.{i % 250}:5700", 0, A, {"t": ["X"]}] for i in range(999)]
    node.receive("tcp://10.0.0.0:5700", ["sync", records, False], 0.0)
    assert node.view_size == 1000
    for i in range(0, 999, 3):  # a burst of gossip to disseminate
        _gossip(node, [records[i][0], 1, A, {"t": ["Y"]}])
    started = time.perf_counter()
    t = 0.0
    for _ in range(400):  # 50 s of protocol time
        t += STEP
        out = node.tick(t)
        for dst, message in out:
            if message[0] == "ping":
                node.receive(dst, ["ack", message[1], []], t)
    assert time.perf_counter() - started < 1.5


# -- malformed input ---------------------------------------------------------------------

BAD_MESSAGES: list[Any] = [
    None,
    0,
    "ping",
    b"ping",
    {},
    [],
    (),
    ["nope"],
    [1, 2, 3],
    ["ping"],
    ["ping", 1],
    ["ping", -1, []],
    ["ping", 2**63, []],
    ["ping", True, []],
    ["ping", 1.0, []],
    ["ping", "1", []],
    ["ping", 1, None],
    ["ping", 1, {}],
    ["ping", 1, [None]],
    ["ping", 1, [["a", 0, 0]]],
    ["ping", 1, [["a", 0, 0, None, 1]]],
    ["ping", 1, [["", 0, 0, None]]],
    ["ping", 1, [["a" * 2000, 0, 0, None]]],
    ["ping", 1, [[5, 0, 0, None]]],
    ["ping", 1, [["a", -1, 0, None]]],
    ["ping", 1, [["a", 2**62, 0, None]]],
    ["ping", 1, [["a", 0, 4, None]]],
    ["ping", 1, [["a", 0, False, None]]],
    ["ping", 1, [["a", 0, "alive", None]]],
    ["ping", 1, [["a", 0, 0, None], "junk"]],
    ["ping", 1, [["a", 0, 2, None, "b"]]],
    ["ping", 1, [["a", 0, 1, None, ""]]],
    ["ping", 1, [["a", 0, 1, None, 7]]],
    ["ping", 1, [["a", 0, 1, None, "b", "c"]]],
    ["nack"],
    ["nack", 1],
    ["nack", -1, []],
    ["nack", 1, [None]],
    ["ping", 1, [], "extra"],
    ["ack", None, []],
    ["ack", 1],
    ["ping-req", 1, "", []],
    ["ping-req", 1, None, []],
    ["ping-req", 1, "t"],
    ["gossip"],
    ["gossip", "x"],
    ["gossip", [[]]],
    ["join"],
    ["join", None],
    ["join", ["a", 0, 1, None]],
    ["join", ["a", 0, 2, None]],
    ["join", ["a", 0, 0]],
    ["sync", [], 1],
    ["sync", [], None],
    ["sync", None, False],
    ["sync", [["a", 0, 0, None], ["b"]], False],
    ["leave"],
    ["leave", "a"],
    ["leave", "a", -5],
    ["leave", 3, 0],
    [["ping"], 1, []],
    [None],
]


@pytest.mark.parametrize("message", BAD_MESSAGES, ids=repr)
def test_malformed_messages_raise_value_error_and_change_nothing(message: Any) -> None:
    node = _node()
    _gossip(node, ["b", 0, A, None], ["c", 0, S, None])
    node.drain_events()
    before = (node.members(), node.incarnation, node.view_size)
    with pytest.raises(ValueError):
        node.receive("b", message, 1.0)
    assert (node.members(), node.incarnation, node.view_size) == before
    assert node.drain_events() == []


def test_a_join_must_be_the_senders_own() -> None:
    """A member cannot join a third party (a fake member that never answers would hold a
    small cluster's quorum hostage)."""
    node = _node()
    with pytest.raises(ValueError, match="sender's own"):
        node.receive("b", ["join", ["fake", 0, A, None]], 0.0)
    assert "fake" not in node.members()
    ((_, challenge),) = node.receive("b", ["join", ["b", 0, A, None]], 0.0)
    node.receive("b", ["ack", challenge[1], []], 0.0)
    assert "b" in node.members()


def test_a_joiner_is_admitted_only_once_it_answers_at_its_address() -> None:
    """A join in the name of a node that never answers (forged, or dead at once) leaves
    the view as it was: a one-node cluster keeps its quorum. Acks from anyone else, or to
    another seq, do not admit it; the joiner's own ack does."""
    node = _node()
    ((dst, challenge),) = node.receive("ghost", ["join", ["ghost", 0, A, None]], 0.0)
    assert dst == "ghost" and challenge[0] == "ping"
    assert "ghost" not in node.members() and node.view_size == 1 and node.has_quorum()
    node.receive("other", ["ack", challenge[1], []], 0.01)  # someone else's answer
    node.receive("ghost", ["ack", challenge[1] + 1, []], 0.01)  # a guessed seq
    assert "ghost" not in node.members()
    for t in (0.5, 1.0, 2.0, 5.0):
        node.tick(t)
    assert "ghost" not in node.members() and node.view_size == 1 and node.has_quorum()
    late = node.receive("ghost", ["ack", challenge[1], []], 5.0)  # too late: expired
    assert "ghost" not in node.members() and late == []
    ((_, again),) = node.receive("ghost", ["join", ["ghost", 0, A, None]], 5.0)
    node.receive("ghost", ["ack", again[1], []], 5.01)
    assert "ghost" in node.members()


@pytest.mark.parametrize("about", ["me", "b"])
@pytest.mark.parametrize("status", [A, S, D, L])
def test_an_incarnation_from_the_far_future_is_refused(about: str, status: int) -> None:
    """Incarnations start at the wall clock in microseconds: one more than MAX_AHEAD seconds
    ahead (the attack: DEAD at 2**62 - 1, after which no refutation is in range) is refused,
    and nothing changes; one within it is taken."""
    wall = 1000.0
    node = Swim("me", {"m": 1}, int(wall * 1e6), random.Random(0), SwimConfig(), wall=lambda: wall)
    _gossip(node, ["b", int(wall * 1e6), A, None])
    node.drain_events()
    before = (node.members(), node.incarnation, node.view_size)
    for inc in (2**62 - 1, int((wall + MAX_AHEAD) * 1e6) + 1):
        for message in (
            ["gossip", [[about, inc, status, None]]],
            ["ping", 1, [[about, inc, status, None]]],
            ["sync", [[about, inc, status, None]], False],
        ):
            with pytest.raises(ValueError, match="ahead of this node's clock"):
                node.receive("b", message, 1.0)
    with pytest.raises(ValueError, match="ahead"):
        node.receive("b", ["leave", "b", 2**62 - 1], 1.0)
    assert (node.members(), node.incarnation, node.view_size) == before
    assert node.drain_events() == []
    near = int((wall + MAX_AHEAD) * 1e6)
    node.receive("b", ["gossip", [[about, near, status, None]]], 1.0)  # within: taken
    if about == "me":
        assert node.incarnation > near  # moved past it
    else:
        record = node.record("b")
        assert record is not None and record[0] == near


def test_bad_sender_raises_value_error() -> None:
    node = _node()
    for sender in ("", None, 3):
        with pytest.raises(ValueError):
            node.receive(sender, ["gossip", []], 0.0)  # type: ignore[arg-type]


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=20,
)
_kinds = st.sampled_from(
    ["ping", "ack", "nack", "ping-req", "gossip", "join", "sync", "leave", "x"]
)
_near_valid = st.builds(
    lambda kind, rest: [kind, *rest], _kinds, st.lists(_values, max_size=4)
) | st.builds(
    lambda kind, seq, recs: [kind, seq, recs],
    _kinds,
    st.integers(min_value=-2, max_value=5),
    st.lists(
        st.lists(st.one_of(st.sampled_from(["me", "b", "z"]), _values), max_size=5), max_size=3
    ),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=st.one_of(_values, _near_valid))
def test_fuzzed_messages_raise_only_value_error(message: Any) -> None:
    node = _node()
    _gossip(node, ["b", 0, A, None])
    try:
        out = node.receive("b", message, 1.0)
    except ValueError:
        return
    msgpack.packb(out)
    node.tick(2.0)


# -- event-stream property ---------------------------------------------------------------

_addresses = st.sampled_from(["b", "c", "d", "me"])
_op = st.one_of(
    st.tuples(
        st.just("gossip"),
        _addresses,
        st.integers(min_value=0, max_value=4),
        st.sampled_from([A, S, D, L]),
    ),
    st.tuples(st.just("tick"), st.floats(min_value=0.05, max_value=3.0)),
    st.tuples(st.just("ping"), _addresses),
)


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(_op, max_size=40))
def test_events_never_revive_a_dead_member_without_a_higher_incarnation(
    ops: list[tuple[Any, ...]],
) -> None:
    node = Swim("me", None, 0, random.Random(0), SwimConfig(suspicion_timeout=0.5))
    dead_at: dict[str, int] = {}  # address -> incarnation it was reported dead/left at
    now = 0.0
    for op in ops:
        if op[0] == "gossip":
            _, address, incarnation, status = op
            node.receive("x", ["gossip", [[address, incarnation, status, None]]], now)
        elif op[0] == "tick":
            now += op[1]
            node.tick(now)
        else:
            node.receive(op[1], ["ping", 1, []], now)
        for kind, address, _ in node.drain_events():
            if address == "me":
                assert kind in ("self_dead", "doubt", "trusted")
                continue
            record = node.record(address)
            assert record is not None
            if kind in ("dead", "left"):
                dead_at[address] = record[0]
            elif kind == "alive" and address in dead_at:
                assert record[0] > dead_at.pop(address), (address, record)
            assert kind != "suspect" or address not in dead_at
        for address in node.members():
            assert address not in dead_at
