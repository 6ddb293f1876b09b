"""The journal: resume after a stop, nothing lost, nothing done twice, and a
file that is refused when it is not safe to use.

A stop here is in-process (cancellation, leaving early, an error): the run
saves the records of finished work on its way out, so only the calls that
were running repeat. ``faults/test_pipeline_kill.py`` kills real processes,
where nothing is saved on the way out; ``properties/test_pipeline_model.py``
stops random pipelines anywhere. What is pinned here is stated in
docs/pipelines.md, "A journal: resume after a crash" and its subsections.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections import Counter
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from _pipeline_helpers import Recorder

from antflow.pipeline import (
    Completed,
    Failed,
    Journal,
    JournalError,
    JournalSummary,
    Pipeline,
    RecordedError,
    Stage,
    StageEvent,
)
from antflow.pipeline._keys import child_ref, encode_key

# The journal writes from a thread: on trio's mock clock every wait for it
# interleaves virtual time with real thread work (tests/README.md, "Hangs").
# Nothing here depends on timing, so trio runs on its real clock.
pytestmark = [pytest.mark.anyio, pytest.mark.real_clock]


def three_stages(rec: Recorder, journal: Any, **options: Any) -> Pipeline:
    return Pipeline(
        Stage("double", rec.function("double", lambda x: x * 2), workers=3),
        Stage("inc", rec.function("inc", lambda x: x + 1), workers=2),
        Stage("text", rec.function("text", str), workers=2),
        journal=journal,
        **options,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "run.journal"


# -- resuming (docs/pipelines.md, "A journal: resume after a crash") -------------------


async def test_a_second_run_skips_what_the_first_finished(path: Path) -> None:
    rec = Recorder()
    first = await three_stages(rec, path).run(range(10))
    assert len(first) == 10
    again = await three_stages(rec, path).run(range(12))
    # Only the two new items ran, and only they came out.
    assert [r.key for r in again] == [10, 11]
    assert set(rec.started.values()) == {1}
    assert Journal(path).summary() == JournalSummary(
        done=12, set_aside=0, fanned_out=0, waiting={}
    )


async def test_a_stopped_run_resumes_where_each_item_was(path: Path) -> None:
    """Stop with items in every stage; the next run skips the finished ones,
    starts the others at the stage they had reached, and no stage runs an
    item twice except the calls that were cut off."""
    rec = Recorder()
    rec.gate("text")
    async with three_stages(rec, path).stream(range(30)) as results:
        await rec.until(lambda: rec.running("text") == 2)
        running_text = 2
    # Left early: nothing came out, nothing is running, work is saved.
    assert all(rec.running(s) == 0 for s in ("double", "inc", "text"))
    stats = results.statistics()
    summary = Journal(path).summary()
    assert summary.done == 0
    # Every item the first stage finished waits for "inc" or "text".
    assert sum(summary.waiting.values()) == stats.stages[0].done
    assert set(summary.waiting) <= {"inc", "text"}
    before = Counter(rec.started)
    cut_off = {key for key, n in rec.cancelled.items() if n}

    rec.open("text")
    results2 = await three_stages(rec, path).run(range(30))
    assert [r.value for r in results2] == [str(x * 2 + 1) for x in range(30)]
    again = {key for key, n in rec.started.items() if n > 1}
    # Exactly the calls that were cut off when we left ran again (the two
    # of "text", and whatever else was mid-call); each only once more.
    assert again == cut_off
    assert sum(stage == "text" for stage, _ in cut_off) == running_text
    assert all(before[key] == 1 and rec.started[key] == 2 for key in again)


async def test_a_result_goes_to_the_run_that_made_it(path: Path) -> None:
    """By default a finished item is skipped by later runs: its result went
    to the run that finished it, whether or not that run's caller took it."""
    rec = Recorder()
    received: list[Any] = []
    async with three_stages(rec, path).stream(range(20), ordered=False) as results:
        async for result in results:
            received.append(result.key)
            if len(received) == 7:
                break
    rest = [r.key for r in await three_stages(rec, path).run(range(20))]
    assert not set(received) & set(rest)
    assert Journal(path).summary().done == 20
    assert all(n <= 2 for n in rec.started.values())


