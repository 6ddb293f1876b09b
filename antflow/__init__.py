"""antflow: a concurrent.futures-style worker pool for asyncio and trio."""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._exceptions import AntFlowError, ExecutorShutdownError
from ._executor import AsyncExecutor
from ._future import AsyncFuture
from ._rate import RateLimiter
from ._version import __version__
from ._wait import WaitStrategy

if _TYPE_CHECKING:
    from ._cancelled import CancelledError
    from ._statistics import ExecutorStatistics

__all__ = [
    "AntFlowError",
    "AsyncExecutor",
    "AsyncFuture",
    "CancelledError",
    "ExecutorShutdownError",
    "ExecutorStatistics",
    "RateLimiter",
    "WaitStrategy",
    "__version__",
]

# Public classes say they live in ``antflow``, which is where users import
# them from, in reprs, tracebacks and the API docs.
for _public in (
    AntFlowError,
    AsyncExecutor,
    AsyncFuture,
    ExecutorShutdownError,
    RateLimiter,
    WaitStrategy,
):
    _public.__module__ = __name__
del _public


def __getattr__(name: str) -> _Any:
    # Loaded when first asked for: CancelledError needs concurrent.futures and
    # ExecutorStatistics needs dataclasses, which together would cost as much
    # to import as the rest of antflow.
    if name == "CancelledError":
        from ._cancelled import CancelledError

        return CancelledError
    if name == "ExecutorStatistics":
        from ._statistics import ExecutorStatistics

        return ExecutorStatistics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
