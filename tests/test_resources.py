"""What a node offers when it is told nothing: CPUs, memory and GPUs of its machine."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from actors import Node
from runtime.resources import detect, offered
from tests.cluster import NodeProcess, converged_client


def test_detect_reports_this_machine() -> None:
    found = detect()
    assert found["cpu"] == len(os.sched_getaffinity(0))
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / (1 << 30)
    assert found["mem"] == pytest.approx(pages, abs=0.01) and found["mem"] > 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        assert found["gpu"] == 0
    else:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
        assert found["gpu"] == sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def test_given_figures_win_over_detected_ones() -> None:
    assert offered({"gpu": 0, "fpga": 2}, {"cpu": 4, "gpu": 1}) == {"cpu": 4, "gpu": 0, "fpga": 2}
    assert offered(None, {"cpu": 4}) == {"cpu": 4}


@pytest.mark.parametrize("bad", ["gpu=1", {"gpu": "1"}, {"gpu": -1}, {1: 1}, {"gpu": True}])
def test_resources_of_the_wrong_type_are_refused(bad: object) -> None:
    with pytest.raises(
        (TypeError, ValueError),
        match=r"^resources must be a mapping of resource names to numbers >= 0, e\.g\. ",
    ):
        Node(resources=bad)  # type: ignore[arg-type]


async def test_a_member_started_without_resources_offers_its_cpus() -> None:
    async with Node("tcp://127.0.0.1:0") as node:
        assert node.resources["cpu"] == len(os.sched_getaffinity(0))
        assert "mem" in node.resources and "gpu" in node.resources
    async with Node("tcp://127.0.0.1:0", resources={"cpu": 0}) as node:
        assert node.resources["cpu"] == 0


@pytest.mark.timeout(120)
@pytest.mark.slow
async def test_an_actor_needing_a_cpu_runs_only_where_one_is_offered() -> None:
    a = NodeProcess()  # detects its CPUs
    b = NodeProcess(seeds=[a.address], extra=["--resources", "cpu=0"])
    try:
        async with converged_client([a, b], 2) as client:
            where = {await client.ref("CpuBound", f"k{i}").where() for i in range(40)}
            assert where == {a.address}
    finally:
        a.kill()
        b.kill()
