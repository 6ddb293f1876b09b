"""The venv holding AntFlow 0.10 from PyPI, which is imported as ``antflow`` like this repo.

Both packages answer to ``import antflow``, so AntFlow 0.10 lives in a venv of
its own (``benchmarks/.venvs/``, git-ignored), made from the runner's own
interpreter so both sides run on the same Python. Children that run it start
with that venv's ``python`` and never see this repository on ``sys.path``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REQUIREMENT = "antflow==0.10.0"
DEFAULT_DIR = Path(__file__).resolve().parent / ".venvs" / "antflow-0.10"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def installed_version(python: Path) -> str | None:
    """The AntFlow version ``python`` imports, or None when it has none."""
    probe = "import antflow; print(antflow.__version__)"
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, cwd="/", check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def ensure(venv: Path = DEFAULT_DIR) -> Path:
    """Create ``venv`` with AntFlow 0.10 in it unless it is there; return its python."""
    python = venv_python(venv)
    if python.exists() and installed_version(python) == "0.10.0":
        return python
    print(f"creating {venv} with {REQUIREMENT} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        check=True,
    )
    version = installed_version(python)
    if version != "0.10.0":
        raise RuntimeError(f"{venv} imports antflow {version!r}, not 0.10.0")
    return python