async def test_kept_results_make_every_run_complete(path: Path) -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 6
    journal = Journal(path, keep_results=True)
    # Stop once item 3 (set aside) and item 5 came out: a result goes out only
    # once its record is written, so both are in the journal. (Stopping at 5
    # alone left it to the schedule whether 3 had failed yet.)
    seen: set[Any] = set()
    async with three_stages(rec, journal).stream(range(10), ordered=False) as results:
        async for result in results:
            seen.add(result.key)
            if {3, 5} <= seen:
                break
    first = journal.summary()
    assert first.set_aside == 1
    events: list[StageEvent] = []
    again = await three_stages(rec, journal).run(range(10), on_event=events.append)
    # Every item, in order: finished ones from the journal, without running.
    assert [r.key for r in again] == list(range(10))
    assert [r.value for r in again if r.ok] == [
        str(x * 2 + 1) for x in range(10) if x != 3
    ]
    failed = again[3]
    assert isinstance(failed, Failed)
    assert isinstance(failed.error, RecordedError)
    assert str(failed.error) == "ValueError: inc failed 6"
    assert (failed.stage, failed.value) == ("inc", 6)
    # What the first run had finished or set aside was not run again.
    assert sum(e.kind == "skipped" for e in events) == first.done + first.set_aside
    # A third run runs nothing at all.
    before = Counter(rec.started)
    assert [r.key for r in await three_stages(rec, journal).run(range(10))] == list(
        range(10)
    )
    assert rec.started == before


async def test_set_aside_items_are_skipped_unless_retried(path: Path) -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x in (4, 8)  # items 2 and 4
    first = await three_stages(rec, path).run(range(6))
    assert [r.key for r in first if not r.ok] == [2, 4]
    assert Journal(path).summary().set_aside == 2

    assert await three_stages(rec, path).run(range(6)) == []

    rec.fail.clear()
    events: list[StageEvent] = []
    retried = await three_stages(rec, path).run(
        range(6), retry_set_aside=True, on_event=events.append
    )
    assert retried == [Completed(2, 2, "5"), Completed(4, 4, "9")]
    # From the stage that failed them, with the value they had there: the
    # stage before is not run again.
    assert rec.started["double", 2] == 1
    assert rec.started["inc", 4] == 2
    assert {(e.kind, e.stage) for e in events if e.kind == "resumed"} == {
        ("resumed", "inc")
    }
    assert sum(e.kind == "skipped" for e in events) == 4
    assert Journal(path).summary().done == 6


async def test_a_first_stage_failure_is_retried_with_the_source_item(
    path: Path,
) -> None:
    rec = Recorder()
    rec.fail["double"] = lambda x: x == 3
    await three_stages(rec, path).run(range(5))
    rec.fail.clear()
    retried = await three_stages(rec, path).run(range(5), retry_set_aside=True)
    assert retried == [Completed(3, 3, "7")]


async def test_a_failure_that_the_stop_kept_from_its_retries_is_not_set_aside(
    path: Path,
) -> None:
    """A call that fails while the code around the run is being cancelled is
    not retried (the executor starts no attempt once it is going down); the
    item did not fail after its retries, so it is not set aside: the next run
    tries it again (docs/pipelines.md, "Failures set aside")."""
    calls: Counter[int] = Counter()
    stop = anyio.CancelScope()

    async def flaky(x: int) -> int:
        calls[x] += 1
        await anyio.lowlevel.checkpoint()
        if x == 3 and calls[x] == 1:
            stop.cancel()  # the run is stopped from outside...
            raise ConnectionError("down")  # ...as this attempt fails
        return x

    def pipeline() -> Pipeline:
        return Pipeline(Stage("flaky", flaky, workers=1, retries=3), journal=path)

    events: list[StageEvent] = []
    with stop:
        await pipeline().run(range(6), on_event=events.append)
    assert stop.cancelled_caught
    assert [e for e in events if e.kind == "set_aside"] == []
    assert Journal(path).summary().set_aside == 0
    rest = await pipeline().run(range(6))
    assert Completed(3, 3, 3) in rest
    assert calls[3] == 2
    assert Journal(path).summary().done == 6


