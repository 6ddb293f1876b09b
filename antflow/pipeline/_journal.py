"""Journal: what a pipeline records so that a re-run resumes where it stopped.

`Journal` is the user's handle: a path and how to store values. While a run
goes on, a `JournalSession` batches its records. Writes are group commits:
a writer task saves everything recorded so far in one transaction, in a
worker thread, and whatever is recorded meanwhile goes in the next one. So
there is no timer to tune: under load batches grow by themselves, and when
the pipeline is quiet each record is saved at once.

An item moves on from a stage only once that stage's record is saved (the
run waits for `JournalSession.record`'s callback). That is what bounds the
work a crash can repeat: only the items a stage holds, running or waiting
for their record to be saved, can run that stage again.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import anyio
import anyio.lowlevel

from ._journal_file import (
    DONE,
    FANNED,
    IN_PROGRESS,
    SET_ASIDE,
    Codec,
    JournalError,
    JournalFile,
    Record,
    RecordedError,
    Row,
)

__all__ = [
    "Journal",
    "JournalError",
    "JournalSession",
    "JournalSummary",
    "RecordedError",
    "Row",
]


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What a journal file holds, counted.

    Attributes:
        done: Items that went through every stage.
        set_aside: Items a stage failed (retried only when a run asks).
        fanned_out: Items a fan-out stage replaced by their children.
        waiting: Items left between stages, by the name of the stage they
            resume at.
    """

    done: int
    set_aside: int
    fanned_out: int
    waiting: dict[str, int] = field(default_factory=dict[str, int])


