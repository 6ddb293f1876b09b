"""How an offloaded call travels to another process and comes back.

The driver packs a call with `pack_call` into bytes, the engine (anyio's
worker processes, a Dask worker) runs `run_call` on those bytes elsewhere, and
the driver turns the bytes it gets back into a value or an exception with
`unpack_outcome`. Both directions use cloudpickle when it is installed, so
lambdas, closures and functions defined in ``__main__`` travel by value, and
the standard pickle otherwise.

The engine only ever sees ``run_call`` (a module-level function, pickled by
reference) and bytes, which is why the same shim serves every engine and why
nothing here depends on how the engine itself pickles:

* a job that raises comes back as its own exception, with the remote
  traceback attached as a note (pickling drops tracebacks);
* an exception that would not survive the trip back (its ``__init__`` takes
  arguments its ``args`` do not hold, it holds a lock, ...) is replaced, in
  the worker, by a `RemoteError` that keeps its type name, message and
  traceback;
* an ``async def`` job runs under ``anyio.run`` in the worker, on the
  driver's backend;
* what the job prints can be captured and replayed in the driver.

Everything here is imported in every worker process, so it stays light.
"""

from __future__ import annotations

import importlib
import io
import os
import pickle
import platform
import sys
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Any

from ._exceptions import AntFlowError

_cloudpickle: Any
try:  # an optional extra (antflow[process], antflow[dask]), untyped
    _cloudpickle = importlib.import_module("cloudpickle")
except ImportError:  # pragma: no cover - exercised by the no-cloudpickle test
    _cloudpickle = None


class RemoteError(AntFlowError):
    """A job failed in another process with an exception that could not come back.

    The job's own exception is raised in the driver whenever it can be
    pickled there and back. When it cannot (say, its ``__init__`` needs
    arguments that ``args`` does not hold), this stand-in is raised instead.
    A job that raises a ``BaseException`` that is not an ``Exception``
    (``SystemExit``, ``KeyboardInterrupt``) also comes back as a
    `RemoteError`, so a worker's exit never stops the driver.

    Attributes:
        type_name: The qualified name of the original exception's type, such
            as ``"mymodule.ParseError"``.
        message: ``str()`` of the original exception.
        remote_traceback: The traceback formatted in the worker.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


@dataclass(frozen=True)
class Setup:
    """Run once per worker process before its first job of one offloader."""

    key: str  # tells offloaders apart, since anyio's workers are shared
    initializer: Callable[..., object]
    initargs: tuple[Any, ...] = ()


@dataclass
class Call:
    """One attempt of ``fn(*args, **kwargs)``, as it travels."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    backend: str = "asyncio"  # runs an async job
    capture_output: bool = False
    own_process: bool = False  # the worker is a process of its own (not a thread)
    setup: Setup | None = None


@dataclass
class Outcome:
    """What came back: a value or an exception, and where it happened."""

    ok: bool
    value: Any
    where: str
    remote_traceback: str = ""
    stdout: str = ""
    stderr: str = ""


