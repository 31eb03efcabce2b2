"""The actors of ``bench/bench_locality.py`` (node processes ``--import bench.locality_actors``):
a data set made where it is kept, and a trainer that takes logistic-regression steps on it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from actors import actor, data
from actors.data import DataRef
from runtime.context import current_node


@actor
class DataSet:
    """Makes a data set on the node it runs on and keeps it there (it never travels in an ask)."""

    async def make(self, key: str, rows: int, cols: int, seed: int = 0) -> DataRef:
        """``rows`` x ``cols`` float64: features, and a last column whose sign is the label."""

        def build() -> np.ndarray:
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((rows, cols))
            truth = rng.standard_normal(cols - 1)
            x[:, -1] = x[:, :-1] @ truth + 0.5 * rng.standard_normal(rows)
            return x

        return await data.put(key, await asyncio.to_thread(build))

    def where(self) -> str:
        return current_node().address


@actor(placement="data")
class Trainer:
    """One logistic-regression gradient step per ``step`` over the whole data set."""

    def __init__(self) -> None:
        self.w: list[float] = []
        self.steps = 0

    async def step(self, ref: DataRef, rate: float = 0.5) -> list[Any]:
        """Read the data set, take one step; answers ``[node, fetch s, compute s, loss]``."""
        t0 = time.perf_counter()
        x = await ref.get()
        t1 = time.perf_counter()
        features, labels = x[:, :-1], (x[:, -1] > 0).astype(np.float64)
        w = np.asarray(self.w) if self.w else np.zeros(features.shape[1])
        p = 1.0 / (1.0 + np.exp(-(features @ w)))
        w = w - rate * (features.T @ (p - labels)) / len(labels)
        eps = 1e-12
        loss = -float(np.mean(labels * np.log(p + eps) + (1 - labels) * np.log(1 - p + eps)))
        self.w = w.tolist()
        self.steps += 1
        return [current_node().address, t1 - t0, time.perf_counter() - t1, loss]

    def where(self) -> str:
        return current_node().address


@actor(placement="hash")
class PinnedTrainer(Trainer):
    """The same trainer, kept where hashing put it (the data stays remote)."""
