"""The journal on disk: one SQLite file, used from one worker thread at a time.

Everything here is blocking and runs in a thread (``anyio.to_thread``); the
async side (`_journal`) decides when. The file holds one row per item:

====== =========================================================
key    the item's key as stable text (see `_keys`)
stage  how many stages the item has finished (for a set-aside item:
       the stage that failed it)
state  in progress, done, set aside, or fanned out into children
value  what the last finished stage handed on (needed to resume at
       the next one); for a finished item, its result if the journal
       keeps results; else NULL
error  for a set-aside item: the exception's type and message
count  for a fanned-out item: how many children it made
====== =========================================================

Source items are never stored; final results only with ``keep_results``. Every batch of records is
one transaction, so after any crash the file holds a prefix of what the run
recorded: each item is in a state it really went through.

Safety on open (SPEC, "Trust boundaries"): a new file is created 0600; an
existing one must belong to this user and be writable by nobody else, since
its values are unpickled; it must be an SQLite file whose application id says
antflow, pass ``PRAGMA quick_check``, and name the same stages as the
pipeline. Anything else is refused before a single item runs. The file is
held with an exclusive lock while open, so two runs never share it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from antflow import AntFlowError

__all__ = [
    "DONE",
    "FANNED",
    "IN_PROGRESS",
    "NOTHING",
    "SET_ASIDE",
    "Codec",
    "JournalError",
    "JournalFile",
    "Record",
    "RecordedError",
    "Row",
]

IN_PROGRESS, DONE, SET_ASIDE, FANNED = range(4)

APPLICATION_ID = 0x416E7446  # "AntF", in the SQLite header
FORMAT = 1  # PRAGMA user_version
SQLITE_MAGIC = b"SQLite format 3\x00"
LOOKUP_CHUNK = 500  # keys per SELECT, well below SQLite's variable limit

_SCHEMA = (
    "CREATE TABLE antflow_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TABLE antflow_items (key TEXT PRIMARY KEY, stage INTEGER NOT NULL, "
    "state INTEGER NOT NULL, value BLOB, error TEXT, count INTEGER) WITHOUT ROWID",
)
_ADVANCE = "INSERT OR REPLACE INTO antflow_items VALUES (?, ?, 0, ?, NULL, NULL)"
_DONE = "INSERT OR REPLACE INTO antflow_items VALUES (?, ?, 1, ?, NULL, NULL)"
_FANNED = "INSERT OR REPLACE INTO antflow_items VALUES (?, ?, 3, NULL, NULL, ?)"
# A set-aside item keeps the value it entered the failing stage with, so a
# later run can retry it there.
_SET_ASIDE = (
    "INSERT INTO antflow_items VALUES (?, ?, 2, NULL, ?, NULL) "
    "ON CONFLICT(key) DO UPDATE SET stage = excluded.stage, state = 2, "
    "error = excluded.error"
)


#: ``(state, key, stage, extra)``, one change to one item's row.
Record = tuple[int, str, int, Any]


class JournalError(AntFlowError):
    """A journal that cannot be used: another pipeline's, corrupt, unsafe,
    or in use by another process. Nothing has run when it is raised at
    open."""


class RecordedError(AntFlowError):
    """The error that set an item aside in an earlier run, as the journal
    recorded it: its type and message, as text (``str(error)``)."""


class Codec(Protocol):
    """How values are stored: ``pickle`` fits, and so does any object with
    these two functions."""

    def dumps(self, obj: Any, /) -> bytes: ...
    def loads(self, data: bytes, /) -> Any: ...


class _Nothing:
    def __repr__(self) -> str:
        return "NOTHING"


#: `Row.value` when the journal stored no value.
NOTHING: Any = _Nothing()


class Row(NamedTuple):
    """What the journal knows about one item."""

    stage: int
    state: int
    value: Any  # decoded; NOTHING when no value was stored
    error: str | None
    children: int | None


class JournalFile:
    """An open journal file. Not thread-safe: one call at a time."""

    def __init__(
        self,
        path: str,
        stages: Sequence[tuple[str, str]] | None,
        codec: Codec,
        durable: bool,
    ) -> None:
        """Open (or create) and check the file; ``stages=None`` only inspects
        an existing journal, whatever its pipeline."""
        self.path = path
        self._codec = codec
        self._fingerprint = (
            None if stages is None else json.dumps([list(stage) for stage in stages])
        )
        #: The stage names the file was written for.
        self.stages: list[str] = [] if stages is None else [name for name, _ in stages]
        _prepare_file(path)
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as error:
            raise JournalError(f"cannot open journal {path}: {error}") from error
        try:
            self._open(durable)
        except sqlite3.DatabaseError as error:
            self._db.close()
            if "locked" in str(error):
                raise JournalError(
                    f"journal {path} is in use by another run; one journal serves "
                    "one run at a time"
                ) from error
            raise JournalError(
                f"{path} is corrupt or not an antflow journal: {error}"
            ) from error
        except BaseException:
            self._db.close()
            raise

    def _open(self, durable: bool) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 0")
        # Exclusive: the lock taken below is held until close, so a second
        # run on the same file is refused instead of doing the work twice.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a committed batch survives the process dying in any way;
        # FULL also survives a power cut, at the cost of an fsync per batch.
        db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        db.execute("BEGIN IMMEDIATE")
        try:
            application_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if application_id == 0 and tables == 0:
                if self._fingerprint is None:
                    raise JournalError(f"{self.path} is an empty journal")
                self._create()
            else:
                self._check(application_id)
            #: True when the file knows no item (new, or nothing recorded yet).
            self.empty = (
                db.execute("SELECT 1 FROM antflow_items LIMIT 1").fetchone() is None
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _create(self) -> None:
        db = self._db
        assert self._fingerprint is not None
        for statement in _SCHEMA:  # not executescript(): it would commit first
            db.execute(statement)
        db.executemany(
            "INSERT INTO antflow_meta VALUES (?, ?)",
            [
                ("pipeline", self._fingerprint),
                ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            ],
        )
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {FORMAT}")

    def _check(self, application_id: int) -> None:
        db = self._db
        if application_id != APPLICATION_ID:
            raise JournalError(
                f"{self.path} is an SQLite file but not an antflow journal"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != FORMAT:
            raise JournalError(
                f"{self.path} has journal format {version}; this antflow reads {FORMAT}"
            )
        problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise JournalError(f"{self.path} is corrupt: {'; '.join(problems)}")
        row = db.execute(
            "SELECT value FROM antflow_meta WHERE name = 'pipeline'"
        ).fetchone()
        if row is None:
            raise JournalError(f"{self.path} is corrupt: it names no pipeline")
        try:
            self.stages = [str(name) for name, _ in json.loads(row[0])]
        except (ValueError, TypeError) as error:
            raise JournalError(
                f"{self.path} is corrupt: unreadable pipeline"
            ) from error
        if self._fingerprint is not None and row[0] != self._fingerprint:
            raise JournalError(
                f"{self.path} is the journal of another pipeline (stages "
                f"{_describe(row[0])}); this pipeline has stages "
                f"{_describe(self._fingerprint)}. Use a new journal file."
            )

    # -- used while a run goes on ---------------------------------------------

    def lookup(self, refs: Sequence[str]) -> dict[str, Row]:
        """What the journal knows about these keys (absent: nothing)."""
        found: dict[str, Row] = {}
        loads = self._codec.loads
        for start in range(0, len(refs), LOOKUP_CHUNK):
            chunk = refs[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT key, stage, state, value, error, count FROM antflow_items "
                f"WHERE key IN ({marks})"
            )
            rows = self._db.execute(query, chunk)
            for key, stage_, state, blob, error_text, count in rows:
                try:
                    value = NOTHING if blob is None else loads(blob)
                except Exception as error:
                    raise JournalError(
                        f"cannot read the value {self.path} holds for item {key!r}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                found[key] = Row(stage_, state, value, error_text, count)
        return found

    def save(self, records: Iterable[Record]) -> None:
        """Write one batch of records in one transaction.

        Each record is ``(state, key, stage, extra)``: for IN_PROGRESS the
        encoded value, for DONE the encoded result or None, for SET_ASIDE
        the error text, for FANNED the count.
        """
        groups: list[list[tuple[Any, ...]]] = [[], [], [], []]  # by state
        for state, key, stage_, extra in records:
            groups[state].append((key, stage_, extra))
        db = self._db
        db.execute("BEGIN")
        try:
            for sql, rows in zip(
                (_ADVANCE, _DONE, _SET_ASIDE, _FANNED), groups, strict=True
            ):
                if rows:
                    db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def summary(self) -> dict[str, Any]:
        """Counts by state, and in-progress items by the stage they resume at."""
        states = dict(
            self._db.execute(
                "SELECT state, count(*) FROM antflow_items GROUP BY state"
            ).fetchall()
        )
        waiting = dict(
            self._db.execute(
                "SELECT stage, count(*) FROM antflow_items WHERE state = 0 GROUP BY stage"
            ).fetchall()
        )
        return {"states": states, "waiting": waiting}

    def close(self) -> None:
        self._db.close()


def _prepare_file(path: str) -> None:
    """Create the file 0600, or check that an existing one is safe to load."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as error:
        raise JournalError(f"cannot create journal {path}: {error}") from error
    else:
        os.close(fd)
        return
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise JournalError(f"journal {path} is not a regular file")
    getuid = getattr(os, "getuid", None)  # POSIX only
    if getuid is not None:
        if info.st_uid != getuid():
            raise JournalError(
                f"journal {path} belongs to another user; refusing to load its values"
            )
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise JournalError(
                f"journal {path} is writable by other users; refusing to load its "
                f"values (chmod 600 {path} if you trust its content)"
            )
    if info.st_size:
        with open(path, "rb") as file:
            if file.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                raise JournalError(f"{path} is not an antflow journal (not SQLite)")


def _describe(fingerprint: str) -> str:
    try:
        stages = json.loads(fingerprint)
        return ", ".join(f"{name} ({kind})" for name, kind in stages)
    except (ValueError, TypeError):
        return repr(fingerprint)
