"""Progress reporting for ``map`` and ``map_iter`` (``progress=``).

``progress=True`` draws a bar on stderr: rich's when ``antflow[progress]`` is
installed, else a plain one. On a terminal rich's bar shows the count, the
rate and the time elapsed, and with a known length the bar and the time
left; elsewhere it writes one summary line at the end. The plain bar
redraws one line with ``\\r`` only when stderr is a terminal; otherwise it
writes a whole line at each tenth of the way (or every 1,000 items when the
total is unknown), so logs and CI output stay readable. A callable is
called as ``progress(done, total)`` after each item that finished with a
result or an exception.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sized
from typing import Any, TextIO, cast

Progress = bool | Callable[[int, int | None], object] | None


def known_length(iterables: Iterable[object]) -> int | None:
    """The zipped length, when every input knows its own."""
    try:
        return min(len(cast(Sized, it)) for it in iterables)
    except TypeError:
        return None


def make_reporter(
    progress: Progress, total: int | None
) -> Callable[[int], object] | None:
    """A ``report(done)`` function for the ``progress=`` argument, or None."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return _bar(total)
    if callable(progress):
        callback = progress
        return lambda done: callback(done, total)
    raise TypeError(
        f"progress must be a bool or a callable, got {type(progress).__name__}"
    )


def _bar(total: int | None) -> Callable[[int], None]:
    try:
        import rich.progress
    except ImportError:
        return _PlainBar(total, sys.stderr)
    return _RichBar(rich.progress, total)


class _RichBar:
    """rich's bar on a terminal: count, rate, elapsed and, with a known
    total, the bar and the time left. Anywhere else (a log, CI) one summary
    line at the end, as the plain bar's last line would say it."""

    def __init__(self, module: Any, total: int | None) -> None:
        from rich.console import Console

        self._total = total
        self._done = 0
        self._since = time.monotonic()
        console = Console(stderr=True)
        self._progress: Any = None
        if not console.is_terminal:
            return
        columns: list[Any] = [module.TextColumn("antflow")]
        if total is None:
            columns.append(module.TextColumn("{task.completed} done"))
        else:
            columns += [module.BarColumn(), module.MofNCompleteColumn()]
        columns += [
            module.TextColumn("{task.fields[rate]}"),
            module.TimeElapsedColumn(),
        ]
        if total is not None:
            columns.append(module.TimeRemainingColumn())
        self._progress = module.Progress(*columns, console=console, transient=False)
        self._task = self._progress.add_task("antflow", total=total, rate="")
        self._progress.start()

    def __call__(self, done: int) -> None:
        self._done = done
        if self._progress is not None:
            rate = _rate(done, time.monotonic() - self._since)
            self._progress.update(self._task, completed=done, rate=rate)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            return
        elapsed = time.monotonic() - self._since
        done, total = self._done, self._total
        count = f"{done} done" if total is None else f"{done}/{total} done"
        sys.stderr.write(
            f"antflow: {count} in {elapsed:.1f} s, {_rate(done, elapsed)}\n"
        )
        sys.stderr.flush()


def _rate(done: int, elapsed: float) -> str:
    return f"{done / elapsed:.1f}/s" if elapsed > 0 else "-/s"


class _PlainBar:
    WIDTH = 30

    def __init__(self, total: int | None, stream: TextIO) -> None:
        self._total = total
        self._stream = stream
        self._tty = stream.isatty()
        self._done = 0
        self._drawn = -1  # the count last written
        self._step = -1  # the tenth (or thousand) last written

    def __call__(self, done: int) -> None:
        self._done = done
        step = done * 10 // self._total if self._total else done // 1000
        if self._tty or step != self._step:
            self._step = step
            self._draw(final=False)

    def _draw(self, final: bool) -> None:
        done, total = self._done, self._total
        self._drawn = done
        if total:
            filled = self.WIDTH * done // total
            text = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total}"
        else:
            text = f"{done} done"
        if self._tty:
            self._stream.write("\r" + text + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        # A terminal gets the final count and a newline; a log gets a last
        # line unless the final count is already its last line.
        if self._tty or self._drawn != self._done:
            self._draw(final=True)
