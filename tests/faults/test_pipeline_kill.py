"""SIGKILL a journaled pipeline at random moments, re-run it until done; and
Ctrl-C, which saves what finished (docs/pipelines.md, "A journal: resume
after a crash", the guarantees).

The child (``tests/_pipeline_child.py``) runs 3 stages over a few hundred
items and logs the start and the end of every stage call. Some runs kill
themselves right after their k-th call started; others are killed by this
process after a random delay, so kills land anywhere: inside a call, a
journal write, a lookup, start-up. The schedule comes from a seed, so a
failure can be replayed.

Checked at the end: the journal says every item is done and none set aside;
every item finished every stage, each on the output of the stage before;
no run called a stage twice for one item; and after each kill, the items a
stage ran again in a later run are at most that stage's capacity (its
workers plus its buffer: ``Stage.capacity``), the documented in-flight
bound.

Sizes: CI runs 400 items and 20 kills per backend (a few seconds each).
``ANTFLOW_PIPELINE_STRESS=1`` (``nox -s pipeline_stress``) adds three seeds
of 1,000 items and 40 kills per backend.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _pipeline_child
import pytest
from _pipeline_child import STAGES

from antflow.pipeline import Journal, Stage

CHILD = Path(_pipeline_child.__file__)
BACKENDS = ["asyncio", "uvloop", "trio"]
CAPACITY = {
    name: Stage(name, print, workers=workers).capacity for name, workers in STAGES
}
full_size_only = pytest.mark.skipif(
    not os.environ.get("ANTFLOW_PIPELINE_STRESS"),
    reason="full size: ANTFLOW_PIPELINE_STRESS=1 (nox -s pipeline_stress)",
)


def start(
    journal: Path, log: Path, backend: str, items: int, kill_at: int, seed: int
) -> subprocess.Popen[bytes]:
    args = [str(journal), str(log), backend, str(items), str(kill_at), str(seed)]
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(child: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """The child's output once it exits. If it has not exited within
    ``timeout`` seconds, it is made to print its Python stack, then killed,
    and the test fails with what it wrote: a child left running would go on
    holding its pipes and fail whichever test runs next."""
    try:
        return child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGUSR1)  # faulthandler: the stack to stderr
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)  # while it writes the stack
        child.kill()
        stdout, stderr = child.communicate()
        pytest.fail(
            f"the child did not exit within {timeout} s; "
            f"stdout {stdout.decode()[-2000:]!r}; stderr {stderr.decode()[-8000:]!r}"
        )


def signal_masks(pid: int) -> str:
    """The signals a process blocks and ignores, as Linux shows them (for a
    failure message: an ignored or blocked SIGINT is inherited from us)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return "signal masks unknown"
    lines = status.read_text().splitlines()
    return ", ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn")))


def calls(log: Path, event: str = "start") -> Counter[tuple[str, int]]:
    """How often each (stage, item) call logged ``event`` in one run."""
    found: Counter[tuple[str, int]] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            stage, item, what = line.split()
            if what == event:
                found[stage, int(item)] += 1
    return found


