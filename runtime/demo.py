"""``shoal demo``: a small local cluster and what it shows.

Starts node processes on loopback, spreads named counters over them, moves one live, kills a
node and times how soon its actors answer again from the survivors, and compares the same
stateful work done two ways, as in Hellerstein et al.'s "Serverless Computing: One Step Forward,
Two Steps Back": by long-running addressable actors that keep their state in memory and talk
over ZeroMQ, and by stateless functions that read and write their state through storage
(SQLite, committed on every step) for each request.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from actors import ActorError, Node, actor

DEMO_MODULE = "runtime.demo"


@actor
class Tally:
    """A named counter: state stays in memory between calls."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def where(self) -> int:
        return os.getpid()


async def _start_node(seeds: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "runtime", "node", "--listen", "tcp://127.0.0.1:0"]
    for seed in seeds:
        cmd += ["--seed", seed]
    cmd += ["--import", DEMO_MODULE]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 30)
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"node failed to start: {line!r}")
    return proc, line.split()[-1]


def _storage_step(db: sqlite3.Connection, key: str, n: int) -> int:
    """One 'serverless' request: load state from storage, change it, write it back."""
    row = db.execute("SELECT total FROM tally WHERE key = ?", (key,)).fetchone()
    total = (row[0] if row else 0) + n
    db.execute("INSERT OR REPLACE INTO tally (key, total) VALUES (?, ?)", (key, total))
    db.commit()
    return total


class _Checks:
    """What the demo shows, verified as it goes: each failed check is printed and counted."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str) -> bool:
        if not ok:
            self.failed.append(what)
            print(f"CHECK FAILED: {what}")
        return ok


async def run_demo(nodes: int = 3, calls: int = 2000, recovery_timeout: float = 30.0) -> int:
    """Run the demo; returns the process exit code: 0 if every check of what it shows held
    (membership, placement, counts, the live move, the recovery, the storage run), 1 if not."""
    procs: list[subprocess.Popen[str]] = []
    check = _Checks()
    try:
        print(f"starting {nodes} node processes on loopback ...")
        first, address = await _start_node([])
        procs.append(first)
        addresses = [address]
        for _ in range(nodes - 1):
            proc, addr = await _start_node([address])
            procs.append(proc)
            addresses.append(addr)
        for proc, addr in zip(procs, addresses, strict=True):
            print(f"  node pid {proc.pid} listening on {addr}")

        async with Node(seeds=addresses[:1], serve=()) as client:
            print(f"client joined: {len(client.members)} members")
            check(
                sorted(client.members) == sorted(addresses),
                f"the client sees the {nodes} nodes (it sees {client.members})",
            )
            keys = [f"tally-{i}" for i in range(12)]
            placement: dict[str, list[str]] = {}
            for key in keys:
                check(await client.ref(Tally, key).add(0) == 0, f"{key} starts at 0")
                where = await client.locate(client.ref(Tally, key))
                check(where in addresses, f"{key} is hosted by a node (located at {where})")
                placement.setdefault(where or "?", []).append(key)
            print("actors activated by their first message, placed by consistent hashing:")
            for addr in addresses:
                print(f"  {addr}: {', '.join(placement.get(addr, [])) or '-'}")

            ref = client.ref(Tally, "tally-0")
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                await ref.add(1)
                lat.append(time.perf_counter() - t0)
            actor_p50 = statistics.median(lat) * 1e6
            total = await ref.add(0)
            check(total == calls, f"tally-0 counted {calls} sequential adds (it has {total})")
            print(
                f"{calls} sequential asks to one remote actor: p50 {actor_p50:.0f} us; "
                f"total {total}"
            )
            t0 = time.perf_counter()
            results = await asyncio.gather(
                *(client.ref(Tally, keys[i % len(keys)]).add(1) for i in range(calls * 5))
            )
            rate = len(results) / (time.perf_counter() - t0)
            totals = await asyncio.gather(*(client.ref(Tally, k).add(0) for k in keys))
            check(
                sum(totals) == calls + calls * 5,
                f"the {len(keys)} tallies hold every add ({sum(totals)} of {calls * 6})",
            )
            print(
                f"{calls * 5} concurrent asks over {len(keys)} actors on {nodes} nodes: "
                f"{rate:,.0f} calls/s"
            )

            here = await client.locate(ref)
            there = next(a for a in addresses if a != here)
            before = await ref.add(0)
            await client.migrate(ref, to=there)
            after = await ref.add(0)
            moved_to = await client.locate(ref)
            print(f"live migration of tally-0 from {here} to {moved_to}: state {before} -> {after}")
            check(moved_to == there, f"tally-0 moved to {there} (it is at {moved_to})")
            check(after == before, f"tally-0 kept its state over the move ({before} -> {after})")

            if nodes >= 3:
                victim_at = addresses[-1]
                victims = placement.get(victim_at, [])
                victim = procs[-1]
                victim.kill()
                t0 = time.perf_counter()
                answered: list[int] | None = None
                while time.perf_counter() - t0 < recovery_timeout:
                    try:
                        answered = await asyncio.gather(
                            *(client.ref(Tally, k).add.ask(0, timeout=0.5) for k in victims)
                        )
                        break
                    except ActorError:
                        await asyncio.sleep(0.05)
                if check(
                    answered is not None,
                    f"the killed node's actors answer again within {recovery_timeout:g} s",
                ):
                    print(
                        f"SIGKILL of {victim_at}: its {len(victims)} actors answer again from "
                        f"the survivors after {time.perf_counter() - t0:.1f} s "
                        "(state was in memory only)"
                    )
                    hosts = await asyncio.gather(
                        *(client.locate(client.ref(Tally, k)) for k in victims)
                    )
                    check(
                        all(h in addresses[:-1] for h in hosts),
                        f"the killed node's actors run on the survivors (at {hosts})",
                    )

        with tempfile.TemporaryDirectory() as tmp:
            db = sqlite3.connect(Path(tmp) / "state.db")
            db.execute("CREATE TABLE tally (key TEXT PRIMARY KEY, total INTEGER)")
            lat = []
            for _ in range(calls):
                t0 = time.perf_counter()
                _storage_step(db, "tally-0", 1)
                lat.append(time.perf_counter() - t0)
            row = db.execute("SELECT total FROM tally WHERE key = 'tally-0'").fetchone()
            db.close()
        check(row is not None and row[0] == calls, f"storage counted {calls} steps (has {row})")
        storage_p50 = statistics.median(lat) * 1e6
        print(
            f"{calls} sequential steps through storage (SQLite, commit per step): "
            f"p50 {storage_p50:.0f} us"
        )
        print(
            f"state kept in a live actor over the network vs state through storage: "
            f"{storage_p50 / actor_p50:.1f}x faster"
        )
        if check.failed:
            print(f"{len(check.failed)} checks failed")
            return 1
        print("all checks passed")
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