@final
class Journal:
    """A durable record of each item's progress through a pipeline.

    Pass one (or just a path) as ``Pipeline(..., journal=...)``. The file is
    an SQLite database, created readable and writable by its owner only.

    Args:
        path: The file; created on first use.
        codec: How the values handed from stage to stage are stored: an
            object with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``.
            Default: `pickle`. A stage whose value the codec cannot store
            sets that item aside with a `JournalError`.
        durable: Also survive a power cut or an OS crash (SQLite
            ``synchronous=FULL``: one fsync per batch). Without it, a batch
            once saved survives the process dying in any way, SIGKILL
            included.
        keep_results: Also store each item's result (with ``codec``), so
            that a later run hands out the results of the items earlier runs
            finished, and the errors (as `RecordedError`) of those they set
            aside, without running them again: its results are then
            complete. Without it, such items are skipped: their results went
            to the run that made them.
    """

    __slots__ = ("codec", "durable", "keep_results", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: Codec = pickle,
        durable: bool = False,
        keep_results: bool = False,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
        if not (
            callable(getattr(codec, "dumps", None))
            and callable(getattr(codec, "loads", None))
        ):
            raise TypeError("codec must have dumps() and loads(), as pickle does")
        for name, flag in (("durable", durable), ("keep_results", keep_results)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.path = os.fspath(path)
        self.codec = codec
        self.durable = durable
        self.keep_results = keep_results

    def summary(self) -> JournalSummary:
        """Count what the file holds. Blocking; call it when no run uses it.

        Raises:
            JournalError: the file is missing, unsafe, corrupt or in use.
        """
        if not os.path.exists(self.path):
            raise JournalError(f"no journal at {self.path}")
        file = JournalFile(self.path, None, self.codec, self.durable)
        try:
            counts = file.summary()
        finally:
            file.close()
        states: dict[int, int] = counts["states"]
        names = file.stages
        waiting: dict[str, int] = {
            names[stage] if stage < len(names) else str(stage): count
            for stage, count in sorted(counts["waiting"].items())
        }
        return JournalSummary(
            done=states.get(DONE, 0),
            set_aside=states.get(SET_ASIDE, 0),
            fanned_out=states.get(FANNED, 0),
            waiting=waiting,
        )

    def __repr__(self) -> str:
        return f"Journal({self.path!r})"


class JournalSession:
    """One run's link to its open journal file."""

    def __init__(
        self, file: JournalFile, journal: Journal, on_saved: Callable[[list[Any]], None]
    ) -> None:
        self._file = file
        self._dumps = journal.codec.dumps
        self.keep_results = journal.keep_results
        #: The journal knew no item when the run began: nothing to look up.
        self.fresh = file.empty
        self._on_saved = on_saved
        self._lock = anyio.Lock()  # one call on the connection at a time
        self._records: list[Record] = []
        self._waiting: list[Any] = []  # what to hand to on_saved, per record
        self._wake: anyio.Event | None = None
        #: Records saved, transactions, and seconds spent saving them.
        self.saved = 0
        self.flushes = 0
        self.seconds = 0.0

    @classmethod
    async def open(
        cls,
        journal: Journal,
        stages: Sequence[tuple[str, str]],
        on_saved: Callable[[list[Any]], None],
    ) -> JournalSession:
        # Shielded, and closed again if we were cancelled meanwhile: an
        # opened file must not be left for the garbage collector.
        file: JournalFile | None = None
        with anyio.CancelScope(shield=True):
            file = await anyio.to_thread.run_sync(
                JournalFile, journal.path, stages, journal.codec, journal.durable
            )
        assert file is not None
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(file.close)
            raise
        return cls(file, journal, on_saved)

    # -- recording (synchronous, on the event loop) ----------------------------

    def encode(self, value: Any) -> bytes:
        """The stored form of ``value``, or raise (the caller sets it aside)."""
        return self._dumps(value)

    def advance(self, ref: str, stage: int, blob: bytes, waiter: Any) -> None:
        """The item will resume at ``stage`` with the encoded value."""
        self._record((IN_PROGRESS, ref, stage, blob), waiter)

    def done(self, ref: str, stage: int, blob: bytes | None, waiter: Any) -> None:
        """The item went through every stage (``blob``: its stored result)."""
        self._record((DONE, ref, stage, blob), waiter)

    def set_aside(
        self, ref: str, stage: int, error: BaseException, waiter: Any
    ) -> None:
        text = f"{type(error).__name__}: {error}"
        self._record((SET_ASIDE, ref, stage, text[:2000]), waiter)

    def fanned(self, ref: str, stage: int, count: int, waiter: Any) -> None:
        self._record((FANNED, ref, stage, count), waiter)

    def _record(self, record: Record, waiter: Any) -> None:
        self._records.append(record)
        self._waiting.append(waiter)
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    @property
    def pending(self) -> int:
        """Records not yet saved."""
        return len(self._records)

    # -- the thread side ---------------------------------------------------------

    async def lookup(self, refs: Sequence[str]) -> dict[str, Row]:
        async with self._lock:
            return await anyio.to_thread.run_sync(self._file.lookup, refs)

    async def write_forever(self) -> None:
        """The writer task: save whatever was recorded, again and again."""
        while True:
            if not self._records:
                self._wake = wake = anyio.Event()
                await wake.wait()
                continue
            # Shielded: records taken from the list must reach the file even
            # if the run is cancelled meanwhile (the lock and the thread are
            # both places a cancellation could otherwise drop them).
            waiting: list[Any] = []
            with anyio.CancelScope(shield=True):
                waiting = await self._save_recorded()
            self._on_saved(waiting)

    async def _save_recorded(self) -> list[Any]:
        """Save everything recorded so far; return its waiters."""
        async with self._lock:
            records, waiting = self._records, self._waiting
            self._records, self._waiting = [], []
            if not records:
                return waiting
            started = time.perf_counter()
            try:
                await anyio.to_thread.run_sync(self._file.save, records)
            except JournalError:
                raise
            except Exception as error:
                raise JournalError(
                    f"writing journal {self._file.path} failed: "
                    f"{type(error).__name__}: {error}"
                ) from error
            finally:
                self.seconds += time.perf_counter() - started
        self.saved += len(records)
        self.flushes += 1
        return waiting

    async def close(self) -> None:
        """Save what is still recorded (work that finished must not be lost,
        even when the run is being cancelled), then close the file."""
        with anyio.CancelScope(shield=True):
            try:
                await self._save_recorded()
            finally:
                await anyio.to_thread.run_sync(self._file.close)
