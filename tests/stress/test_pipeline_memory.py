"""Memory stays bounded on an endless source: items through three stages in
a fresh process, and its peak RSS (docs/pipelines.md, "Backpressure and
memory").

Each run is a child process so its peak RSS is its own. The bound asserted
is generous (the interpreter, anyio, trio and the test's imports take about
30 MB); what matters is that it does not grow with the item count, which
the two sizes check: ten times the items may not cost 10 MB more.

Sizes: CI runs 2,000 and 20,000 items per backend (a few seconds);
``ANTFLOW_PIPELINE_STRESS=1`` (``nox -s pipeline_stress``) adds 1,000,000
items per backend, about a minute each on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = """
import json, resource, sys
import anyio, anyio.lowlevel
from antflow.pipeline import Pipeline, Stage

backend, items = sys.argv[1], int(sys.argv[2])

async def step(x):
    await anyio.lowlevel.checkpoint()
    return x

def endless():
    n = 0
    while True:
        yield n
        n += 1

async def main():
    pipeline = Pipeline(*(Stage(name, step, workers=100) for name in "abc"))
    count = 0
    async with pipeline.stream(endless(), ordered=True) as results:
        async for result in results:
            assert result.value == count
            count += 1
            if count == items:
                break
    return count

options = {"use_uvloop": True} if backend == "uvloop" else {}
count = anyio.run(main, backend="trio" if backend == "trio" else "asyncio", backend_options=options)
# VmHWM, not ru_maxrss: on Linux the latter keeps the peak of the process
# that forked us (pytest) across exec.
try:
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
except OSError:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"items": count, "peak_mb": peak}))
"""


def peak_rss(backend: str, items: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, backend, str(items)],
        capture_output=True,
        text=True,
        timeout=550,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["items"] == items
    return float(report["peak_mb"])


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_memory_does_not_grow_with_the_source(backend: str) -> None:
    small = peak_rss(backend, 2_000)
    large = peak_rss(backend, 20_000)
    print(
        f"\n{backend}: peak RSS {small:.0f} MB for 2,000 items, {large:.0f} MB for 20,000"
    )
    assert large - small < 10
    assert large < 60


@pytest.mark.skipif(
    not os.environ.get("ANTFLOW_PIPELINE_STRESS"),
    reason="full size: ANTFLOW_PIPELINE_STRESS=1 (nox -s pipeline_stress)",
)
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_million_items_in_bounded_memory(backend: str) -> None:
    peak = peak_rss(backend, 1_000_000)
    print(f"\n{backend}: peak RSS {peak:.0f} MB for 1,000,000 items")
    assert peak < 60