def kill_until_done(
    tmp_path: Path, backend: str, *, items: int, kills: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    journal = tmp_path / "run.journal"
    logs: list[Path] = []
    killed = 0
    for run in range(kills + 5):
        log = tmp_path / f"run{run}.log"
        logs.append(log)
        kill_at = 0
        after: tuple[int, float] | None = None
        if killed < kills:
            if rng.random() < 0.5:
                kill_at = rng.randint(1, 150)  # the child kills itself
            else:
                # We kill it wherever it is: starting up, reading the
                # journal, in a call, writing a batch of records: a little
                # while after it has logged some number of calls.
                after = (rng.choice([0, rng.randint(1, 300)]), rng.uniform(0, 0.03))
        child = start(journal, log, backend, items, kill_at, rng.randrange(2**32))
        try:
            if after is not None:
                started, extra = after
                while child.poll() is None and len(calls(log)) < started:
                    time.sleep(0.001)
                time.sleep(extra)
                child.send_signal(signal.SIGKILL)
            _, stderr = child.communicate(timeout=50)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if child.returncode == -signal.SIGKILL:
            killed += 1
            continue
        assert child.returncode == 0, stderr.decode()
        break
    else:
        pytest.fail("the pipeline never finished")
    assert killed >= kills // 2  # the test did kill, mid-work
    summary = Journal(journal).summary()
    assert (summary.done, summary.set_aside, summary.waiting) == (items, 0, {})

    per_run = [calls(log) for log in logs]
    ended: Counter[tuple[str, int]] = sum(
        (calls(log, "end") for log in logs), Counter()
    )
    for name, _ in STAGES:
        assert all(ended[name, item] >= 1 for item in range(items)), name
    worst: Counter[str] = Counter()
    repeated: Counter[str] = Counter()
    for index, started in enumerate(per_run):
        assert max(started.values(), default=1) == 1  # nothing twice within a run
        later: set[tuple[str, int]] = set().union(*per_run[index + 1 :])
        again = Counter(stage for stage, item in started if (stage, item) in later)
        for name, _ in STAGES:
            assert again[name] <= CAPACITY[name], (index, name, again[name])
            worst[name] = max(worst[name], again[name])
            repeated[name] += again[name]
    return {
        "backend": backend,
        "items": items,
        "runs": len(logs),
        "kills": killed,
        "repeated": dict(repeated),
        "worst_kill": dict(worst),
        "bound": CAPACITY,
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, backend: str) -> None:
    started = time.perf_counter()
    report = kill_until_done(tmp_path, backend, items=400, kills=20, seed=20261130)
    print(f"\n{report} in {time.perf_counter() - started:.1f} s")


@full_size_only
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stress(tmp_path: Path, backend: str, seed: int) -> None:
    started = time.perf_counter()
    report = kill_until_done(tmp_path, backend, items=1000, kills=40, seed=seed)
    print(f"\n{report} in {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_saves_finished_work(tmp_path: Path, backend: str) -> None:
    """SIGINT (Ctrl-C) is not SIGKILL: on asyncio the run saves what had
    finished on its way out, so a re-run repeats at most the calls that were
    running. On trio, KeyboardInterrupt is raised wherever the program is,
    and the crash bound holds (docs/pipelines.md, the guarantees)."""
    journal = tmp_path / "run.journal"
    first_log = tmp_path / "first.log"
    child = start(journal, first_log, backend, 400, 0, 7)
    # Interrupt once the pipeline is busy: when a few hundred calls started.
    deadline = time.monotonic() + 30
    while len(calls(first_log)) < 200 and child.poll() is None:
        if time.monotonic() > deadline:
            finish(child, 0)  # fails, with the child's stack
        time.sleep(0.005)
    started_before = len(calls(first_log))
    signals = signal_masks(child.pid)
    child.send_signal(signal.SIGINT)
    stdout, stderr = finish(child, 30)
    seen = (
        f"{started_before} calls had started at SIGINT, "
        f"{len(calls(first_log, 'end'))} ended in all; the child's {signals}; "
        f"stdout {stdout.decode()[-2000:]!r}; stderr {stderr.decode()[-4000:]!r}"
    )
    assert child.returncode != 0, seen
    assert b"KeyboardInterrupt" in stderr, seen
    second_log = tmp_path / "second.log"
    child = start(journal, second_log, backend, 400, 0, 8)
    _, stderr = finish(child, 50)
    assert child.returncode == 0, stderr.decode()
    first, second = calls(first_log), calls(second_log)
    for name, workers in STAGES:
        again = sum(
            1 for stage, item in first if stage == name and (stage, item) in second
        )
        assert again <= (CAPACITY[name] if backend == "trio" else workers), (
            name,
            again,
        )
    assert Journal(journal).summary().done == 400
