"""The pipeline demo (``python -m antflow pipeline``) runs on each backend:
a run killed halfway, a run that resumes, every batch saved and checked.

It runs in a subprocess, as a user would run it. The batches and the
service's timing come from the seed; when the kill lands varies, so the
counts of calls made again are checked against their bounds, not pinned.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

BATCHES = 12
ROW = re.compile(r"^  (\w[\w ]*?)\s+(\d+)  (.*)$", re.MULTILINE)


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antflow", "pipeline", *args],
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_pipeline_demo_is_killed_then_resumes(backend: str) -> None:
    pytest.importorskip("trio" if backend == "trio" else "anyio")
    if backend == "uvloop":
        pytest.importorskip("uvloop")
    done = run_demo("--backend", backend, "--batches", str(BATCHES), "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "run 1 killed with SIGKILL" in done.stdout
    assert f"Summary ({backend})" in done.stdout
    rows = {name: (int(value), note) for name, value, note in ROW.findall(done.stdout)}
    assert rows["saved"][0] == BATCHES
    assert "WRONG" not in done.stdout
    for stage, bound in (("uploads", 8), ("downloads", 8), ("saves", 4)):
        count = rows[stage][0]
        assert BATCHES <= count <= BATCHES + bound, (stage, count)
    # Run 2 took up only what run 1 had not finished.
    run2 = rows["rerun"]
    skipped = int(re.search(r"(\d+) skipped", run2[1])[1])  # type: ignore[index]
    assert run2[0] + skipped == BATCHES
    # Run 1 was killed once half the files were saved; a save whose journal
    # record had not been written yet is done again (at most "save"'s bound).
    assert skipped >= BATCHES // 2 - 4
    # The children's progress lines, one per stage, went to stderr.
    for stage in ("upload", "poll", "download", "save"):
        assert re.search(rf"^{stage}\s+done", done.stderr, re.MULTILINE), done.stderr


def test_pipeline_demo_help_and_bad_arguments() -> None:
    done = run_demo("--help")
    assert done.returncode == 0
    for option in ("--backend", "--batches", "--seed", "--keep"):
        assert option in done.stdout
    assert "--child" not in done.stdout
    done = run_demo("--batches", "1")
    assert done.returncode == 2
    assert "--batches must be at least 2" in done.stderr


def test_the_main_demo_is_unchanged_by_the_hook() -> None:
    from antflow._demo import parse_args

    assert parse_args(["--items", "3"]).items == 3
