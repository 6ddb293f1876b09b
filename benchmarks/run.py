"""Benchmark antflow against hand-written baselines and the libraries a user would pick instead.

Usage::

    nox -s bench                 # full sizes, 3 rounds, every Python 3.11-3.13 found
    nox -s bench -- --quick      # smaller sizes, 1 round, this Python (what CI runs)
    python benchmarks/run.py --quick --workloads a,c,h --backends trio
    python benchmarks/run.py --pythons 3.11,3.13 --workloads i --rounds 5

Every run is a fresh process (``child.py``) so imports, allocator state and
peak RSS never leak from one case into the next. Within a round the
implementations of a case run back to back, and each round starts the list at
a different place, so slow drift of the machine spreads over all of them.
Results go to ``benchmarks/results/`` as JSON (every run), a short JSON
summary (the targets and the medians) and markdown; the markdown is printed
too. The runner asserts nothing about speed: it exits non-zero only when a run
crashed or returned a wrong result. ``plots.py`` draws the figures from the
JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envs
from catalog import (
    BACKENDS,
    IMPLS,
    IMPORTS,
    WORKLOADS,
    WORKLOADS_BY_KEY,
    Impl,
    Point,
    Workload,
)
from envs import ENVS, THIS, Interpreter
from report import render_markdown
from results import judge_targets, read_child_output, summarize, write_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "child.py"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="smaller sizes and one round")
    add("--rounds", type=int, help="rounds per case (default: 3, quick: 1)")
    add("--workloads", help="comma-separated letters or names, e.g. a,c,h,import")
    add("--backends", help="comma-separated subset of " + ",".join(BACKENDS))
    add(
        "--pythons",
        help="comma-separated versions (3.11,3.13) or 'all' found on PATH or under "
        "pyenv (default: all; quick: this Python)",
    )
    add(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out an implementation or import row, e.g. antflow-0.10 (repeatable)",
    )
    add(
        "--venvs",
        type=Path,
        default=envs.DEFAULT_ROOT,
        help="where the peers' venvs live, made when missing (default: %(default)s)",
    )
    add("--out", type=Path, default=HERE / "results", help="where reports go")
    add("--timeout", type=float, help="seconds before a run counts as hung")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Case:
    """One (workload, point, Python, backend) and the rows it compares."""

    workload: Workload
    point: Point
    python: Interpreter
    backend: str
    rows: list[Any]  # catalog.Impl, or catalog.Import for workload g
    n: int
    workers: int


def plan(
    args: argparse.Namespace, pythons: list[Interpreter]
) -> tuple[list[Case], list[str]]:
    """Every case to run, in order, and the rows left out for their size.

    A workload runs on every Python of the run when ``--pythons`` names them or
    the workload says ``every_python`` (h, i); otherwise on the runner's own
    Python only, except that a row which needs a newer Python (aiolibs-executor
    needs 3.13) runs on the oldest one that has it, beside antflow and the
    reference there, so its ratios are still taken in one run.
    """
    keys = args.workloads.split(",") if args.workloads else [w.key for w in WORKLOADS]
    unknown = [k for k in keys if k not in WORKLOADS_BY_KEY]
    backends = args.backends.split(",") if args.backends else list(BACKENDS)
    if unknown or not set(backends) <= set(BACKENDS):
        sys.exit(f"unknown workload or backend: {unknown or backends}")
    chosen = {WORKLOADS_BY_KEY[k].key for k in keys}
    skip = set(args.skip)
    own = next((p for p in pythons if p.own), pythons[0])
    cases: list[Case] = []
    left_out: dict[str, None] = {}  # in order, once each
    for workload in (w for w in WORKLOADS if w.key in chosen):
        everywhere = args.pythons is not None or workload.every_python
        for python in pythons:
            if workload.key == "import":
                if everywhere or python == own:
                    imports = [row for row in IMPORTS if row.name not in skip]
                    cases.append(Case(workload, Point(), python, "-", imports, 1, 1))
                continue
            for backend in backends:
                for point in workload.points_for(args.quick):
                    rows = _rows(workload, backend, python, skip)
                    if not everywhere and python != own:
                        rows = _needing(rows, python, pythons, own, workload, backend)
                    size = workload.quick_size if args.quick else workload.size
                    n = point.n or size
                    workers = point.workers or workload.workers
                    for impl in [r for r in rows if workload.key in r.max_items]:
                        most, why = impl.max_items[workload.key]
                        if n > most:
                            rows.remove(impl)
                            left_out[
                                f"{impl.name} in {workload.letter} above {most:,} items: {why}"
                            ] = None
                    if rows:
                        cases.append(
                            Case(workload, point, python, backend, rows, n, workers)
                        )
    return cases, list(left_out)


def _rows(
    workload: Workload, backend: str, python: Interpreter, skip: set[str]
) -> list[Impl]:
    return [
        impl
        for impl in IMPLS
        if impl.name not in skip
        and backend in impl.backends
        and workload.key in impl.workloads
        and python.version_info >= impl.min_python
        and (
            not workload.only_reference
            or impl.name in ("antflow", *workload.references_on(backend))
        )
    ]


def _needing(
    rows: list[Impl],
    python: Interpreter,
    pythons: list[Interpreter],
    own: Interpreter,
    workload: Workload,
    backend: str,
) -> list[Impl]:
    """The rows that cannot run on ``own`` and have ``python`` as the oldest
    Python of the run that can, with antflow and the reference beside them."""

    def home(impl: Impl) -> Interpreter | None:
        return next((p for p in pythons if p.version_info >= impl.min_python), None)

    needing = [
        impl
        for impl in rows
        if impl.min_python > own.version_info and home(impl) == python
    ]
    if not needing:
        return []
    keep = {"antflow", *workload.references_on(backend)}
    for impl in needing:
        keep.update((impl.name, *impl.beside))
    return [impl for impl in rows if impl.name in keep]


def prepare_envs(
    cases: list[Case], root: Path
) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Make every venv the cases need: (env, Python) -> python, and what failed, why."""
    pythons: dict[tuple[str, str], str] = {}
    failed: dict[str, str] = {}
    for case in cases:
        for row in case.rows:
            key = row.env, case.python.version
            if key in pythons or f"{row.env} on {key[1]}" in failed:
                continue
            env = ENVS[row.env]
            if case.python.version_info < env.min_python:
                continue
            try:
                pythons[key] = envs.ensure(env, case.python, root)
            except RuntimeError as error:
                failed[f"{row.env} on {key[1]}"] = str(error)
                print(f"left out: {error}", file=sys.stderr, flush=True)
    return pythons, failed


