"""What a node offers to actors' ``resources`` requirements when it is told nothing.

``detect()`` reports ``cpu`` (the CPUs this process may run on), ``mem`` (physical memory, GiB)
and ``gpu`` (NVIDIA GPUs: through NVML when ``pynvml`` is installed, else ``nvidia-smi -L``;
0 without either). A node given ``resources`` offers those, on top of what it detected: the
given figures win, so ``--resources gpu=0`` keeps a node with a GPU from hosting GPU actors.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping

__all__ = ["detect", "detect_async", "offered"]

#: Seconds ``nvidia-smi`` may take before it is taken for absent.
NVIDIA_SMI_TIMEOUT = 5.0


def _cpus() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / (1 << 30)
    except (AttributeError, OSError, ValueError):
        return 0.0


def _gpus() -> float:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        try:
            pynvml.nvmlInit()
            try:
                return float(pynvml.nvmlDeviceGetCount())
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # a driver that does not answer: try nvidia-smi
            pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0.0
    try:
        out = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return 0.0
    return float(sum(1 for line in out.stdout.splitlines() if line.startswith("GPU ")))


_detected: dict[str, float] | None = None


def detect() -> dict[str, float]:
    """What this machine offers: ``cpu``, ``mem`` (GiB), ``gpu`` (measured once a process).
    May take a few seconds the first time where ``nvidia-smi`` is installed."""
    global _detected
    if _detected is None:
        _detected = {"cpu": _cpus(), "mem": round(_memory_gib(), 2), "gpu": _gpus()}
    return dict(_detected)


async def detect_async() -> dict[str, float]:
    """:func:`detect` without blocking the loop where it would run ``nvidia-smi``."""
    if _detected is None and shutil.which("nvidia-smi") is not None:
        import asyncio

        return await asyncio.to_thread(detect)
    return detect()


def offered(given: Mapping[str, float] | None, detected: Mapping[str, float]) -> dict[str, float]:
    """What a node offers: ``detected``, with the ``given`` figures on top."""
    return {**detected, **(given or {})}
