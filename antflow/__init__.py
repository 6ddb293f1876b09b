"""antflow: a concurrent.futures-style worker pool for asyncio and trio."""

from ._exceptions import AntFlowError, CancelledError, ExecutorShutdownError
from ._executor import AsyncExecutor
from ._future import AsyncFuture
from ._version import __version__
from ._wait import WaitStrategy

__all__ = [
    "AntFlowError",
    "AsyncExecutor",
    "AsyncFuture",
    "CancelledError",
    "ExecutorShutdownError",
    "WaitStrategy",
    "__version__",
]

# Public classes say they live in ``antflow``, which is where users import
# them from, in reprs, tracebacks and the API docs.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
