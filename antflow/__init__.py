"""antflow: a concurrent.futures-style worker pool for asyncio and trio."""

from ._exceptions import AntFlowError, CancelledError, ExecutorShutdownError
from ._executor import AsyncExecutor
from ._future import AsyncFuture
from ._rate import RateLimiter
from ._statistics import ExecutorStatistics
from ._version import __version__
from ._wait import WaitStrategy

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
    CancelledError,
    ExecutorShutdownError,
    ExecutorStatistics,
    RateLimiter,
    WaitStrategy,
):
    _public.__module__ = __name__
del _public
