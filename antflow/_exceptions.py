"""The exceptions antflow raises.

::

    Exception
    ├── AntFlowError
    │   ├── ExecutorShutdownError      (also a RuntimeError)
    │   └── ExecutorFullError          (also an anyio.WouldBlock)
    └── concurrent.futures.CancelledError
        └── CancelledError

``CancelledError`` is what a cancelled future reports. It is deliberately an
``Exception`` and never the backend's own cancellation exception: a caller
that catches it has learnt that *that future* was cancelled, not that its own
task is being cancelled, so it cannot accidentally swallow a cancel scope.

``CancelledError`` lives in ``_cancelled`` and is loaded on first use:
``concurrent.futures`` costs a quarter of ``import antflow`` otherwise.
"""

from __future__ import annotations

import anyio


class AntFlowError(Exception):
    """Base class of every error antflow defines."""


class ExecutorShutdownError(AntFlowError, RuntimeError):
    """The executor no longer accepts work: ``shutdown()`` has begun."""


class ExecutorFullError(AntFlowError, anyio.WouldBlock):
    """``submit`` found no room: ``max_pending`` tasks are already queued.

    The ``submit`` counterpart of anyio's ``WouldBlock`` (a subclass of it),
    which ``send_nowait`` raises on a full stream; ``await
    executor.asubmit(...)`` waits for room instead.
    """