def check_this_antflow(python: str) -> None:
    """Fail early, with the reason, when this repository's antflow does not import;
    then byte-compile it, as pip compiles every package it installs.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (as on our CI machines), antflow
    would otherwise be compiled from source in every run: about 12 ms more per
    ``import antflow``, and its lazily imported modules compiled inside the
    timed workloads.
    """
    environ = envs.child_environ(ENVS[THIS])
    probe = "import antflow; antflow.AsyncExecutor; print(antflow.__file__)"
    done = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, env=environ, cwd=HERE
    )
    if done.returncode != 0:
        sys.exit(
            f"this repository's antflow does not import:\n{done.stderr}\n(--skip antflow to go on without it)"
        )
    if not Path(done.stdout.strip()).resolve().is_relative_to(REPO):
        sys.exit(f"antflow imports from {done.stdout.strip()}, not from {REPO}")
    subprocess.run(
        [python, "-m", "compileall", "-q", str(REPO / "antflow")],
        check=True,
        env=environ,
    )


def run_child(
    python: str, environ: dict[str, str], args: list[str], timeout: float
) -> dict[str, Any]:
    """Run child.py once; its last stdout line is the JSON it measured."""
    try:
        done = subprocess.run(
            [python, str(CHILD), *args],
            capture_output=True,
            text=True,
            env=environ,
            cwd=HERE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "timed_out": True}
    return read_child_output(done.returncode, done.stdout, done.stderr)