async def test_fail_fast_leaves_the_item_to_be_tried_again(path: Path) -> None:
    rec = Recorder()
    rec.fail["inc"] = lambda x: x == 6
    with pytest.raises(ValueError):
        await three_stages(rec, path).run(range(5), fail_fast=True)
    assert Journal(path).summary().set_aside == 0
    rec.fail.clear()
    rest = await three_stages(rec, path).run(range(5))
    assert 3 in [r.key for r in rest]


async def test_fan_out_resumes_the_children_not_the_parent(path: Path) -> None:
    rec = Recorder()
    rec.gate("leaf")

    async def split(x: int) -> list[int]:
        rec.started["split", x] += 1
        return [x * 10 + i for i in range(3)]

    def pipeline() -> Pipeline:
        return Pipeline(
            Stage("split", split, fan_out=True, workers=2),
            Stage("leaf", rec.function("leaf", lambda v: -v), workers=1, buffer=1),
            journal=path,
        )

    async with pipeline().stream(range(4)) as results:
        await rec.until(lambda: rec.running("leaf") == 1)
    split_calls = results.statistics().stages[0].done
    assert split_calls >= 1
    summary = Journal(path).summary()
    assert summary.fanned_out == split_calls
    assert summary.waiting == {"leaf": 3 * split_calls}

    rec.open("leaf")
    rest = await pipeline().run(range(4))
    assert [r.key for r in rest] == [(x, i) for x in range(4) for i in range(3)]
    assert [r.value for r in rest] == [
        -(x * 10 + i) for x in range(4) for i in range(3)
    ]
    # Parents that had fanned out were not split again.
    assert all(rec.started["split", x] == 1 for x in range(4))


