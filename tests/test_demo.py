"""The demo (``python -m antflow``) runs, on each backend, and says what happened.

It runs in a subprocess, as the README's command runs it, on a small
scenario. The scenario is drawn from the seed before anything runs, so the
counts (not the times) must be the same on every backend (docs/getting-started.md,
"Watch it work").
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

ITEMS = 30
SUMMARY_ROW = re.compile(r"^  (done|failed|retried|cancelled)\s+(\d+)\s", re.MULTILINE)
ELAPSED_ROW = re.compile(
    r"^  elapsed\s+(\d+\.\d\d) s  one at a time: (\d+\.\d\d) s", re.MULTILINE
)


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "antflow", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def summaries(stdout: str) -> dict[str, dict[str, int]]:
    """``{backend: {row: count}}`` from every summary the demo printed."""
    found: dict[str, dict[str, int]] = {}
    for section in stdout.split("Summary (")[1:]:
        backend, _, body = section.partition(")")
        body = body.split("\n\n")[0]
        found[backend] = {name: int(n) for name, n in SUMMARY_ROW.findall(body)}
        match = ELAPSED_ROW.search(body)
        assert match, body
        assert float(match[1]) > 0
        assert float(match[2]) > 0
    return found


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_on_one_backend(backend: str) -> None:
    done = run_demo("--backend", backend, "--items", str(ITEMS))
    assert done.returncode == 0, done.stderr
    found = summaries(done.stdout)
    assert list(found) == [backend]
    counts = found[backend]
    assert set(counts) == {"done", "failed", "retried", "cancelled"}
    # Every request ends final: returned, failed or cancelled.
    assert counts["done"] + counts["failed"] + counts["cancelled"] == ITEMS
    assert counts["done"] > 0
    # Piped, not a terminal: whole lines, no carriage returns.
    assert "\r" not in done.stderr
    assert re.search(rf"\] {ITEMS}/{ITEMS} ", done.stderr), done.stderr


def test_demo_default_runs_both_backends_with_the_same_outcome() -> None:
    done = run_demo("--items", str(ITEMS), "--seed", "7")
    assert done.returncode == 0, done.stderr
    found = summaries(done.stdout)
    assert list(found) == ["asyncio", "trio"]
    assert found["asyncio"] == found["trio"]
    assert "Same outcome on every backend" in done.stdout


def test_the_seed_decides_the_scenario() -> None:
    from antflow._demo import make_plan, sequential_seconds

    assert make_plan(50, seed=3) == make_plan(50, seed=3)
    assert make_plan(50, seed=3) != make_plan(50, seed=4)
    assert sequential_seconds(make_plan(50, seed=3)) > 0


def test_demo_rejects_bad_arguments() -> None:
    done = run_demo("--backend", "curio")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr
    done = run_demo("--items", "0")
    assert done.returncode == 2
    assert "--items must be at least 1" in done.stderr


def test_demo_help() -> None:
    done = run_demo("--help")
    assert done.returncode == 0
    for option in ("--backend", "--items", "--seed", "--workers"):
        assert option in done.stdout


def test_progress_redraws_one_line_on_a_terminal() -> None:
    import io

    from antflow import ExecutorStatistics
    from antflow._demo import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(screen, total=4)
    stats = ExecutorStatistics(
        max_workers=2,
        submitted=4,
        queued=1,
        running=1,
        succeeded=1,
        failed=1,
        cancelled=0,
        retries=3,
    )
    progress.show(stats)
    progress.say("a message")
    progress.show(stats, final=True)
    text = screen.getvalue()
    assert text.startswith("\r[")
    assert "2/4" in text
    assert "retries 3" in text
    assert "a message\n" in text
    assert text.endswith("\n")
    assert text.count("\n") == 2  # the message and the final line
