"""antflow: a concurrent.futures-style worker pool for asyncio and trio."""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._exceptions import AntFlowError, ExecutorFullError, ExecutorShutdownError
from ._executor import AsyncExecutor
from ._future import AsyncFuture
from ._options import MapOptions, TaskOptions
from ._rate import RateLimiter
from ._version import __version__
from ._wait import AsCompleted, WaitStrategy

if _TYPE_CHECKING:
    from ._cancelled import CancelledError
    from ._mapping import MapIterator
    from ._statistics import ExecutorStatistics
    from .offload import Offloader, RemoteError
    from .process import ProcessPool

__all__ = [
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
]

# Public classes say they live in ``antflow``, which is where users import
# them from, in reprs, tracebacks and the API docs.
for _public in (
    AntFlowError,
    AsCompleted,
    AsyncExecutor,
    AsyncFuture,
    ExecutorFullError,
    ExecutorShutdownError,
    MapOptions,
    RateLimiter,
    TaskOptions,
    WaitStrategy,
):
    _public.__module__ = __name__
del _public

#: Names loaded when first asked for, and the module that holds each. Each
#: costs more to import than it is used: CancelledError needs
#: concurrent.futures, ExecutorStatistics dataclasses, MapIterator the
#: mapping machinery, the offloaders anyio's process support.
_LAZY = {
    "CancelledError": "._cancelled",
    "ExecutorStatistics": "._statistics",
    "MapIterator": "._mapping",
    "Offloader": ".offload",
    "ProcessPool": ".process",
    "RemoteError": ".offload",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
