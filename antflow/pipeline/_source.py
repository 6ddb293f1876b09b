"""The feeder: reads the source, asks the journal, and admits items.

Without a journal each source item is admitted to the first stage as it is
read, so nothing is read ahead beyond what the first stage can take.

With a journal every item's key is looked up first: in chunks, since each
lookup is a trip to the journal's thread. A sync source is read a chunk at a
time (reading it costs nothing while the pipeline is full, since the feeder
then waits anyway). An async source is read by a small reader task into a
bounded buffer, and each lookup takes what the buffer holds at that moment
(at least one item), so a slow source is never held back to fill a chunk.
What the journal says decides where an item goes: nowhere (finished, or set
aside unless retried), the first stage, or the stage an earlier run left it
at, with the value it had there. A fanned-out item is resumed as the
children that have not finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, cast

import anyio

from ._flow import Packet
from ._journal_file import (
    DONE,
    FANNED,
    NOTHING,
    SET_ASIDE,
    JournalError,
    RecordedError,
)
from ._keys import child_ref, encode_key
from ._results import Failed

if TYPE_CHECKING:
    from ._journal import JournalSession, Row
    from ._run import PipelineRun

__all__ = ["Feeder", "check_source"]

CHUNK = 256  # items per journal lookup at most


def check_source(source: object) -> None:
    if not isinstance(source, Iterable | AsyncIterable):
        raise TypeError(
            f"source must be an iterable or an async iterable, got {type(source).__name__}"
        )


class Feeder:
    """The task that moves source items into the pipeline."""

    def __init__(
        self,
        run: PipelineRun,
        source: Iterable[Any] | AsyncIterable[Any],
        key: Callable[[Any], Any] | None,
        session: JournalSession | None,
        retry_set_aside: bool,
    ) -> None:
        self._run = run
        self._source = source
        self._key = key
        self._session = session
        self._retry = retry_set_aside
        self._keep = session is not None and session.keep_results
        self._names = [stage.name for stage in run.stages]
        self._stages = len(self._names)

    async def feed(self) -> None:
        if self._session is None or self._session.fresh:
            # Nothing to look up (a fresh journal knows no key yet): each
            # item goes in as it is read.
            await self._feed_plain()
        elif isinstance(self._source, AsyncIterable):
            await self._feed_async_with_journal(self._source)
        else:
            await self._feed_sync_with_journal(self._source)

    async def _feed_plain(self) -> None:
        source = self._source
        if isinstance(source, AsyncIterable):
            items = aiter(source)
            try:
                async for item in items:
                    await self._admit_new(item)
            finally:
                await _aclose(items)
        else:
            iterator = iter(source)
            try:
                for item in iterator:
                    await self._admit_new(item)
            finally:
                _close(iterator)

    async def _admit_new(self, item: Any) -> None:
        key = item if self._key is None else self._key(item)
        if self._session is None:
            await self._run.admit([Packet(item, key, None, item, 0)])
        else:
            ref = encode_key(key)
            await self._run.admit([Packet(item, key, ref, item, 0)], ref)

    async def _feed_sync_with_journal(self, source: Iterable[Any]) -> None:
        iterator = iter(source)
        try:
            while chunk := list(islice(iterator, CHUNK)):
                await self._admit_chunk(chunk)
        finally:
            _close(iterator)

    async def _feed_async_with_journal(self, source: AsyncIterable[Any]) -> None:
        send, receive = anyio.create_memory_object_stream[Any](CHUNK)

        async def read() -> None:
            iterator = aiter(source)
            try:
                async with send:
                    async for item in iterator:
                        await send.send(item)
            finally:
                await _aclose(iterator)

        async with anyio.create_task_group() as reader, receive:
            reader.start_soon(read)
            async for first in receive:
                chunk = [first]
                while len(chunk) < CHUNK:
                    try:
                        chunk.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._admit_chunk(chunk)

    async def _admit_chunk(self, chunk: list[Any]) -> None:
        session = self._session
        assert session is not None
        key = self._key
        keys = chunk if key is None else [key(item) for item in chunk]
        refs = [encode_key(k) for k in keys]
        rows = await session.lookup(refs)
        run = self._run
        for item, k, ref in zip(chunk, keys, refs, strict=True):
            row = rows.get(ref)
            if row is None:
                await run.admit([Packet(item, k, ref, item, 0)], ref)
            else:
                packets = await self._resume(item, k, ref, row, ())
                if packets:
                    await run.admit(packets, ref)

    async def _resume(
        self, item: Any, key: Any, ref: str, row: Row, path: tuple[int, ...]
    ) -> list[Packet]:
        """The packets that carry on with what the journal says of an item."""
        run = self._run
        state = row.state
        if state == DONE or (state == SET_ASIDE and not self._retry):
            run.skip(key)
            if not self._keep:
                return []
            # Results are kept: hand out what the earlier run ended with.
            if state == DONE:
                if row.value is NOTHING:
                    return []  # finished before results were kept
                return [Packet(item, key, ref, row.value, self._stages, path)]
            value = item if row.value is NOTHING else row.value
            packet = Packet(item, key, ref, value, self._stages, path)
            packet.result = Failed(
                key, item, self._names[row.stage], RecordedError(row.error), value
            )
            return [packet]
        if state == FANNED:
            count = row.children or 0
            refs = [child_ref(ref, index) for index in range(count)]
            rows = (
                await cast("JournalSession", self._session).lookup(refs) if refs else {}
            )
            packets: list[Packet] = []
            for index, child in enumerate(refs):
                child_row = rows.get(child)
                if child_row is None:
                    raise JournalError(
                        f"the journal is corrupt: child {index} of item {key!r} is missing"
                    )
                packets += await self._resume(
                    item, (key, index), child, child_row, (*path, index)
                )
            return packets
        # In progress, or set aside and retried: go back to that stage. Only
        # the first stage's input is not stored: it is the source item.
        value = item if row.value is NOTHING else row.value
        packet = Packet(item, key, ref, value, row.stage, path)
        run.resume(packet)
        return [packet]


def _close(iterator: object) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
