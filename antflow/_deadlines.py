"""Attempt deadlines (``task_timeout``), kept for the whole pool by one task.

An attempt with a ``task_timeout`` must end by its deadline; if it has not,
its worker's cancel scope is cancelled (``_attempts`` turns that into the
attempt's ``TimeoutError``). A cancel scope with a deadline of its own would
ask the event loop for a timer on every attempt, and cancel it again on
almost every one, since almost none time out: on asyncio that is a timer
handle and two heap operations per attempt. Here an attempt only adds its
deadline to a dict and removes it, and one watcher task wakes when the
earliest deadline comes, cancels what is late, and sleeps until the next.

The watcher runs while deadlines are due; it ends when it wakes to find
none, or at once when the pool has nothing outstanding, so an executor
without work holds no task. (Closing the pool does not stop it: the
attempts that still run keep their deadlines.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from ._compat import deadline_clock

if TYPE_CHECKING:
    from ._pool import Pool


class Deadlines:
    """The deadlines of the attempts running in one pool's workers."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        #: Each running attempt's worker scope, and the attempt's deadline
        #: (one attempt at a time per worker scope).
        self._due: dict[anyio.CancelScope, float] = {}
        self._clock: Callable[[], float] | None = None
        #: When the watcher wakes next (inf: no watcher).
        self._wake_at = math.inf
        #: The watcher's sleep, while it sleeps: its deadline is ``_wake_at``.
        self._sleep: anyio.CancelScope | None = None
        #: The watcher's whole run, to end it early.
        self._watch_scope: anyio.CancelScope | None = None

    def start(self, scope: anyio.CancelScope, timeout: float) -> None:
        """An attempt starts in the worker's ``scope``: cancel the scope if
        it is still running ``timeout`` seconds from now."""
        clock = self._clock
        if clock is None:
            clock = self._clock = deadline_clock()
        deadline = clock() + timeout
        self._due[scope] = deadline
        if deadline < self._wake_at:  # rarely: most deadlines come later
            if self._wake_at == math.inf:
                self._pool.start_own(self._watch)
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline

    def end(self, scope: anyio.CancelScope) -> None:
        """The attempt in ``scope`` has ended (or was cancelled for being
        late)."""
        self._due.pop(scope, None)

    def stop(self) -> None:
        """Nothing is outstanding: a sleeping watcher ends now rather than
        when it wakes (a deadline that comes later starts a new one)."""
        run, self._watch_scope = self._watch_scope, None
        if run is not None:
            run.cancel()
            self._sleep = None
            self._wake_at = math.inf

    async def _watch(self) -> None:
        due = self._due
        clock = self._clock
        assert clock is not None
        with anyio.CancelScope() as run:
            self._watch_scope = run
            try:
                while due:
                    now = clock()
                    late = [scope for scope, deadline in due.items() if deadline <= now]
                    for scope in late:
                        del due[scope]
                        scope.cancel()
                    if not due:
                        break
                    self._wake_at = min(due.values())
                    with anyio.CancelScope(deadline=self._wake_at) as self._sleep:
                        await anyio.sleep_forever()
                    self._sleep = None
            finally:
                if self._watch_scope is run:  # not stopped: it is still ours
                    self._watch_scope = self._sleep = None
                    self._wake_at = math.inf
                self._pool.task_exited()
