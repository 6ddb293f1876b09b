"""Interpreters and the virtual environments the runs start in.

A run starts in one *environment*: ``this`` (the runner's own packages, with
this repository on ``PYTHONPATH``) or the venv of one package from PyPI. The
peers get venvs of their own because their import names clash (AntFlow 0.10
is imported as ``antflow``, like this repository) or because they need another
Python (aiolibs-executor needs 3.13). Each venv is made once, under
``benchmarks/.venvs/<env>-<python>`` (git-ignored), and reused while the
requirements written in it still match.

Every venv gets the runner's own versions of anyio, trio and uvloop (where the
environment runs on them), so a peer never runs on another event loop build
than antflow beside it. On an interpreter other than the runner's, ``this``
is a venv too, holding this repository's dependencies at the runner's
versions; antflow itself always comes from the checkout.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_ROOT = HERE / ".venvs"
SUPPORTED = ("3.11", "3.12", "3.13")
THIS = "this"

# Whatever pip does, a missing registry must not stall a quick run for long.
PIP_TIMEOUT_S = 300


@dataclass(frozen=True)
class Env:
    """An environment runs start in: the packages it installs and what it sees."""

    name: str
    requirements: tuple[str, ...]
    """pip requirements besides the pinned backends (markers allowed)."""
    pinned: tuple[str, ...]
    """Packages installed at the runner's own version: the backends it runs on."""
    probe: str
    """A module whose import proves the environment works."""
    min_python: tuple[int, int] = (3, 11)
    sees_repo: bool = False
    """True: this repository goes on PYTHONPATH (its antflow is imported)."""


ENVS = {
    env.name: env
    for env in (
        Env(
            THIS,
            (),
            ("anyio", "tenacity", "trio", "uvloop", "aiometer"),
            "anyio",
            sees_repo=True,
        ),
        # AntFlow 0.10 is built on asyncio alone; uvloop comes with it.
        Env("antflow-0.10", ("antflow==0.10.0",), ("uvloop",), "antflow"),
        Env(
            "anyio-executor",
            ("anyio-executor==0.1.1",),
            ("anyio", "trio", "uvloop"),
            "anyio_executor",
        ),
        Env(
            "asyncio-pool-ng",
            # 0.9.0 needs Python 3.12; 0.8.1 is the same pool for 3.11.
            (
                'asyncio-pool-ng==0.9.0; python_version >= "3.12"',
                'asyncio-pool-ng==0.8.1; python_version < "3.12"',
            ),
            ("uvloop",),
            "asyncio_pool",
        ),
        Env(
            "aiolibs-executor",
            ("aiolibs-executor==0.0.0",),
            ("uvloop",),
            "aiolibs_executor",
            min_python=(3, 13),
        ),
    )
}


@dataclass(frozen=True)
class Interpreter:
    version: str
    """"3.11", "3.12", ..."""
    path: str
    own: bool
    """True for the interpreter running the runner (its packages are ``this``)."""

    @property
    def version_info(self) -> tuple[int, int]:
        major, minor = self.version.split(".")
        return int(major), int(minor)


def _runs(executable: str) -> bool:
    # A pyenv shim for an inactive version is on PATH but exits non-zero.
    try:
        done = subprocess.run([executable, "-c", ""], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def find_interpreters(wanted: list[str] | None) -> list[Interpreter]:
    """The runner's own Python, and CPython ``wanted`` versions found on PATH or under pyenv.

    ``None`` means just the runner's own; ``["all"]`` every supported version
    found. A version asked for by name but not found is an error.
    """
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted is None:
        wanted = [own]
    explicit = wanted != ["all"]
    versions = wanted if explicit else list(SUPPORTED)
    found: list[Interpreter] = []
    for version in versions:
        if version == own:
            found.append(Interpreter(own, sys.executable, own=True))
            continue
        path = _find(version)
        if path is not None:
            found.append(Interpreter(version, path, own=False))
        elif explicit:
            sys.exit(f"no Python {version} found on PATH or under pyenv")
    return sorted(found, key=lambda i: i.version_info)


def _find(version: str) -> str | None:
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}")
    )
    return next((c for c in candidates if c and _runs(c)), None)


def pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each package the runner itself has installed."""
    found: list[str] = []
    for name in names:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(name)  # the runner lacks it: take what pip finds
    return found


def child_environ(env: Env) -> dict[str, str]:
    """The process environment of a child: this repository on the path, or not."""
    environ = dict(os.environ)
    environ.pop("PYTHONHOME", None)
    if env.sees_repo:
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), environ.get("PYTHONPATH")])
        )
    else:
        environ.pop("PYTHONPATH", None)  # a peer must never see this antflow
    return environ


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def ensure(env: Env, interpreter: Interpreter, root: Path) -> str:
    """The python executable for ``env`` on ``interpreter``, made when missing.

    Raises:
        RuntimeError: the venv could not be made (no registry, no such
            version for this Python); the message says why.
    """
    if env.name == THIS and interpreter.own:
        return sys.executable
    venv = root / f"{env.name}-{interpreter.version}"
    python = venv_python(venv)
    wanted = "\n".join([*env.requirements, *pins(env.pinned)]) + "\n"
    stamp = venv / "bench-requirements.txt"
    ready = python.exists() and stamp.exists() and stamp.read_text() == wanted
    if ready and _imports(python, env):
        return str(python)
    print(f"creating {venv} ...", file=sys.stderr, flush=True)
    try:
        _create(interpreter.path, venv, wanted)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"could not make {venv.name}: {_why(error)}") from None
    if not _imports(python, env):
        raise RuntimeError(f"{venv.name} was made, but `import {env.probe}` fails")
    stamp.write_text(wanted)
    return str(python)


def _create(base_python: str, venv: Path, requirements: str) -> None:
    requirements_file = venv.parent / f"{venv.name}.requirements.txt"
    venv.parent.mkdir(parents=True, exist_ok=True)
    requirements_file.write_text(requirements)
    pip_options = ["--quiet", "--disable-pip-version-check", "--timeout", "20"]
    try:
        if importlib.util.find_spec("pip") is not None:
            # The runner's pip installs into a venv made without one: about
            # 4 s faster per venv than bootstrapping pip in each.
            subprocess.run(
                [base_python, "-m", "venv", "--clear", "--without-pip", str(venv)],
                check=True,
                timeout=PIP_TIMEOUT_S,
            )
            installer = [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv_python(venv)),
            ]
        else:
            subprocess.run(
                [base_python, "-m", "venv", "--clear", str(venv)],
                check=True,
                timeout=PIP_TIMEOUT_S,
            )
            installer = [str(venv_python(venv)), "-m", "pip"]
        subprocess.run(
            [*installer, "install", *pip_options, "-r", str(requirements_file)],
            check=True,
            timeout=PIP_TIMEOUT_S,
            capture_output=True,
            text=True,
        )
    finally:
        requirements_file.unlink(missing_ok=True)


def _imports(python: Path, env: Env) -> bool:
    done = subprocess.run(
        [str(python), "-c", f"import {env.probe}"],
        capture_output=True,
        cwd="/",
        env=child_environ(env),
        check=False,
    )
    return done.returncode == 0


def _why(error: subprocess.CalledProcessError | subprocess.TimeoutExpired) -> str:
    if isinstance(error, subprocess.TimeoutExpired):
        return f"timed out after {error.timeout:.0f} s"
    lines = [
        line
        for line in (error.stderr or "").splitlines()
        if line.strip() and not line.startswith("WARNING")
    ]
    return lines[-1] if lines else f"exit {error.returncode}"
