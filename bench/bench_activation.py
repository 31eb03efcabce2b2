"""Benchmark activation scale on one embedded node beside plain objects in a dict.

Run: ``.venv/bin/python bench/bench_activation.py`` (``--count N``, ``--quick`` for a smoke run).

shoal: activate ``--count`` distinct actors of a small ``@actor`` class (one int attribute set
in ``__init__``) on one ``Node()`` by asking each once,
``await node.ref(Small, f"k{i}").touch()``; reports the total seconds, the resident memory
growth per activation (VmRSS from /proc/self/status before and after, each after
``gc.collect()``) and checks ``node.activation_count == count``. It also times a second pass of
asks to the now-active actors and the node's stop (which deactivates all of them).

floor: the same count of plain objects of the same class, built as the catalog builds an
instance (``cls.__new__``, ``key`` set, ``__init__``), stored in a dict keyed by the same key
strings (created the same way); seconds and RSS growth per object.

Each side runs in a fresh subprocess (so the RSS of one cannot hide the other) on uvloop, after a
warm-up of the same code on a throw-away node / dict. No tracemalloc anywhere: the memory figures
are RSS only. Bars: <= 1.5 KiB per idle activation and <= 20 s total for 1,000,000.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _util import median, ratio, rss_bytes, run, settle, table

from actors import Node, actor

WARM = 2_000


@actor(name="bench.Small")
class Small:
    def __init__(self) -> None:
        self.n = 0

    async def touch(self) -> int:
        return self.n


async def shoal_side(count: int) -> dict[str, Any]:
    async with Node() as warm:  # warm the activation path on a node that is then dropped
        for i in range(WARM):
            await warm.ref(Small, f"w{i}").touch()
    del warm
    settle()
    async with Node(max_activations=count) as node:  # (the default bound is 100,000)
        settle()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        for i in range(count):
            await node.ref(Small, f"k{i}").touch()
        activate_s = time.perf_counter() - t0
        settle()
        rss1 = rss_bytes()
        activations = node.activation_count
        t0 = time.perf_counter()
        for i in range(count):
            await node.ref(Small, f"k{i}").touch()
        reask_s = time.perf_counter() - t0
        t0 = time.perf_counter()
    stop_s = time.perf_counter() - t0
    return {
        "seconds": activate_s,
        "bytes": (rss1 - rss0) / count,
        "activations": activations,
        "reask_seconds": reask_s,
        "stop_seconds": stop_s,
    }


def _build(count: int, prefix: str) -> dict[str, Small]:
    cls = Small
    table: dict[str, Small] = {}
    for i in range(count):
        key = f"{prefix}{i}"
        obj = cls.__new__(cls)
        object.__setattr__(obj, "key", key)
        obj.__init__()  # type: ignore[misc]
        table[key] = obj
    return table


async def floor_side(count: int) -> dict[str, Any]:
    _build(WARM, "w")
    settle()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    table = _build(count, "k")
    seconds = time.perf_counter() - t0
    settle()
    rss1 = rss_bytes()
    assert len(table) == count
    return {"seconds": seconds, "bytes": (rss1 - rss0) / count}


def child(side: str, count: int) -> None:
    result = run(shoal_side(count) if side == "shoal" else floor_side(count))
    print(json.dumps(result))


def spawn(side: str, count: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", side, "--count", str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="actors to activate")
    parser.add_argument("--reps", type=int, default=1, help="subprocess pairs (median printed)")
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    parser.add_argument("--child", choices=("shoal", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.count = 20_000
    if args.child:
        child(args.child, args.count)
        return
    count = args.count
    floors, shoals = [], []
    for _ in range(args.reps):
        floors.append(spawn("floor", count))
        shoals.append(spawn("shoal", count))
    for s in shoals:
        assert s["activations"] == count, (s["activations"], count)

    def med(results: list[dict[str, Any]], k: str) -> float:
        return median([r[k] for r in results])

    f_s, f_b = med(floors, "seconds"), med(floors, "bytes")
    s_s, s_b = med(shoals, "seconds"), med(shoals, "bytes")
    table(
        ["activation scale", "seconds", "µs each", "bytes each (RSS)", "time/floor", "bytes/floor"],
        [
            ["floor: objects in a dict", f_s, f_s / count * 1e6, f_b, "1.00x", "1.00x"],
            [
                "shoal: first ask (activate)",
                s_s,
                s_s / count * 1e6,
                s_b,
                ratio(s_s, f_s),
                ratio(s_b, f_b),
            ],
        ],
        title=(
            f"Activation scale: {count:,} distinct actors on one node, median of {args.reps} "
            "subprocess pair(s); bars: <= 1536 bytes each, <= 20 s per 1,000,000"
        ),
    )
    reask, stop = med(shoals, "reask_seconds"), med(shoals, "stop_seconds")
    print(
        f"activation_count == {count:,}: ok | bars: bytes {s_b:.0f} <= 1536: "
        f"{'PASS' if s_b <= 1536 else 'FAIL'}, seconds {s_s:.1f} <= {20 * count / 1e6:g}: "
        f"{'PASS' if s_s <= 20 * count / 1e6 else 'FAIL'}"
    )
    print(
        f"also: second ask to every active actor {reask:.2f} s ({reask / count * 1e6:.2f} µs "
        f"each); node stop deactivating all {stop:.2f} s ({stop / count * 1e6:.2f} µs each)"
    )


if __name__ == "__main__":
    main()
