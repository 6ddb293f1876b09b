"""Developer tasks. ``nox`` alone runs what CI runs (the default sessions).

Interpreters: every CPython 3.11-3.13 found on PATH or under pyenv is tested;
a missing one is skipped, so a machine with only one Python still passes.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = [
    "tests",
    "tests_lowest",
    "lint",
    "typecheck",
    "docs",
    "bench_quick",
]
# A machine with one Python must still pass: missing versions are skipped.
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_DEPS = nox.project.dependency_groups(PYPROJECT, "test")
SUPPORTED = ("3.11", "3.12", "3.13")


def _runs(executable: str) -> bool:
    # A pyenv shim for an inactive version is on PATH but exits non-zero.
    try:
        done = subprocess.run([executable, "-c", ""], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _find_interpreter(version: str) -> str | None:
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}")
    )
    return next((c for c in candidates if c and _runs(c)), None)


def _installed_pythons() -> list[str]:
    found = {v: path for v in SUPPORTED if (path := _find_interpreter(v))}
    # Put each interpreter's own folder first on PATH, so nox resolves
    # "3.12" to the real binary rather than to an inactive pyenv shim.
    folders = [os.path.dirname(path) for path in found.values()]
    os.environ["PATH"] = os.pathsep.join([*folders, os.environ.get("PATH", "")])
    return list(found)


PYTHONS = _installed_pythons()
OLDEST = PYTHONS[0] if PYTHONS else None


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite on asyncio, uvloop and trio."""
    session.install("-e", ".[trio,uvloop,progress]", *TEST_DEPS)
    session.run("pytest", *session.posargs)


@nox.session(python=OLDEST)
def tests_lowest(session: nox.Session) -> None:
    """The suite against the oldest anyio, tenacity and trio we declare."""
    session.install("-e", ".", *TEST_DEPS)
    session.install("anyio==4.15.0", "tenacity==8.2.0", "trio==0.32.0")
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
    session.install("-e", ".[trio,progress]", "mypy", "pyright")
    session.run("mypy", "antflow", "tests/typing")
    session.run("pyright")


@nox.session(python=OLDEST)
def bench(session: nox.Session) -> None:
    """Benchmarks next to raw asyncio/anyio, aiometer and AntFlow 0.10 (not asserted).

    ``nox -s bench`` runs the full sizes; ``nox -s bench -- --quick`` the quick
    mode CI runs. Reports go to benchmarks/results/ (see benchmarks/README.md).
    """
    session.install("-e", ".[trio,uvloop]", "aiometer==1.0.0")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=OLDEST)
def bench_quick(session: nox.Session) -> None:
    """The benchmarks' quick mode, so the runner never rots (asserts no speed)."""
    session.install("-e", ".[trio,uvloop]", "aiometer==1.0.0")
    session.run("python", "benchmarks/run.py", "--quick", *session.posargs)


@nox.session(python=OLDEST)
def bench_pipeline(session: nox.Session) -> None:
    """A 3-stage pipeline over a million items, next to chained map_iter and
    AntFlow 0.10's Pipeline (benchmarks/pipeline.py; not asserted)."""
    session.install("-e", ".[trio,uvloop]")
    session.run("python", "benchmarks/pipeline.py", *session.posargs)


@nox.session(python=OLDEST)
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (into site/).

    Any warning fails the build: a broken link or anchor, a page missing from
    the navigation, a docstring mkdocstrings cannot render.
    ``nox -s docs -- -d /tmp/site`` builds elsewhere.
    """
    # ruff lets mkdocstrings format the signatures it shows.
    session.install("-e", ".", "mkdocs-material", "mkdocstrings[python]", "ruff")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )
