"""Argument checks, in one place, each naming the argument it checks.

Every public call validates its arguments before it does anything, so a
mistake is reported at the call that made it (``TypeError`` for a wrong
type, ``ValueError`` for a value out of range), never later from inside a
task.
"""

from __future__ import annotations

import math
from collections.abc import Coroutine
from typing import NoReturn


def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """An ``int`` (``bool`` refused), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def check_number(name: str, value: object) -> float:
    """An ``int`` or ``float`` (``bool`` refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {_type_name(value)}")
    return value


def check_positive(name: str, value: object) -> float:
    """A finite number > 0."""
    number = check_number(name, value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return number


def check_non_negative(name: str, value: object) -> float:
    """A finite number >= 0."""
    number = check_number(name, value)
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return number


def check_seconds(name: str, value: object) -> float:
    """A duration: a number >= 0 (``inf`` allowed, NaN refused)."""
    number = check_number(name, value)
    if math.isnan(number) or number < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return number


def check_timeout(value: object, name: str = "timeout") -> float | None:
    """Seconds or None: a number >= 0 (``inf`` allowed, NaN refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number or None, got {_type_name(value)}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {value}")
    return value


def reject_function(fn: object, name: str = "fn") -> NoReturn:
    """``fn``, the argument ``name``, is not callable: say why, naming it.

    Raises:
        TypeError: always.
    """
    if isinstance(fn, Coroutine):
        fn.close()  # it will never run; close it so no "never awaited" warning follows
        raise TypeError(
            f"{name} must be an async function, not a coroutine object: "
            "pass fetch, not fetch()"
        )
    raise TypeError(f"{name} must be callable, got {_type_name(fn)}")
