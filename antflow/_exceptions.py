"""The exceptions antflow raises.

::

    Exception
    ├── AntFlowError
    │   └── ExecutorShutdownError      (also a RuntimeError)
    └── concurrent.futures.CancelledError
        └── CancelledError

``CancelledError`` is what a cancelled future reports. It is deliberately an
``Exception`` and never the backend's own cancellation exception: a caller
that catches it has learnt that *that future* was cancelled, not that its own
task is being cancelled, so it cannot accidentally swallow a cancel scope.
"""

from __future__ import annotations

import concurrent.futures


class AntFlowError(Exception):
    """Base class of every error antflow defines."""


class ExecutorShutdownError(AntFlowError, RuntimeError):
    """The executor no longer accepts work: ``shutdown()`` has begun."""


class CancelledError(concurrent.futures.CancelledError):
    """The future was cancelled before it produced a result."""