async def test_batch_members_resume_one_by_one(path: Path) -> None:
    rec = Recorder()
    rec.gate("save")
    sizes: list[int] = []

    async def save(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        return batch

    def pipeline(save_fn: Any) -> Pipeline:
        return Pipeline(
            Stage("prep", rec.function("prep"), workers=2),
            Stage("save", save_fn, batch_size=4, workers=1),
            journal=path,
        )

    async with pipeline(rec.function("save")).stream(range(10)):
        # All ten through "prep": four in the running batch, four waiting in
        # "save", two parked before it.
        await rec.until(lambda: rec.finished("prep") == 10 and rec.running("save") == 1)
    assert Journal(path).summary().waiting == {"save": 10}
    rec.open("save")
    rest = await pipeline(save).run(range(10))
    assert [r.value for r in rest] == list(range(10))
    assert rec.calls("prep") == 10  # none repeated
    assert sum(sizes) == 10


async def test_an_unstorable_value_sets_only_that_item_aside(path: Path) -> None:
    async def make(x: int) -> Any:
        return (lambda: x) if x == 2 else x  # a lambda cannot be pickled

    async def keep(x: Any) -> Any:
        return x

    pipeline = Pipeline(Stage("make", make), Stage("keep", keep), journal=path)
    results = await pipeline.run(range(4))
    failed = results[2]
    assert isinstance(failed, Failed)
    assert failed.stage == "make"
    assert isinstance(failed.error, JournalError)
    assert "journal cannot store" in str(failed.error)
    assert [r.ok for r in results] == [True, True, False, True]


async def test_a_custom_codec(path: Path) -> None:
    class JsonCodec:
        @staticmethod
        def dumps(value: Any) -> bytes:
            return json.dumps(value).encode()

        @staticmethod
        def loads(data: bytes) -> Any:
            return json.loads(data)

    rec = Recorder()
    rec.gate("text")
    journal = Journal(path, codec=JsonCodec(), durable=True)
    async with three_stages(rec, journal).stream(range(5)):
        await rec.until(lambda: rec.running("text") == 2)
    # The values between stages are readable JSON.
    with closing(sqlite3.connect(path)) as db:
        blobs = [row[0] for row in db.execute("SELECT value FROM antflow_items")]
    assert blobs
    assert all(isinstance(json.loads(blob), int) for blob in blobs)
    rec.open("text")
    rest = await three_stages(rec, journal).run(range(5))
    assert [r.value for r in rest] == [str(x * 2 + 1) for x in range(5)]


async def test_records_are_saved_in_batches(path: Path) -> None:
    async def noop(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x

    pipeline = Pipeline(
        Stage("a", noop, workers=20), Stage("b", noop, workers=20), journal=path
    )
    async with pipeline.stream(range(1000), ordered=False) as results:
        assert len([r async for r in results]) == 1000
    stats = results.statistics()
    assert stats.journal_saved == 2000
    # Group commit: many records per transaction under load.
    assert stats.journal_flushes < stats.journal_saved / 5
    assert stats.journal_seconds > 0


# -- keys (docs/pipelines.md, "Keys") --------------------------------------------------


async def test_duplicate_keys_in_flight_are_an_error(path: Path) -> None:
    rec = Recorder()
    rec.gate("text")
    with pytest.raises(ValueError, match="two source items have the key 1"):
        async with three_stages(rec, path).stream([1, 2, 1]) as results:
            async for _ in results:
                pass


async def test_a_key_of_no_stable_form_is_refused(path: Path) -> None:
    rec = Recorder()
    with pytest.raises(TypeError, match="pass key= to Pipeline"):
        await three_stages(rec, path).run([{"id": 1}])
    results = await three_stages(rec, path, key=lambda d: d["id"]).run(
        [{"id": 1}, {"id": 2}]
    )
    assert [r.key for r in results] == [1, 2]


def test_key_texts_are_distinct_and_stable() -> None:
    keys = [
        "1",
        1,
        1.0,
        True,
        b"1",
        None,
        (1,),
        ("1",),
        (1, 2),
        ((1, 2),),
        PurePosixPath("a/b"),
        "a/b",
        "",
        (),
    ]
    texts = [encode_key(k) for k in keys]
    assert len(set(texts)) == len(keys)
    assert encode_key(("doc", 3)) == 't["sdoc", "i3"]'
    # Children never collide with source keys, whatever those are.
    assert child_ref(encode_key("x"), 2) == "c2:sx"
    assert not any(text.startswith("c") for text in texts)
    with pytest.raises(TypeError, match="got object"):
        encode_key(object())
    with pytest.raises(TypeError, match="got list"):
        encode_key((1, [2]))


# -- the file and what it refuses (docs/pipelines.md, "What the file holds, and what it refuses")


async def test_the_file_is_created_readable_by_its_owner_only(path: Path) -> None:
    rec = Recorder()
    rec.gate("text")
    async with three_stages(rec, path).stream(range(5)):
        await rec.until(lambda: rec.running("text") == 2)
        files = list(path.parent.iterdir())
        assert len(files) == 2  # the journal and its write-ahead log
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_another_pipelines_journal_is_refused(path: Path) -> None:
    rec = Recorder()
    await three_stages(rec, path).run(range(3))
    other = Pipeline(
        Stage("double", rec.function("x")),
        Stage("other", rec.function("y")),
        journal=path,
    )
    before = Counter(rec.started)
    with pytest.raises(JournalError, match="journal of another pipeline") as caught:
        async with other.stream(range(3)):
            pytest.fail("never entered")
    assert "double (map), inc (map), text (map)" in str(caught.value)
    assert "double (map), other (map)" in str(caught.value)
    assert rec.started == before  # nothing ran
    # A different kind of stage under the same name is another pipeline too.
    fanned = Pipeline(
        Stage("double", rec.function("double"), fan_out=True),
        Stage("inc", rec.function("inc")),
        Stage("text", rec.function("text")),
        journal=path,
    )
    with pytest.raises(JournalError, match="double \\(fan_out\\)"):
        await fanned.run(range(3))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a database at all, just text\n" * 50, "not an antflow journal"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "corrupt or not an antflow journal"),
    ],
)
async def test_a_file_that_is_not_a_journal_is_refused(
    path: Path, content: bytes, message: str
) -> None:
    path.write_bytes(content)
    path.chmod(0o600)
    rec = Recorder()
    with pytest.raises(JournalError, match=message):
        await three_stages(rec, path).run(range(3))
    assert path.read_bytes() == content  # untouched
    assert not rec.started


