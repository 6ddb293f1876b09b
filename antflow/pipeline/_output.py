"""Where items leave: the results, in completion order or in source order.

Unordered, the results are a bounded line like a stage's room: when the
consumer falls behind, finished items park before it and the pipeline backs
up to the source.

Ordered, each source item gets a `Slot` when it is admitted, in source
order; its results (several, after a fan-out, in child order) fill the slot
whatever order they finish in, and the consumer takes slots from the front
once complete. The source waits while ``window`` slots are open, which
bounds what a slow item at the front can make the others wait in memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio

from ._flow import Packet, room_back
from ._results import Completed, Failed

__all__ = ["Output", "Slot"]

Result = Completed | Failed


class Slot:
    """One source item's place in ordered output."""

    __slots__ = ("pending", "results")

    def __init__(self, pending: int) -> None:
        self.pending = pending  # its packets still in the pipeline
        self.results: list[tuple[tuple[int, ...], Result]] = []


class Output:
    """The results, as a destination packets enter when there is room."""

    def __init__(self, ordered: bool, capacity: int, window: int) -> None:
        self.ordered = ordered
        # Ordered output takes every packet at once: the window bounds it.
        self.room = 1 << 62 if ordered else capacity
        self.waiting: deque[Packet] = deque()
        self.window = window
        self.slots: deque[Slot] = deque()  # ordered: open slots, source order
        self._ready: deque[Result] = deque()  # ready to hand out
        self._readable: anyio.Event | None = None  # the consumer waits on it
        self.window_freed: anyio.Event | None = None  # the source waits on it
        self.room_freed: anyio.Event | None = None  # ... or on this
        self.delivered = 0  # packets that entered
        #: Called with each packet that entered (the run counts it).
        self.on_enter: Callable[[Packet], object] = _ignore

    def open_slot(self, pending: int) -> Slot:
        slot = Slot(pending)
        self.slots.append(slot)
        return slot

    def has_window(self) -> bool:
        return len(self.slots) < self.window

    def enter(self, packet: Packet) -> None:
        self.delivered += 1
        result = packet.result
        if result is None:
            result = Completed(packet.key, packet.item, packet.value)
        if self.ordered:
            slot: Slot = packet.slot
            slot.results.append((packet.path, result))
            self.packet_gone(slot)
        else:
            self.room -= 1
            self._ready.append(result)
            self.wake()
        self.on_enter(packet)

    def packet_gone(self, slot: Slot) -> None:
        """Ordered: one packet of ``slot`` left (with a result or none)."""
        slot.pending -= 1
        if slot.pending == 0 and self.slots[0] is slot:
            self.wake()

    def wake(self) -> None:
        readable = self._readable
        if readable is not None:
            self._readable = None
            readable.set()

    async def wait(self) -> None:
        """Until something may have changed for the consumer."""
        self._readable = readable = anyio.Event()
        await readable.wait()

    def pop(self) -> Result | None:
        """The next result to hand out, or None if none is ready."""
        ready = self._ready
        if not ready and self.ordered:
            slots = self.slots
            while not ready and slots and slots[0].pending == 0:
                results = slots.popleft().results
                if len(results) > 1:
                    results.sort(key=_path)
                ready.extend(result for _, result in results)
                if self.window_freed is not None:
                    self.window_freed.set()
                    self.window_freed = None
        if not ready:
            return None
        result = ready.popleft()
        if not self.ordered:
            room_back(self)
        return result


def _ignore(packet: Packet) -> None:
    pass


def _path(pair: tuple[tuple[int, ...], Result]) -> tuple[int, ...]:
    return pair[0]
