"""Developer tasks. ``nox`` alone runs what CI runs (the default sessions).

Interpreters: every CPython version the project's classifiers name is tested
where one is found, on PATH or under pyenv (``~/.pyenv/versions``); a missing
one is skipped, so a machine with only one Python still passes. Nothing here
changes the environment: each interpreter is handed to nox by its path.
Sessions run on one Python (lint, docs, ...) use the oldest found.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

import nox
from packaging.requirements import Requirement

nox.options.default_venv_backend = "venv"
nox.options.sessions = [
    "tests",
    "tests_lowest",
    "lint",
    "typecheck",
    "docs",
    "bench_quick",
    "dask",
    "ray",
]
# A machine with one Python must still pass: missing versions are skipped.
nox.options.error_on_missing_interpreters = False
# Interpreters come from this machine only; nothing is downloaded.
nox.options.download_python = "never"

PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_DEPS = nox.project.dependency_groups(PYPROJECT, "test")
#: From the trove classifiers ("Programming Language :: Python :: 3.11", ...).
SUPPORTED = nox.project.python_versions(PYPROJECT)


def _runs(executable: str) -> bool:
    # A pyenv shim for an inactive version is on PATH but exits non-zero.
    try:
        done = subprocess.run([executable, "-c", ""], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _interpreter(version: str) -> str | None:
    """The path of a working CPython ``version``, or None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        candidates = [sys.executable]  # the one running nox
    else:
        candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}")
    )
    return next((c for c in candidates if c and _runs(c)), None)


#: Version -> interpreter path, for the supported versions found here.
INTERPRETERS = {v: path for v in SUPPORTED if (path := _interpreter(v))}
OLDEST = next(iter(INTERPRETERS.values()), None)


def _lowest_pins() -> list[str]:
    """``name==floor`` for each runtime dependency (and trio), from the ``>=``
    bounds pyproject.toml declares: what ``tests_lowest`` installs."""
    project = PYPROJECT["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["trio"]]
    pins = []
    for text in declared:
        requirement = Requirement(text)
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        if floors:
            pins.append(f"{requirement.name}=={floors[0]}")
    return pins


@nox.session
@nox.parametrize("python", list(INTERPRETERS.values()), ids=list(INTERPRETERS))
def tests(session: nox.Session) -> None:
    """The whole suite on asyncio, uvloop and trio."""
    session.install("-e", ".[trio,uvloop,progress,otel,timeline]", *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session(python=OLDEST)
def dask(session: nox.Session) -> None:
    """Offloading with its extras: DaskPool's tests and the docs' Dask examples
    (the main suite skips them), and ProcessPool's tests with cloudpickle (the
    main suite runs them without)."""
    session.install("-e", ".[trio,uvloop,dask]", *TEST_DEPS)
    session.run(
        "pytest",
        "tests/test_dask.py",
        "tests/test_process.py",
        "tests/docs/test_docs.py",
        *session.posargs,
    )


@nox.session(python=OLDEST)
def ray(session: nox.Session) -> None:
    """The Ray recipe of docs/scaling-out.md, run as printed and checked on
    asyncio, uvloop and trio (tests/test_ray_recipe.py; the main suite skips
    it). Ray is large (about 240 MB) and starts in seconds, hence a session of
    its own, pinned to the version the page was checked with."""
    session.install("-e", ".[trio,uvloop]", "ray==2.60.0", "psutil", *TEST_DEPS)
    session.run("pytest", "tests/test_ray_recipe.py", *session.posargs)


@nox.session(python=OLDEST)
def tests_lowest(session: nox.Session) -> None:
    """The suite against the oldest versions of our dependencies that
    pyproject.toml declares (anyio, tenacity, trio)."""
    session.install("-e", ".", *TEST_DEPS)
    session.install(*_lowest_pins())
    session.run("pytest", *session.posargs)


@nox.session(python=OLDEST)
def lint(session: nox.Session) -> None:
    """ruff: style, imports, bugbear, flake8-async."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=OLDEST)
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) on the package and tests/typing."""
    session.install("-e", ".[trio,progress,otel,timeline]", "mypy", "pyright")
    session.run("mypy", "antflow", "tests/typing")
    session.run("pyright")


@nox.session(python=OLDEST)
def bench(session: nox.Session) -> None:
    """Benchmarks next to hand-written baselines and the peers on PyPI (not asserted).

    ``nox -s bench`` runs the full sizes on every Python 3.11-3.13 found;
    ``nox -s bench -- --quick`` the quick mode CI runs. The runner makes the
    peers' venvs itself. Reports go to benchmarks/results/ (see
    benchmarks/README.md).
    """
    session.install("-e", ".[trio,uvloop]", "aiometer==1.0.0")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=OLDEST)
def bench_quick(session: nox.Session) -> None:
    """The benchmarks' quick mode, so the runner never rots (asserts no speed)."""
    session.install("-e", ".[trio,uvloop]", "aiometer==1.0.0")
    session.run("python", "benchmarks/run.py", "--quick", *session.posargs)


@nox.session(python=OLDEST)
def bench_plots(session: nox.Session) -> None:
    """The Performance page's figures (docs/images/) from a benchmark run's JSON.

    Reads benchmarks/results/latest.json; ``nox -s bench_plots -- FILE`` reads
    another run. matplotlib is installed here only.
    """
    session.install("matplotlib")
    session.run("python", "benchmarks/plots.py", *session.posargs)


@nox.session(python=OLDEST)
def bench_pipeline(session: nox.Session) -> None:
    """A 3-stage pipeline over a million items, next to chained map_iter and
    AntFlow 0.10's Pipeline (benchmarks/pipeline.py; not asserted)."""
    session.install("-e", ".[trio,uvloop]")
    session.run("python", "benchmarks/pipeline.py", *session.posargs)


@nox.session(python=OLDEST)
def pipeline_stress(session: nox.Session) -> None:
    """Pipelines at full size: 1,000,000 items in bounded memory and the
    SIGKILL stress test, on asyncio, uvloop and trio (not a default session:
    some 10 minutes on 2 cores; the default suite runs them smaller)."""
    session.install("-e", ".[trio,uvloop]", *TEST_DEPS)
    session.run(
        "pytest",
        "-rP",
        "tests/stress/test_pipeline_memory.py",
        "tests/faults/test_pipeline_kill.py",
        *session.posargs,
        env={"ANTFLOW_PIPELINE_STRESS": "1"},
    )


@nox.session(python=OLDEST)
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (into site/).

    Any warning fails the build: a broken link or anchor, a page missing from
    the navigation, a docstring mkdocstrings cannot render.
    ``nox -s docs -- -d /tmp/site`` builds elsewhere. First the Observability
    page's timelines are drawn again from real runs (docs/make_timelines.py:
    trio's mock clock, so a few seconds and no network).
    """
    # ruff lets mkdocstrings format the signatures it shows.
    session.install(
        "-e", ".[trio,timeline]", "mkdocs-material", "mkdocstrings[python]", "ruff"
    )
    session.run("python", "docs/make_timelines.py")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