async def test_another_programs_database_is_refused(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE notes (text TEXT)")
    path.chmod(0o600)
    with pytest.raises(JournalError, match="SQLite file but not an antflow journal"):
        await three_stages(Recorder(), path).run(range(3))


async def test_a_corrupt_journal_is_refused_before_anything_runs(path: Path) -> None:
    rec = Recorder()
    await three_stages(rec, path).run(range(300))
    with closing(sqlite3.connect(path)) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'antflow_items'"
        ).fetchone()
    data = bytearray(path.read_bytes())
    offset = (root - 1) * page_size
    data[offset : offset + 8] = b"\x07" * 8  # the table's root: no valid page type
    path.write_bytes(bytes(data))
    before = Counter(rec.started)
    with pytest.raises(JournalError, match="corrupt"):
        await three_stages(rec, path).run(range(300))
    assert rec.started == before


async def test_a_journal_of_another_format_is_refused(path: Path) -> None:
    rec = Recorder()
    await three_stages(rec, path).run(range(3))
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(JournalError, match="journal format 99"):
        await three_stages(rec, path).run(range(3))


async def test_a_journal_others_may_write_is_refused(path: Path) -> None:
    rec = Recorder()
    await three_stages(rec, path).run(range(3))
    path.chmod(0o620)
    with pytest.raises(JournalError, match="writable by other users"):
        await three_stages(rec, path).run(range(3))
    path.chmod(0o644)  # readable is the owner's business, writable is not
    await three_stages(rec, path).run(range(3))


@pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown"
)
async def test_a_journal_of_another_user_is_refused(path: Path) -> None:
    rec = Recorder()
    await three_stages(rec, path).run(range(3))
    os.chown(path, 65534, 65534)
    with pytest.raises(JournalError, match="belongs to another user"):
        await three_stages(rec, path).run(range(3))


async def test_a_journal_in_use_by_another_run_is_refused(path: Path) -> None:
    rec = Recorder()
    rec.gate("text")
    async with three_stages(rec, path).stream(range(5)):
        await rec.until(lambda: rec.running("text") == 2)
        with pytest.raises(JournalError, match="in use by another run"):
            async with three_stages(rec, path).stream(range(5)):
                pass


async def test_an_empty_file_becomes_a_journal(path: Path) -> None:
    path.touch(mode=0o600)
    results = await three_stages(Recorder(), path).run(range(3))
    assert len(results) == 3


def test_summary_of_no_journal() -> None:
    with pytest.raises(JournalError, match="no journal at"):
        Journal("/nonexistent/run.journal").summary()


def test_journal_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="path must be"):
        Journal(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="codec must have dumps"):
        Journal("x", codec=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="durable must be a bool"):
        Journal("x", durable=1)  # type: ignore[arg-type]
    assert repr(Journal("x")) == "Journal('x')"


async def test_an_async_source_resumes_too(path: Path) -> None:
    """A journal that knows items looks each key up; an async source is read
    ahead by a small reader task, in chunks of what is there."""
    rec = Recorder()

    async def numbers(count: int) -> Any:
        for n in range(count):
            await anyio.lowlevel.checkpoint()
            yield n

    first = await three_stages(rec, path).run(numbers(5))
    assert [r.key for r in first] == list(range(5))
    rest = await three_stages(rec, path).run(numbers(600))
    assert [r.key for r in rest] == list(range(5, 600))
    assert set(rec.started.values()) == {1}


async def test_a_value_the_codec_cannot_read_back_stops_the_run(path: Path) -> None:
    class Fussy:
        @staticmethod
        def dumps(value: Any) -> bytes:
            return json.dumps(value).encode()

        @staticmethod
        def loads(data: bytes) -> Any:
            raise ValueError("cannot read this back")

    rec = Recorder()
    rec.gate("text")
    journal = Journal(path, codec=Fussy())
    async with three_stages(rec, journal).stream(range(3)):
        await rec.until(lambda: rec.running("text") == 2)
    with pytest.raises(JournalError, match="cannot read the value"):
        await three_stages(rec, journal).run(range(3))
