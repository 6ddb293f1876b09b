"""SIGKILL a journaled pipeline at random moments, re-run it until done.

The child (``tests/_pipeline_child.py``) runs 3 stages over a few hundred items and
logs every stage call before it starts. Some runs kill themselves right after
their k-th call; others are killed by this process after a random delay, so
kills land anywhere: inside a call, a journal write, a lookup, start-up. The
schedule comes from a seed, so a failure can be replayed.

Checked at the end: the journal says every item is done; every item started
every stage; no run called a stage twice for one item; and after each kill,
the items a stage ran again are at most that stage's capacity (its workers
plus its buffer: ``Stage.capacity``), the documented in-flight bound.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import _pipeline_child
import pytest
from _pipeline_child import STAGES

from antflow.pipeline import Journal, Stage

CHILD = Path(_pipeline_child.__file__)

BACKENDS = ["asyncio", "uvloop", "trio"]
CAPACITY = {
    name: Stage(name, print, workers=workers).capacity for name, workers in STAGES
}


def start(
    journal: Path, log: Path, backend: str, items: int, kill_at: int, seed: int
) -> subprocess.Popen[bytes]:
    args = [str(journal), str(log), backend, str(items), str(kill_at), str(seed)]
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def starts(log: Path) -> Counter[tuple[str, int]]:
    calls: Counter[tuple[str, int]] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            stage, item = line.split()
            calls[stage, int(item)] += 1
    return calls


def kill_until_done(
    tmp_path: Path, backend: str, *, items: int, kills: int, seed: int
) -> dict[str, object]:
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
                calls, extra = after
                while child.poll() is None and len(starts(log)) < calls:
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

    per_run = [starts(log) for log in logs]
    everything: Counter[tuple[str, int]] = sum(per_run, Counter())
    for name, _ in STAGES:
        assert all(everything[name, item] >= 1 for item in range(items)), name
    worst: Counter[str] = Counter()
    repeated: Counter[str] = Counter()
    for index, calls in enumerate(per_run):
        assert max(calls.values(), default=1) == 1  # nothing twice within a run
        later: set[tuple[str, int]] = set().union(*per_run[index + 1 :])
        again = Counter(stage for stage, item in calls if (stage, item) in later)
        for name, _ in STAGES:
            assert again[name] <= CAPACITY[name], (index, name, again[name])
            worst[name] = max(worst[name], again[name])
            repeated[name] += again[name]
    return {
        "backend": backend,
        "runs": len(logs),
        "kills": killed,
        "repeated": dict(repeated),
        "worst_kill": dict(worst),
        "bound": CAPACITY,
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_at_random_moments_then_resume(tmp_path: Path, backend: str) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    if backend == "trio":
        pytest.importorskip("trio")
    started = time.perf_counter()
    report = kill_until_done(tmp_path, backend, items=400, kills=20, seed=20261130)
    print(f"\n{report} in {time.perf_counter() - started:.1f} s")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_stress(tmp_path: Path, backend: str, seed: int) -> None:
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    if backend == "trio":
        pytest.importorskip("trio")
    started = time.perf_counter()
    report = kill_until_done(tmp_path, backend, items=1000, kills=40, seed=seed)
    print(f"\n{report} in {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_saves_finished_work(tmp_path: Path, backend: str) -> None:
    """SIGINT (Ctrl-C) is not SIGKILL: the run saves what had finished on its
    way out, so a re-run repeats at most the calls that were running."""
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    if backend == "trio":
        pytest.importorskip("trio")
    journal = tmp_path / "run.journal"
    first_log = tmp_path / "first.log"
    child = start(journal, first_log, backend, 400, 0, 7)
    # Interrupt once the pipeline is busy: when a few hundred calls started.
    deadline = time.monotonic() + 30
    while len(starts(first_log)) < 200 and child.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode != 0
    assert b"KeyboardInterrupt" in stderr, stderr.decode()
    second_log = tmp_path / "second.log"
    child = start(journal, second_log, backend, 400, 0, 8)
    _, stderr = child.communicate(timeout=50)
    assert child.returncode == 0, stderr.decode()
    first, second = starts(first_log), starts(second_log)
    for name, workers in STAGES:
        again = sum(
            1 for stage, item in first if stage == name and (stage, item) in second
        )
        assert again <= workers, (name, again)
    assert Journal(journal).summary().done == 400
