"""Benchmark antflow against raw asyncio, raw anyio, aiometer and AntFlow 0.10.

Usage::

    nox -s bench                 # full sizes, 3 rounds
    nox -s bench -- --quick      # smaller sizes, 1 round (what CI runs)
    python benchmarks/run.py --quick --workloads a,c --backends trio

Every run is a fresh process (``child.py``) so imports, allocator state and
peak RSS never leak from one case into the next. Within a round the
implementations of a case run back to back, and each round starts the list at
a different place, so slow drift of the machine spreads over all of them.
Results go to ``benchmarks/results/`` as JSON and markdown; the markdown is
printed too. The runner asserts nothing about speed: it exits non-zero only
when a run crashed or returned a wrong result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import antflow010_env
from catalog import (
    ANTFLOW_010,
    BACKENDS,
    IMPLS,
    IMPORTS,
    THIS,
    WORKLOADS,
    WORKLOADS_BY_KEY,
    Workload,
)
from report import judge_targets, render_markdown, summarize

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "child.py"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and one round"
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds per case (default: 3, quick: 1)"
    )
    parser.add_argument(
        "--workloads", help="comma-separated letters or names, e.g. a,c,import"
    )
    parser.add_argument(
        "--backends", help="comma-separated subset of " + ",".join(BACKENDS)
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out an implementation or import row, e.g. antflow-0.10 (repeatable)",
    )
    parser.add_argument(
        "--antflow010-venv",
        type=Path,
        default=antflow010_env.DEFAULT_DIR,
        help="venv for AntFlow 0.10, created when missing (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where reports go"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds before a run counts as hung"
    )
    return parser.parse_args(argv)


def child_env(python_kind: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    if python_kind == ANTFLOW_010:
        env.pop("PYTHONPATH", None)  # must not see this repository's antflow
    else:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), env.get("PYTHONPATH")])
        )
    return env


def run_child(
    python: str, env: dict[str, str], args: list[str], timeout: float
) -> dict[str, Any]:
    """Run child.py once; its last stdout line is the JSON it measured."""
    try:
        done = subprocess.run(
            [python, str(CHILD), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=HERE,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    numbers = json.loads(lines[-1])
    return {"numbers": numbers, "versions": numbers.pop("versions", {})}


def compile_this_antflow(python: str) -> None:
    """Byte-compile this repository's antflow before any run.

    Every other package here was byte-compiled when pip installed it; this
    one is imported from the checkout. Where ``PYTHONDONTWRITEBYTECODE`` is
    set (as on our CI machines), it would otherwise be compiled from source
    in every run: about 12 ms more per ``import antflow``, and the lazily
    imported modules compiled inside the timed workloads.
    """
    subprocess.run(
        [python, "-m", "compileall", "-q", str(REPO / "antflow")],
        check=True,
        env=child_env(THIS),
    )


def check_this_antflow(python: str) -> None:
    """Fail early, with the reason, when this repository's antflow does not import."""
    probe = "import antflow, sys; antflow.AsyncExecutor; print(antflow.__file__)"
    done = subprocess.run(
        [python, "-c", probe],
        capture_output=True,
        text=True,
        env=child_env(THIS),
        cwd=HERE,
    )
    if done.returncode != 0:
        sys.exit(
            f"this repository's antflow does not import:\n{done.stderr}\n(--skip antflow to go on without it)"
        )
    if not Path(done.stdout.strip()).resolve().is_relative_to(REPO):
        sys.exit(f"antflow imports from {done.stdout.strip()}, not from {REPO}")


def plan(args: argparse.Namespace) -> tuple[list[Workload], list[str]]:
    keys = args.workloads.split(",") if args.workloads else [w.key for w in WORKLOADS]
    unknown = [k for k in keys if k not in WORKLOADS_BY_KEY]
    backends = args.backends.split(",") if args.backends else list(BACKENDS)
    if unknown or not set(backends) <= set(BACKENDS):
        sys.exit(f"unknown workload or backend: {unknown or backends}")
    chosen = {WORKLOADS_BY_KEY[k].key for k in keys}
    return [w for w in WORKLOADS if w.key in chosen], backends


