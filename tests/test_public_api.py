"""The public surface: names, where they say they live, the exception tree."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
from types import ModuleType

import antflow

EXPECTED = {
    "AntFlowError",
    "AsCompleted",
    "AsyncExecutor",
    "AsyncFuture",
    "CancelledError",
    "ExecutorFullError",
    "ExecutorShutdownError",
    "ExecutorStatistics",
    "MapIterator",
    "MapOptions",
    "Offloader",
    "ProcessPool",
    "RateLimiter",
    "RemoteError",
    "TaskOptions",
    "WaitStrategy",
    "__version__",
}
#: Public names that live in public modules of their own.
IN_THEIR_OWN_MODULE = {
    "Offloader": "antflow.offload",
    "ProcessPool": "antflow.process",
    "RemoteError": "antflow.offload",
}


def test_all_is_the_public_api() -> None:
    assert set(antflow.__all__) == EXPECTED
    assert antflow.__all__ == sorted(antflow.__all__)
    # Submodules (antflow.process, antflow.dask, antflow.pipeline, ...) appear
    # as attributes once something imports them; they are public modules, not
    # names.
    public = {
        name
        for name in dir(antflow)
        if not name.startswith("_")
        and not isinstance(getattr(antflow, name), ModuleType)
    }
    assert public == EXPECTED - {"__version__"}


def test_public_classes_say_they_live_in_antflow() -> None:
    for name in EXPECTED - {"__version__"}:
        module = IN_THEIR_OWN_MODULE.get(name, "antflow")
        assert getattr(antflow, name).__module__ == module, name


def test_exception_tree() -> None:
    """ExecutorShutdownError is an AntFlowError and a RuntimeError;
    CancelledError is concurrent.futures.CancelledError, an Exception
    (docs/semantics.md, "Exceptions", the exception tree)."""
    assert issubclass(antflow.ExecutorShutdownError, antflow.AntFlowError)
    assert issubclass(antflow.ExecutorShutdownError, RuntimeError)
    assert issubclass(antflow.CancelledError, concurrent.futures.CancelledError)
    assert issubclass(antflow.CancelledError, Exception)
    assert issubclass(antflow.AntFlowError, Exception)


def test_version_is_a_string() -> None:
    assert isinstance(antflow.__version__, str)
    assert antflow.__version__.count(".") == 2


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("antflow").joinpath("py.typed").is_file()


def test_import_loads_neither_tenacity_nor_trio() -> None:
    """Importing antflow stays cheap: tenacity loads on the first retry,
    trio only on trio."""
    code = (
        "import sys, antflow; print('tenacity' in sys.modules, 'trio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_the_library_attaches_no_log_handlers() -> None:
    import logging

    assert logging.getLogger("antflow").handlers == []
