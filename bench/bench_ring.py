"""Benchmark router.ring: key movement on a join, and the cost of one lookup.

Run: ``.venv/bin/python bench/bench_ring.py``

Part 1 adds one member to a ring of N members and reports the fraction of keys
whose owner changed beside the ideal 1/(N+1) (and checks every moved key went
to the newcomer).  Part 2 reports µs per ``Ring.owner()`` beside floors
measured in the same run on the same machine: a bare ``bisect`` on a sorted
``list[int]`` of the same size, and the key hash alone.
"""

from __future__ import annotations

import random
import sys
import time
from bisect import bisect_left
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router.ring import DEFAULT_VNODES, Ring, key_position

JOIN_SIZES = (4, 9, 19, 49)
JOIN_KEYS = 50_000
LOOKUP_SIZES = (5, 100)
LOOKUP_KEYS = 20_000
REPEATS = 7


def addrs(n: int) -> list[str]:
    return [f"tcp://10.0.{i // 250}.{i % 250 + 1}:5700" for i in range(n)]


def per_call_us(fn: Callable[[list[str]], object], items: list[str]) -> float:
    """Best-of-REPEATS µs per item for ``fn(items)``, which loops over ``items``."""
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def bench_join() -> None:
    print(
        f"Join: fraction of {JOIN_KEYS:,} keys moved when one member joins N "
        f"({DEFAULT_VNODES} vnodes)"
    )
    print(
        f"{'N':>4} {'ideal 1/(N+1)':>14} {'moved':>8} {'moved/ideal':>12} {'all to newcomer':>16}"
    )
    keys = [f"Counter/user-{i}" for i in range(JOIN_KEYS)]
    newcomer = "tcp://192.168.1.1:5700"
    for n in JOIN_SIZES:
        before = Ring(addrs(n))
        after = before.copy()
        after.add(newcomer)
        moved = [k for k in keys if before.owner(k) != after.owner(k)]
        ideal = 1 / (n + 1)
        frac = len(moved) / len(keys)
        to_new = all(after.owner(k) == newcomer for k in moved)
        print(f"{n:>4} {ideal:>14.4f} {frac:>8.4f} {frac / ideal:>12.2f} {to_new!s:>16}")


def bench_lookup() -> None:
    print()
    print(f"Lookup: µs per call, best of {REPEATS} passes over {LOOKUP_KEYS:,} distinct keys")
    rng = random.Random(42)
    keys = [f"Counter/user-{rng.randrange(10**9)}" for _ in range(LOOKUP_KEYS)]

    def hash_only(ks: list[str]) -> None:
        for k in ks:
            key_position(k)

    cached_position = lru_cache(maxsize=None)(key_position)

    def hash_cached(ks: list[str]) -> None:
        for k in ks:
            cached_position(k)

    hash_cached(keys)  # warm: every later call is a hit
    hash_us = per_call_us(hash_only, keys)
    cached_us = per_call_us(hash_cached, keys)

    header = (
        f"{'members':>7} {'points':>7} {'bisect floor':>13} {'owner()':>8} "
        f"{'owner(elig all)':>16} {'owner(elig 1/2)':>16} {'owners(k,3)':>12}"
    )
    print(header)
    for n in LOOKUP_SIZES:
        members = addrs(n)
        ring = Ring(members)
        points = n * ring.vnodes
        sorted_ints = sorted(rng.getrandbits(64) for _ in range(points))
        probes = [rng.getrandbits(64) for _ in range(LOOKUP_KEYS)]
        half = set(members[::2])

        def bare_bisect(_: list[str], s: list[int] = sorted_ints, ps: list[int] = probes) -> None:
            for p in ps:
                bisect_left(s, p)

        def owner(ks: list[str], f: Callable[[str], str] = ring.owner) -> None:
            for k in ks:
                f(k)

        def owner_all(ks: list[str], r: Ring = ring) -> None:
            def yes(m: str) -> bool:
                return True

            for k in ks:
                r.owner(k, yes)

        def owner_half(
            ks: list[str], r: Ring = ring, elig: Callable[[str], bool] = half.__contains__
        ) -> None:
            for k in ks:
                r.owner(k, elig)

        def owners3(ks: list[str], r: Ring = ring) -> None:
            for k in ks:
                r.owners(k, 3)

        row = [per_call_us(fn, keys) for fn in (bare_bisect, owner, owner_all, owner_half, owners3)]
        print(
            f"{n:>7} {points:>7} {row[0]:>13.3f} {row[1]:>8.3f} "
            f"{row[2]:>16.3f} {row[3]:>16.3f} {row[4]:>12.3f}"
        )
    print(f"key hash alone (key_position): {hash_us:.3f} µs; via lru_cache hit: {cached_us:.3f} µs")


def main() -> None:
    bench_join()
    bench_lookup()


if __name__ == "__main__":
    main()