def child_args(case: Case, row: Any) -> list[str]:
    if case.workload.key == "import":
        return ["import", row.module]
    module = row.module_for(case.workload.key)
    args = [module, case.workload.key, case.backend, str(case.n), str(case.workers)]
    return ["run", *args, *([case.point.arg] if case.point.arg else [])]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    timeout = args.timeout or (120.0 if args.quick else 300.0)
    wanted = (
        args.pythons.split(",") if args.pythons else (None if args.quick else ["all"])
    )
    pythons = envs.find_interpreters(wanted)
    cases, left_out = plan(args, pythons)

    env_pythons, unavailable = prepare_envs(cases, args.venvs)
    if "antflow" not in args.skip:
        for python in pythons:
            if (THIS, python.version) in env_pythons:
                check_this_antflow(env_pythons[THIS, python.version])
    for case in cases:
        case.rows[:] = [
            r for r in case.rows if (r.env, case.python.version) in env_pythons
        ]
    cases = [case for case in cases if case.rows]
    environs = {name: envs.child_environ(env) for name, env in ENVS.items()}

    total = rounds * sum(len(case.rows) for case in cases)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    revision, fingerprint = _source_revision(), _source_fingerprint()
    load_before = _load()

    # Import times should not include compiling bytecode: one unrecorded run each.
    for case in cases:
        if case.workload.key == "import":
            for row in case.rows:
                executable = env_pythons[row.env, case.python.version]
                run_child(executable, environs[row.env], child_args(case, row), timeout)
    for round_no in range(rounds):
        for case in cases:
            shift = round_no % len(case.rows)
            for row in case.rows[shift:] + case.rows[:shift]:
                executable = env_pythons[row.env, case.python.version]
                result = run_child(
                    executable, environs[row.env], child_args(case, row), timeout
                )
                runs.append(
                    {
                        "workload": case.workload.key,
                        "point": case.point.name,
                        "python": case.python.version,
                        "backend": case.backend,
                        "impl": row.name,
                        "env": row.env,
                        "n": case.n,
                        "workers": case.workers,
                        "round": round_no,
                        **result,
                    }
                )
                shown = result.get("error") or _brief(result["numbers"])
                print(
                    f"[{len(runs)}/{total} {time.monotonic() - started:4.0f}s] "
                    f"{case.workload.letter} {case.point.name or '-':18} py{case.python.version} "
                    f"{case.backend:7} {row.name:23} r{round_no}  {shown}",
                    file=sys.stderr,
                    flush=True,
                )

    if _source_fingerprint() != fingerprint:
        revision += " (antflow/ was edited during the run: its numbers mix versions)"

    def what(run: dict[str, Any]) -> str:
        return (
            f"{run['workload']} {run['point']} py{run['python']} {run['backend']} "
            f"{run['impl']} round {run['round']}: {run['error']}"
        )

    # A peer too slow to finish is a measurement; a hang of our own code, or a
    # crash or wrong result anywhere, is a failure.
    slow_peers = [r for r in runs if r.get("timed_out") and r["env"] != THIS]
    failures = [what(r) for r in runs if r.get("error") and r not in slow_peers]
    meta = {
        "mode": "quick" if args.quick else "full",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "runner_python": platform.python_version(),
        "pythons": [p.version for p in pythons],
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "sizes": {
            c.workload.key: c.workload.quick_size if args.quick else c.workload.size
            for c in cases
        },
        "backends": sorted({c.backend for c in cases} - {"-"}, key=BACKENDS.index),
        "workloads": [w.key for w in WORKLOADS if any(c.workload is w for c in cases)],
        "versions": _versions(runs),
        "antflow_revision": revision,
        "load_average": [load_before, _load()],
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures,
        "timed_out": [what(r) for r in slow_peers],
        "unavailable": unavailable,
        "left_out": left_out,
    }
    summary = summarize(runs)
    verdicts = judge_targets(summary, meta) if "antflow" not in args.skip else []
    markdown = render_markdown(meta, summary, verdicts)
    write_reports(args.out, meta, runs, summary, verdicts, markdown)
    print(markdown)
    return 1 if failures else 0


def _source_revision() -> str:
    """The commit antflow was measured at, "+dirty" when antflow/ had changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=REPO, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        commit = git("rev-parse", "--short", "HEAD") or "uncommitted"
        return commit + (
            "+dirty" if git("status", "--porcelain", "--", "antflow") else ""
        )
    except OSError:
        return "unknown"


def _load() -> float | None:
    """The 1-minute load average: above about 0.5 something else was running."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _source_fingerprint() -> str:
    """A hash of antflow/'s sources, to notice edits made while the runs went on."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "antflow").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _versions(runs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per Python, the versions of what its runs imported, as the children reported them."""
    found: dict[str, dict[str, str]] = {}
    for run in runs:
        reported = dict(run.get("versions", {}))
        reported.pop("antflow_file", None)
        if run["env"] != THIS and "antflow" in reported:
            reported["AntFlow (PyPI)"] = reported.pop("antflow")
        found.setdefault(run["python"], {}).update(reported)
    return found


def _brief(numbers: dict[str, Any]) -> str:
    keys = (
        "elapsed",
        "t_quick",
        "us_per_submit",
        "bytes_per_future",
        "import_s",
        "rate_ratio",
        "peak_rss",
    )
    return "  ".join(f"{k}={numbers[k]:.4g}" for k in keys if k in numbers)


if __name__ == "__main__":
    sys.exit(main())
