"""Item keys: what names an item in a journal, across runs and processes.

A journal needs to recognise an item when a later run reads it again from
the source, in another process. Python's ``hash()`` of a string changes from
one process to the next, and ``repr()`` of most objects holds an address, so
neither will do. Keys are therefore limited to values with one obvious,
stable spelling (strings, numbers, bytes, paths, ``None`` and tuples of
them), and each is written as text whose first character names its type, so
that ``1``, ``"1"`` and ``(1,)`` never meet.

The child ``i`` of a fan-out has the key ``(parent_key, i)`` and the text
``"c<i>:" + parent_text``: no user key's text starts with ``c``, so children
never collide with items of the source.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any, cast

__all__ = ["Key", "child_ref", "encode_key"]

#: What a key function may return.
Key = str | int | float | bytes | bool | PurePath | tuple[Any, ...] | None


def encode_key(key: object) -> str:
    """The stable text of ``key``.

    Raises:
        TypeError: ``key`` is not a str, int, float, bytes, bool, path, None,
            or a tuple of these.
    """
    # Exact type checks first: they are the common case and the cheapest.
    cls = key.__class__
    if cls is str:
        return "s" + cast(str, key)
    if cls is int:
        return "i" + str(key)
    if isinstance(key, bool):
        return "b1" if key else "b0"
    if isinstance(key, int):
        return "i" + str(int(key))
    if isinstance(key, str):
        return "s" + str(key)
    if isinstance(key, float):
        return "f" + repr(float(key))
    if isinstance(key, bytes):
        return "x" + key.hex()
    if key is None:
        return "n"
    if isinstance(key, PurePath):
        return "p" + key.as_posix()
    if isinstance(key, tuple):
        parts: tuple[object, ...] = key  # pyright: ignore[reportUnknownVariableType]
        return "t" + json.dumps([encode_key(part) for part in parts])
    raise TypeError(
        f"a journal key must be a str, int, float, bytes, bool, path, None or a "
        f"tuple of these, got {type(key).__name__}; pass key= to Pipeline to "
        "say which part of an item names it"
    )


def child_ref(parent_ref: str, index: int) -> str:
    """The stable text of the key ``(parent_key, index)`` of a fan-out child."""
    return f"c{index}:{parent_ref}"
