"""antflow.CancelledError (see ``_exceptions`` for the whole tree)."""

from __future__ import annotations

import concurrent.futures


class CancelledError(concurrent.futures.CancelledError):
    """The future was cancelled before it produced a result."""


CancelledError.__module__ = "antflow"  # where users import it from