def dumps(obj: object, *, by_value: bool = False) -> bytes:
    """Pickle ``obj``: by reference where the standard pickle can, else cloudpickle.

    The standard pickle goes first because it is faster and keeps functions
    what they are (a traceback through them names their real file, and an
    exception class comes back as the very class the driver has), and
    anyio's workers can import everything the driver can, its ``__main__``
    included. ``by_value`` goes straight to cloudpickle, for workers (Dask's)
    that have no copy of the driver's ``__main__``.
    """
    if by_value and _cloudpickle is not None:
        return bytes(_cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if _cloudpickle is None:
            raise
    return bytes(_cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def has_cloudpickle() -> bool:
    return _cloudpickle is not None


def pack_call(call: Call, *, by_value: bool = False) -> bytes:
    """Pickle ``call`` in the driver, or say clearly why it cannot travel.

    ``by_value``: see `dumps`.

    Raises:
        pickle.PicklingError: the function or an argument cannot be pickled;
            the message names the function and, without cloudpickle, says
            that installing it lets lambdas and closures travel.
    """
    try:
        return dumps(call, by_value=by_value)
    except Exception as error:
        name = getattr(call.fn, "__qualname__", repr(call.fn))
        hint = (
            ""
            if _cloudpickle is not None
            else " (lambdas, closures and nested functions need cloudpickle:"
            " pip install 'antflow[process]'; or use a module-level function)"
        )
        raise pickle.PicklingError(
            f"cannot send {name} and its arguments to another process: {error}{hint}"
        ) from error


# -- in the worker ---------------------------------------------------------------

_ready: set[str] = set()  # the setups this worker process has run
_sigint_ignored = False


def run_call(payload: bytes) -> bytes:
    """Run one packed call in this worker and pack its outcome. Never raises."""
    where = f"process {os.getpid()} on {platform.node()}"
    out = io.StringIO()
    err = io.StringIO()
    try:
        call: Call = pickle.loads(payload)
    except BaseException as error:
        error.add_note("(raised while unpickling the job in the worker)")
        return _pack_failure(error, where, out, err)
    if call.own_process:
        _ignore_sigint()
    try:
        if call.capture_output:
            with redirect_stdout(out), redirect_stderr(err):
                value = _call(call)
        else:
            value = _call(call)
    except BaseException as error:
        return _pack_failure(error, where, out, err)
    outcome = Outcome(True, value, where, stdout=out.getvalue(), stderr=err.getvalue())
    try:
        return dumps(outcome)
    except Exception as error:
        error.add_note(f"(raised while pickling the result, a {type(value).__name__})")
        return _pack_failure(error, where, out, err)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the driver handles it (its
    # cancellation kills running workers), so an idle worker must not answer
    # it with a stray reply on the pipe.
    global _sigint_ignored
    if not _sigint_ignored:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _sigint_ignored = True


def _call(call: Call) -> Any:
    setup = call.setup
    if setup is not None and setup.key not in _ready:
        setup.initializer(*setup.initargs)
        _ready.add(setup.key)
    result = call.fn(*call.args, **call.kwargs)
    if hasattr(result, "__await__"):
        import anyio

        async def finish() -> Any:
            return await result

        return anyio.run(finish, backend=call.backend)
    return result


def _pack_failure(
    error: BaseException, where: str, out: io.StringIO, err: io.StringIO
) -> bytes:
    # The shim's own frames say nothing about the job: start at the job's.
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename == __file__:
        frames = frames.tb_next
    remote_tb = "".join(traceback.format_exception(type(error), error, frames))
    sent: BaseException = error
    if not isinstance(error, Exception) or not _survives_pickling(error):
        sent = RemoteError(_type_name(error), str(error), remote_tb)
    outcome = Outcome(
        False, sent, where, remote_tb, stdout=out.getvalue(), stderr=err.getvalue()
    )
    try:
        return dumps(outcome)
    except Exception:  # the captured output or the note did not pickle
        stand_in = RemoteError(_type_name(error), str(error), remote_tb)
        return dumps(Outcome(False, stand_in, where, remote_tb))


def _survives_pickling(error: BaseException) -> bool:
    try:
        pickle.loads(dumps(error))
    except Exception:
        return False
    return True


def _type_name(error: BaseException) -> str:
    kind = type(error)
    module = kind.__module__
    return (
        kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    )


# -- back in the driver ------------------------------------------------------------


def unpack_outcome(data: bytes, fn: Callable[..., Any]) -> Outcome:
    """Unpickle what a worker sent back, or a failed outcome that says why not."""
    # A worker runs the driver's script as ``__mp_main__`` (as multiprocessing
    # does), so what it defines comes back under that name.
    main = sys.modules.get("__main__")
    if main is not None and sys.modules.get("__mp_main__") is not main:
        sys.modules["__mp_main__"] = main
    try:
        outcome: Outcome = pickle.loads(data)
    except Exception as error:
        name = getattr(fn, "__qualname__", repr(fn))
        stand_in = RemoteError(
            _type_name(error),
            f"the outcome of {name} could not be unpickled in the driver: {error}",
            "",
        )
        return Outcome(False, stand_in, "the driver")
    return outcome


def raise_failure(outcome: Outcome) -> Any:
    """Raise a failed outcome's exception with the remote traceback as a note."""
    error = outcome.value
    assert isinstance(error, BaseException)
    if outcome.remote_traceback:
        error.add_note(
            f"\nRemote traceback ({outcome.where}):\n{outcome.remote_traceback.rstrip()}"
        )
    try:
        raise error
    finally:
        del error
