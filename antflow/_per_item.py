"""Per-item limiters: ``map``'s ``semaphore=`` and ``rate_limit=`` given as a
function of the item.

``map(fetch, urls, semaphore=lambda url: per_host[host_of(url)])`` runs the
function once for each item, with the item's arguments (what ``fn`` gets),
when the item is read from its input and submitted, in the item's own copy of
the call's context (the one ``fn`` will run in). It returns the limiter for
that item, or None for none. Its choice holds for every attempt of the item.

How a function is told from a limiter: a limiter is an async context manager
(its class has ``__aenter__``) or a `RateLimiter`; anything else that is
callable, and not a class, is a function that chooses one. A class is
refused: ``semaphore=anyio.CapacityLimiter`` is a missing ``(...)``, not a
choice.

Whatever goes wrong while choosing (the function raises, returns an
awaitable or something that is not a limiter) fails that item alone, with
that error, as a limiter's own fault does (docs/semantics.md, "Limiter
faults"): the call goes on to the other items, and the error reaches the
caller as any item's failure does (with ``return_exceptions=True``, in its
place in the results). ``fn`` is never called for it.

Items that choose the same limiters share one compiled `Plan`: plans are
cached by the identity of the limiters chosen, a few per call (one per host,
say); a function that makes a new limiter for every item gets a new plan for
every item, and the cache is emptied when it grows past `PLAN_CACHE`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context
from typing import Any, Final

from ._limits import gate_for
from ._options import CallOptions, Plan, make_plan
from ._rate import RateLimiter

#: Most plans a call keeps for the limiter pairs its items chose.
PLAN_CACHE: Final = 1024


def is_chooser(value: object, option: str = "semaphore") -> bool:
    """Is ``value`` (given as ``option``) a function choosing a limiter per
    item, rather than a limiter?

    Raises:
        TypeError: ``value`` is a class (a limiter class without ``(...)``).
    """
    if value is None or not callable(value):
        return False  # a RateLimiter, among others
    if isinstance(value, type):
        raise TypeError(
            f"{option}: got the class {value.__name__}, not a limiter: did you mean "
            f"{value.__name__}(...)?"
        )
    return not hasattr(type(value), "__aenter__")


class ItemPlans:
    """The plans of one ``map`` call whose limiters are chosen per item."""

    __slots__ = (
        "_backend",
        "_base",
        "_cache",
        "_choose_rate",
        "_choose_semaphore",
        "_executor_rate",
        "_hub",
        "_rate",
        "_semaphore",
    )

    def __init__(
        self,
        semaphore: Any,
        rate_limit: Any,
        base: CallOptions | None,
        executor_rate: RateLimiter | None,
        backend: str,
        hub: Any = None,
    ) -> None:
        #: A chooser, or the call's fixed limiter (or None).
        self._semaphore = semaphore
        self._rate = rate_limit
        self._choose_semaphore = is_chooser(semaphore)
        self._choose_rate = is_chooser(rate_limit, "rate_limit")
        #: The call's other options (retries, task_timeout).
        self._base = base
        self._executor_rate = executor_rate
        self._backend = backend
        #: The executor's event hub (``_events``), if it has one.
        self._hub = hub
        #: ``(id(semaphore), id(rate))`` -> (semaphore, rate, plan); the
        #: limiters are kept so their ids stay theirs.
        self._cache: dict[tuple[int, int], tuple[Any, Any, Plan | None]] = {}

    def plan_for(self, args: tuple[Any, ...], context: Context) -> Plan | None:
        """The plan of the item whose arguments are ``args``.

        Raises:
            Exception: what a chooser raised; ``TypeError`` for a chooser
                that returned an awaitable or something that is not a
                limiter of the right kind (naming the option).
        """
        semaphore = self._semaphore
        if self._choose_semaphore:
            semaphore = _choose("semaphore", semaphore, args, context)
        rate = self._rate
        if self._choose_rate:
            rate = _choose("rate_limit", rate, args, context)
            if rate is not None and not isinstance(rate, RateLimiter):
                raise TypeError(
                    f"rate_limit={_name(self._rate)} returned "
                    f"{type(rate).__name__}, not an antflow.RateLimiter or None"
                )
        key = (id(semaphore), id(rate))
        cached = self._cache.get(key)
        if cached is not None:
            return cached[2]
        if semaphore is not None:
            try:
                gate_for(semaphore, self._backend)
            except TypeError as error:
                raise TypeError(
                    f"semaphore={_name(self._semaphore)} returned "
                    f"{type(semaphore).__name__}: {error}"
                ) from None
        plan = self._compile(semaphore, rate)
        if len(self._cache) >= PLAN_CACHE:
            self._cache.clear()
        self._cache[key] = (semaphore, rate, plan)
        return plan

    def without_limiters(self) -> Plan | None:
        """The plan of an item with no limiter: for one whose choice failed,
        so that its events are those of the call."""
        return self._compile(None, None)

    def _compile(self, semaphore: Any, rate: RateLimiter | None) -> Plan | None:
        base = self._base
        if base is None:
            base = CallOptions(None, None, None, None)
        if semaphore is None and rate is None and base == (None,) * len(base):
            return make_plan(None, self._executor_rate, self._backend, self._hub)
        options = base._replace(semaphore=semaphore, rate_limit=rate)
        return make_plan(options, self._executor_rate, self._backend, self._hub)


def _choose(
    option: str, chooser: Callable[..., Any], args: tuple[Any, ...], context: Context
) -> Any:
    chosen = context.run(chooser, *args)
    if hasattr(chosen, "__await__"):
        close = getattr(chosen, "close", None)
        if close is not None:
            close()  # never awaited: no "never awaited" warning follows
        raise TypeError(
            f"{option}={_name(chooser)} returned an awaitable; it must be a plain "
            "function returning the limiter (or None)"
        )
    return chosen


def _name(chooser: object) -> str:
    return getattr(chooser, "__qualname__", None) or type(chooser).__name__
