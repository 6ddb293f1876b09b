"""``progress=True``: one line per stage on stderr, and a total.

On a terminal the block is redrawn in place (ANSI cursor-up) five times a
second; in a log or a pipe a whole block is written every few seconds and
once at the end, so the output stays readable.
"""

from __future__ import annotations

from typing import TextIO

from ._statistics import PipelineStatistics

__all__ = ["StageLines", "format_lines"]


def format_lines(statistics: PipelineStatistics) -> list[str]:
    """The block for one snapshot: a line per stage, then the total."""
    width = max(len(stage.name) for stage in statistics.stages)
    lines = [
        f"{stage.name:<{width}}  done {stage.done:>7}  running {stage.running:>4}"
        f"  queued {stage.queued:>5}  set aside {stage.set_aside:>5}"
        f"  retries {stage.retries:>4}  {stage.rate:>8.1f}/s"
        for stage in statistics.stages
    ]
    total = (
        f"{'total':<{width}}  completed {statistics.completed}"
        f"  set aside {statistics.set_aside}  in flight {statistics.in_flight}"
    )
    if statistics.resumed or statistics.skipped:
        total += f"  resumed {statistics.resumed}  skipped {statistics.skipped}"
    total += f"  {statistics.elapsed:.1f} s"
    lines.append(total)
    return lines


class StageLines:
    """Draws `format_lines` on a stream, in place when it is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        #: Seconds between two updates.
        self.interval = 0.2 if self._tty else 5.0
        self._drawn = 0  # lines of the block on screen

    def __call__(self, statistics: PipelineStatistics, final: bool) -> None:
        lines = format_lines(statistics)
        stream = self._stream
        if self._tty:
            if self._drawn:
                stream.write(f"\x1b[{self._drawn}F")  # back to the block's first line
            stream.write("".join(f"{line}\x1b[K\n" for line in lines))
            self._drawn = 0 if final else len(lines)
        else:
            stream.write("\n".join(lines) + "\n")
        stream.flush()
