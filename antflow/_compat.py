"""The little anyio has no portable primitive for.

``AsyncExecutor.submit`` is synchronous, yet in manual use (no ``async
with``) the first call must start the executor's task group somewhere. anyio
can only start tasks from inside a task group, so a detached "runner" task is
started with the backend's own primitive. Everything else in antflow goes
through anyio.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from anyio.lowlevel import EventLoopToken


def loop_token() -> EventLoopToken:
    """Identify the running event loop (equal tokens mean the same loop)."""
    # Imported here, once per executor: it is a tenth of `import antflow`.
    from anyio.lowlevel import current_token

    try:
        return current_token()
    except RuntimeError as exc:  # anyio's NoEventLoopError is a RuntimeError
        raise RuntimeError(
            "antflow needs a running asyncio or trio event loop"
        ) from exc


def backend_name(token: EventLoopToken) -> str:
    """``"asyncio"`` or ``"trio"``, for the loop the token names."""
    return "trio" if "trio" in token.backend_class.__module__ else "asyncio"


def loop_checker(token: EventLoopToken) -> Callable[[], bool]:
    """A cheap "are we on the loop ``token`` names?" test for hot paths.

    ``current_token()`` answers the same question portably but costs a
    microsecond, which is half of what a ``submit`` may cost.
    """
    native = token.native_token
    if backend_name(token) == "trio":
        import trio

        def on_trio_loop() -> bool:
            try:
                return trio.lowlevel.current_trio_token() is native
            except RuntimeError:
                return False

        return on_trio_loop

    from asyncio import events

    # The C accessor: None outside a running loop, never raises.
    get_running_loop = events._get_running_loop

    def on_asyncio_loop() -> bool:
        return get_running_loop() is native

    return on_asyncio_loop


def spawn_detached(
    token: EventLoopToken, func: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run ``func()`` as a task of its own on the loop ``token`` names.

    The task is not a child of the caller. On asyncio it is a plain loop task
    (``asyncio.run`` cancels it if it is still alive at the end); on trio it is
    a system task, which trio cancels when the main task returns. ``func`` must
    not raise: trio treats an exception from a system task as an internal
    error.
    """
    if backend_name(token) == "trio":
        import trio

        trio.lowlevel.spawn_system_task(func)
    else:
        import asyncio

        loop = cast(asyncio.AbstractEventLoop, token.native_token)
        task = loop.create_task(func())
        # The loop holds only a weak reference to its tasks; keep this one
        # alive until it is done.
        _detached.add(task)
        task.add_done_callback(_detached.discard)


_detached: set[Any] = set()