def cases(
    workloads: list[Workload], backends: list[str], skip: set[str]
) -> list[tuple[Workload, str, list[Any]]]:
    """Every (workload, backend) with the implementations (or import rows) it compares."""
    found: list[tuple[Workload, str, list[Any]]] = []
    for workload in workloads:
        if workload.key == "import":
            rows = [row for row in IMPORTS if row.name not in skip]
            found.append((workload, "-", rows))
            continue
        for backend in backends:
            impls = [
                impl
                for impl in IMPLS
                if impl.name not in skip
                and backend in impl.backends
                and workload.key in impl.workloads
            ]
            if impls:
                found.append((workload, backend, impls))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    timeout = args.timeout or (120.0 if args.quick else 600.0)
    workloads, backends = plan(args)
    skip = set(args.skip)
    sizes = {w.key: w.quick_size if args.quick else w.size for w in workloads}

    pythons = {THIS: sys.executable}
    if "antflow" not in skip:
        check_this_antflow(sys.executable)
        compile_this_antflow(sys.executable)
    if ANTFLOW_010 not in skip:
        pythons[ANTFLOW_010] = str(antflow010_env.ensure(args.antflow010_venv))
    envs = {kind: child_env(kind) for kind in pythons}

    todo = cases(workloads, backends, skip)
    total = rounds * sum(len(rows) for _, _, rows in todo)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    revision, fingerprint = _source_revision(), _source_fingerprint()
    load_before = _load()

    def one(workload: Workload, backend: str, row: Any) -> dict[str, Any]:
        if workload.key == "import":
            child_args = ["import", row.module]
        else:
            size, workers = sizes[workload.key], workload.workers
            child_args = [
                "run",
                row.module,
                workload.key,
                backend,
                str(size),
                str(workers),
            ]
        return run_child(pythons[row.python], envs[row.python], child_args, timeout)

    # Import times should not include compiling bytecode: one unrecorded run each.
    for workload, backend, rows in todo:
        if workload.key == "import":
            for row in rows:
                one(workload, backend, row)
    for round_no in range(rounds):
        for workload, backend, rows in todo:
            shift = round_no % len(rows)
            for row in rows[shift:] + rows[:shift]:
                result = one(workload, backend, row)
                runs.append(
                    {
                        "workload": workload.key,
                        "backend": backend,
                        "impl": row.name,
                        "python": row.python,
                        "round": round_no,
                        **result,
                    }
                )
                shown = result.get("error") or _brief(result["numbers"])
                print(
                    f"[{len(runs)}/{total} {time.monotonic() - started:4.0f}s] "
                    f"{workload.letter} {backend:7} {row.name:18} r{round_no}  {shown}",
                    file=sys.stderr,
                    flush=True,
                )

    if _source_fingerprint() != fingerprint:
        revision += " (antflow/ was edited during the run: its numbers mix versions)"
    failures = [
        f"{r['workload']} {r['backend']} {r['impl']} round {r['round']}: {r['error']}"
        for r in runs
        if r.get("error")
    ]
    meta = {
        "mode": "quick" if args.quick else "full",
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "sizes": sizes,
        "backends": backends,
        "versions": _versions(runs),
        "antflow_revision": revision,
        "load_average": [load_before, _load()],
        "seconds": round(time.monotonic() - started, 1),
        "failures": failures,
    }
    summary = summarize(runs)
    verdicts = judge_targets(summary, sizes, backends) if "antflow" not in skip else []
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


def _versions(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Versions of what the runs imported, as the children reported them."""
    found: dict[str, str] = {}
    for run in runs:
        reported = run.get("versions", {})
        if run["python"] == THIS:
            found.update({k: v for k, v in reported.items() if k != "antflow_file"})
        elif "antflow" in reported:
            found["AntFlow (PyPI)"] = reported["antflow"]
    return found


def _brief(numbers: dict[str, Any]) -> str:
    keys = (
        "elapsed",
        "t_quick",
        "us_per_submit",
        "bytes_per_future",
        "import_s",
        "peak_rss",
    )
    return "  ".join(f"{k}={numbers[k]:.4g}" for k in keys if k in numbers)


def write_reports(
    out: Path,
    meta: dict[str, Any],
    runs: list[dict[str, Any]],
    summary: dict[tuple[str, str, str], dict[str, float]],
    verdicts: list[dict[str, Any]],
    markdown: str,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{meta['mode']}"
    document = {
        "meta": meta,
        "targets": verdicts,
        "summary": [
            {"workload": w, "backend": b, "impl": i, **numbers}
            for (w, b, i), numbers in sorted(summary.items())
        ],
        "runs": runs,
    }
    for name in (stem, "latest"):
        (out / f"{name}.json").write_text(json.dumps(document, indent=1) + "\n")
        (out / f"{name}.md").write_text(markdown)
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
