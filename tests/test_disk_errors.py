"""A failing disk must not break a node: environmental errors are told apart
from SQL errors, entries apply all or nothing, and the driver keeps a Ready it
could not persist until the disk works again.

The disk is made to fail deterministically: `PRAGMA max_page_count` on the
state machine's writer (SQLITE_FULL at a chosen size), a VFS shim that fails
writes or fsyncs on demand for raft.db, and storage that fails on demand for
the driver.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import apsw
import pytest

from rqlite_py import authorizer, command, db, disk, driver, fsm, transport, wire
from rqlite_py.command import Command, Kind, Statement
from rqlite_py.disk import DiskError
from rqlite_py.driver import Driver, Timing
from rqlite_py.logstore import LogStore
from rqlite_py.raft.storage import bootstrap_entry
from rqlite_py.raft.types import (
    ConfState,
    Entry,
    HardState,
    Index,
    Message,
    MsgType,
    NodeId,
    SnapshotMeta,
    Term,
)
from rqlite_py.results import QueryResult, Result
from rqlite_py.snapshots import SnapshotStore


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.005)
    raise TimeoutError(f"timed out waiting for {what}")


def cmd(*sql: str, tx: bool = False, kind: Kind = Kind.EXECUTE, budget: int = 0) -> bytes:
    return command.encode(Command(kind, tuple(Statement(s) for s in sql), tx, budget))


def entry(i: int, data: bytes, term: int = 1) -> Entry:
    return Entry(Term(term), Index(i), data)


def rows(m: fsm.StateMachine, sql: str) -> list[tuple[object, ...]]:
    return list(m.db.writer.execute(sql))


def fill_up(m: fsm.StateMachine, spare_pages: int = 0) -> None:
    """The database may not grow by more than `spare_pages` pages: SQLITE_FULL."""
    pages = m.db.writer.execute("PRAGMA page_count").fetchone()[0]
    with authorizer.trusted():
        m.db.writer.execute(f"PRAGMA max_page_count={pages + spare_pages}")


def make_room(m: fsm.StateMachine) -> None:
    with authorizer.trusted():
        m.db.writer.execute("PRAGMA max_page_count=1000000")


BIG = "INSERT INTO t(v) VALUES(zeroblob(200000))"
BIG_T = "INSERT INTO t VALUES(zeroblob(200000))"


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[fsm.StateMachine]:
    m = fsm.StateMachine(db.Database(str(tmp_path / "db.sqlite")))
    m.apply([entry(1, cmd("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"))])
    yield m
    m.db.close()


# --- one place decides what is environmental ----------------------------------


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (apsw.FullError("database or disk is full"), disk.FULL),
        (apsw.IOError("disk I/O error"), disk.IO),
        (apsw.CantOpenError("unable to open database file"), disk.CANT_OPEN),
        (
            apsw.ReadOnlyError("attempt to write a readonly database"),
            "attempt to write a readonly database",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), disk.FULL),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), disk.FULL),
        (OSError(errno.EIO, "Input/output error"), disk.IO),
    ],
)
def test_environmental_errors_become_disk_errors(error: Exception, message: str) -> None:
    d = disk.environmental(error)
    assert isinstance(d, DiskError) and str(d) == message


@pytest.mark.parametrize(
    "error",
    [
        apsw.SQLError("no such table: x"),
        apsw.ConstraintError("UNIQUE constraint failed: t.v"),
        apsw.InterruptError("interrupted"),  # db_timeout: the same on every node
        apsw.TooBigError("string or blob too big"),
        apsw.NotADBError("file is not a database"),  # a loaded file: the client's
        apsw.CantOpenError("unable to open database: /no/such/dir/x.db"),  # ATTACH's own path
        OSError(errno.ENOENT, "No such file or directory"),
        ValueError("not about the disk"),
    ],
)
def test_sql_errors_are_not_environmental(error: Exception) -> None:
    assert disk.environmental(error) is None


def test_a_read_that_meets_a_disk_error_raises_instead_of_answering(tmp_path: Path) -> None:
    d = db.Database(str(tmp_path / "db.sqlite"))
    d.writer.execute("CREATE TABLE t(v)")

    def broken(*args: object, **kw: object) -> Result:
        raise DiskError(disk.IO)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db, "_run_one", broken)
        with pytest.raises(DiskError):
            d.query([Statement("SELECT * FROM t")], transaction=False)
    d.close()


# --- the state machine: all or nothing -------------------------------------------


def test_a_full_disk_leaves_no_part_of_an_entry_and_the_retry_applies_it_once(
    machine: fsm.StateMachine,
) -> None:
    e = entry(2, cmd("INSERT INTO t(v) VALUES('a')", "INSERT INTO t(v) VALUES('b')", BIG))
    fill_up(machine)
    with pytest.raises(DiskError, match="database or disk is full"):
        machine.apply_entry(e)
    assert machine.applied_index == 1
    assert rows(machine, "SELECT v FROM t") == []  # 'a' and 'b' were rolled back too
    assert machine.db.writer.get_autocommit()
    with pytest.raises(DiskError):  # still full: still nothing
        machine.apply_entry(e)
    assert rows(machine, "SELECT count(*) FROM t") == [(0,)]
    make_room(machine)
    results = machine.apply_entry(e)
    assert machine.applied_index == 2
    assert [r.error for r in results] == ["", "", ""]
    assert [r.last_insert_id for r in results] == [1, 2, 3]  # type: ignore[union-attr]
    assert rows(machine, "SELECT id FROM t") == [(1,), (2,), (3,)]


def test_apply_of_a_batch_stops_at_the_entry_that_failed(machine: fsm.StateMachine) -> None:
    batch = [
        entry(2, cmd("INSERT INTO t(v) VALUES('small')")),
        entry(3, cmd(BIG)),
        entry(4, cmd("INSERT INTO t(v) VALUES('after')")),
    ]
    machine.apply([batch[0]])
    fill_up(machine)
    with pytest.raises(DiskError):
        machine.apply(batch[1:])
    assert machine.applied_index == 2
    make_room(machine)
    machine.apply(batch[1:])
    assert rows(machine, "SELECT count(*) FROM t") == [(3,)]


def test_a_sql_error_in_a_request_without_transaction_keeps_the_statements_before_it(
    machine: fsm.StateMachine,
) -> None:
    [results] = machine.apply(
        [
            entry(
                2,
                cmd(
                    "INSERT INTO t(v) VALUES('kept')",
                    "INSERT INTO nope VALUES(1)",
                    "INSERT INTO t(v) VALUES('also kept')",
                ),
            )
        ]
    )
    assert [r.error for r in results] == ["", "no such table: nope", ""]
    assert rows(machine, "SELECT v FROM t") == [("kept",), ("also kept",)]
    assert machine.applied_index == 2


def test_a_transaction_that_meets_a_full_disk_is_retried_whole(
    machine: fsm.StateMachine,
) -> None:
    e = entry(2, cmd("INSERT INTO t(v) VALUES('a')", BIG, tx=True))
    fill_up(machine)
    with pytest.raises(DiskError):
        machine.apply_entry(e)
    assert rows(machine, "SELECT count(*) FROM t") == [(0,)]
    make_room(machine)
    assert [r.error for r in machine.apply_entry(e)] == ["", ""]
    assert rows(machine, "SELECT count(*) FROM t") == [(2,)]


def test_the_commit_itself_failing_is_a_disk_error_too(
    tmp_path: Path, failing_vfs: FailingVFS
) -> None:
    """The statements run in the page cache; writing them to the WAL at
    RELEASE fails (a VFS shim under the state machine's database)."""
    m = fsm.StateMachine(db.Database(str(tmp_path / "vfs.sqlite")))
    m.apply([entry(1, cmd("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"))])
    e = entry(2, cmd("INSERT INTO t(v) VALUES('a')", "INSERT INTO t(v) VALUES('b')"))
    for error, message in ((apsw.FullError, disk.FULL), (apsw.IOError, disk.IO)):
        failing_vfs.fail_writes = error
        with pytest.raises(DiskError, match=message):
            m.apply_entry(e)
        failing_vfs.fail_writes = None
        assert m.applied_index == 1 and m.db.writer.get_autocommit()
        assert rows(m, "SELECT count(*) FROM t") == [(0,)]
    m.apply_entry(e)
    assert rows(m, "SELECT v FROM t") == [("a",), ("b",)]
    m.db.close()


def test_an_entry_that_manages_its_own_transaction_is_rebuilt_after_failing_halfway(
    machine: fsm.StateMachine,
) -> None:
    """PRAGMA makes the entry run unwrapped: the first INSERT commits on its own
    before the disk fills, so the database holds part of the entry and must be
    rebuilt from the log before the entry is tried again."""
    log = [
        entry(1, cmd("CREATE TABLE t(id INTEGER PRIMARY KEY, v)")),
        entry(2, cmd("INSERT INTO t(v) VALUES('before')")),
    ]
    machine.apply(log[1:])
    e = entry(3, cmd("INSERT INTO t(v) VALUES('partial')", "PRAGMA user_version", BIG))
    fill_up(machine)
    with pytest.raises(DiskError):
        machine.apply_entry(e)
    assert machine.needs_rebuild and machine.applied_index == 2
    assert rows(machine, "SELECT v FROM t") == [("before",), ("partial",)]  # the half
    with pytest.raises(DiskError, match="rebuilt"):
        machine.apply_entry(e)
    make_room(machine)
    machine.rebuild(None, 0, ConfState(), iter(log))
    assert not machine.needs_rebuild
    assert rows(machine, "SELECT v FROM t") == [("before",)]
    machine.apply_entry(e)
    assert machine.applied_index == 3
    assert rows(machine, "SELECT count(*) FROM t WHERE typeof(v) = 'blob'") == [(1,)]
    assert rows(machine, "SELECT v FROM t WHERE typeof(v) = 'text'") == [
        ("before",),
        ("partial",),
    ]


def test_rebuild_starts_from_the_snapshot(machine: fsm.StateMachine, tmp_path: Path) -> None:
    machine.apply([entry(2, cmd("INSERT INTO t(v) VALUES('in snapshot')"))])
    assert machine.db.checkpoint(1000)
    snap = tmp_path / "snap.sqlite"
    shutil.copyfile(machine.db.path, snap)
    later = [entry(3, cmd("INSERT INTO t(v) VALUES('after')"))]
    machine.apply(later)
    machine.db.writer.execute("INSERT INTO t(v) VALUES('stray half entry')")
    machine.needs_rebuild = True
    machine.rebuild(str(snap), 2, ConfState(), iter(later))
    assert rows(machine, "SELECT v FROM t") == [("in snapshot",), ("after",)]
    assert rows(machine, "PRAGMA journal_mode") == [("wal",)]
    assert not (tmp_path / "db.sqlite.rebuild").exists()


def load_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_id: bytes) -> list[bytes]:
    """The log entries' data of a /db/load of a 50 kB database, in 16 kB pieces."""
    src = db.Database(str(tmp_path / "src.sqlite"))
    src.writer.execute("CREATE TABLE loaded(x); INSERT INTO loaded VALUES(zeroblob(50000))")
    with authorizer.trusted():
        src.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    src.close()
    monkeypatch.setattr(command, "LOAD_CHUNK_BYTES", 16384)
    return command.encode_load_chunks((tmp_path / "src.sqlite").read_bytes(), load_id)


def test_the_last_piece_of_a_load_is_retried_without_losing_the_load(
    machine: fsm.StateMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = load_pieces(tmp_path, monkeypatch, b"c" * 16)
    assert len(chunks) > 2
    machine.apply([entry(i + 2, c) for i, c in enumerate(chunks[:-1])])
    last = entry(len(chunks) + 1, chunks[-1])
    fill_up(machine)
    for _ in range(2):
        with pytest.raises(DiskError):
            machine.apply_entry(last)
        assert machine.is_staging
    make_room(machine)
    machine.apply_entry(last)
    assert not machine.is_staging
    assert rows(machine, "SELECT length(x) FROM loaded") == [(50000,)]


def test_a_piece_of_a_load_that_cannot_be_staged_is_written_again_at_its_offset(
    machine: fsm.StateMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = load_pieces(tmp_path, monkeypatch, b"d" * 16)
    machine.apply([entry(2, chunks[0])])
    real_open = open

    class HalfWritten:
        """A file on a disk that fills up halfway through the write."""

        def __init__(self, f: object) -> None:
            self.f = f

        def __getattr__(self, name: str) -> object:
            return getattr(self.f, name)

        def __enter__(self) -> HalfWritten:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            self.f.write(data[: len(data) // 2])  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_open(path: str, mode: str = "r", *a: object, **kw: object) -> object:
        f = real_open(path, mode, *a, **kw)  # type: ignore[call-overload]
        if str(path).endswith(".load") and mode != "rb":
            return HalfWritten(f)
        return f

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(DiskError):
        machine.apply_entry(entry(3, chunks[1]))
    monkeypatch.setattr("builtins.open", real_open)
    machine.apply([entry(i + 2, c) for i, c in enumerate(chunks) if i >= 1])
    assert rows(machine, "SELECT length(x) FROM loaded") == [(50000,)]


# --- wrapped entries answer exactly as unwrapped ones ----------------------------

Sql = str | tuple[str, tuple[object, ...]]
"""A statement, alone or with positional parameters."""

_INS = "INSERT INTO u(v) VALUES(?)"
_INS_R = "INSERT INTO r VALUES(?)"
_INS_CH = "INSERT INTO ch VALUES(?)"


def _rows(sql: str, *values: object) -> tuple[Sql, ...]:
    """A run of the same statement, one row per value: what db.run batches."""
    return tuple((sql, (v,)) for v in values)


SEMANTICS: list[tuple[tuple[Sql, ...], bool, Kind, int]] = [
    (("CREATE TABLE u(id INTEGER PRIMARY KEY, v UNIQUE)",), False, Kind.EXECUTE, 0),
    (
        ("INSERT INTO u(v) VALUES(1)", "INSERT INTO u(v) VALUES(1)", "INSERT INTO u(v) VALUES(3)"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (("INSERT INTO u(v) VALUES(4)", "INSERT INTO u(v) VALUES(4)"), True, Kind.EXECUTE, 0),
    (("INSERT INTO u(v) VALUES(5)", "SELECT * FROM nope"), True, Kind.EXECUTE, 0),
    (("CREATE TABLE r(x UNIQUE ON CONFLICT ROLLBACK)",), False, Kind.EXECUTE, 0),
    (
        (
            "INSERT INTO r VALUES(1)",
            "INSERT INTO u(v) VALUES(10)",
            "INSERT INTO r VALUES(1)",
            "INSERT INTO u(v) VALUES(11)",
        ),
        False,
        Kind.EXECUTE,
        0,
    ),
    (("INSERT INTO u(v) VALUES(12)", "INSERT INTO r VALUES(1)"), True, Kind.EXECUTE, 0),
    (
        (
            "INSERT INTO u(v) VALUES(13)",
            "INSERT OR ROLLBACK INTO u(v) VALUES(13)",
            "INSERT INTO u(v) VALUES(14)",
        ),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        ("INSERT INTO u(v) VALUES(20); INSERT INTO u(v) VALUES(21); INSERT INTO u(v) VALUES(20)",),
        False,
        Kind.EXECUTE,
        0,
    ),
    (("BEGIN", "INSERT INTO u(v) VALUES(40)", "COMMIT"), False, Kind.EXECUTE, 0),
    (("COMMIT",), False, Kind.EXECUTE, 0),
    (
        ("INSERT INTO u(v) VALUES(41)", "ROLLBACK", "INSERT INTO u(v) VALUES(42)"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        ("SAVEPOINT a", "INSERT INTO u(v) VALUES(50)", "ROLLBACK TO a", "RELEASE a"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        (
            "CREATE TABLE audit(x)",
            "CREATE TRIGGER tg AFTER INSERT ON u BEGIN INSERT INTO audit VALUES(new.v); END",
        ),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        ("INSERT INTO u(v) VALUES(60)", "/* c */ INSERT INTO u(v) VALUES(61) RETURNING id, v"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        (
            "CREATE TABLE g(x)",
            "CREATE TRIGGER guard BEFORE INSERT ON g WHEN new.x < 0 BEGIN "
            "SELECT RAISE(ROLLBACK, 'negative'); END",
        ),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        ("INSERT INTO g VALUES(1)", "INSERT INTO g VALUES(-1)", "INSERT INTO g VALUES(2)"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        (
            "INSERT INTO u(v) VALUES(70)",
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c LIMIT 2000000) "
            "INSERT INTO g SELECT i FROM c",
            "INSERT INTO u(v) VALUES(71)",
        ),
        False,
        Kind.EXECUTE,
        1000,
    ),
    (("VACUUM",), False, Kind.EXECUTE, 0),
    (("PRAGMA user_version=7", "PRAGMA user_version"), False, Kind.EXECUTE, 0),
    (
        ("SELECT count(*) FROM u", "INSERT INTO u(v) VALUES(80)", "SELECT max(v) FROM u"),
        False,
        Kind.REQUEST,
        0,
    ),
    (("SELECT v FROM u ORDER BY v",), False, Kind.QUERY, 0),
    (
        (
            "CREATE TABLE p(id INTEGER PRIMARY KEY)",
            "CREATE TABLE ch(pid REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)",
        ),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        ("INSERT INTO ch VALUES(9)", "INSERT INTO p VALUES(1)", "INSERT INTO ch VALUES(1)"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (("INSERT INTO ch VALUES(9)", "INSERT INTO p VALUES(2)"), True, Kind.EXECUTE, 0),
    (("INSERT INTO p VALUES(3)", "INSERT INTO ch VALUES(3)"), True, Kind.EXECUTE, 0),
    (("BEGIN",), False, Kind.EXECUTE, 0),  # left open for the next requests
    (("INSERT INTO u(v) VALUES(90)", "INSERT INTO u(v) VALUES(90)"), False, Kind.EXECUTE, 0),
    (("INSERT INTO u(v) VALUES(91)",), True, Kind.EXECUTE, 0),  # BEGIN fails: rolls back
    (("BEGIN", "INSERT INTO u(v) VALUES(92)"), False, Kind.EXECUTE, 0),
    (
        ("INSERT INTO u(v) VALUES(93)", "INSERT INTO r VALUES(1)", "INSERT INTO u(v) VALUES(94)"),
        False,
        Kind.EXECUTE,
        0,
    ),
    (("INSERT INTO u(v) VALUES(95)",), False, Kind.EXECUTE, 0),
    (("COMMIT",), False, Kind.EXECUTE, 0),
    # Runs of one statement with parameters (batched by db.run) fail, lose
    # the transaction or break a deferred constraint at their first row, in
    # the middle and at the end.
    (_rows(_INS, 100, 101, 102, 103), False, Kind.EXECUTE, 0),
    (_rows(_INS, 100, 104, 104, 105, 106), False, Kind.EXECUTE, 0),
    (_rows(_INS, 107, 108, 109, 107), False, Kind.EXECUTE, 0),
    (_rows(_INS, 110, 111, 110, 112), True, Kind.EXECUTE, 0),
    (_rows(_INS, 113, 2**70, 114) + _rows(_INS, 115, 116), False, Kind.EXECUTE, 0),
    (((_INS, (117,)), (_INS, (118, 119)), (_INS, ()), (_INS, (120,))), False, Kind.EXECUTE, 0),
    (_rows(_INS, 121, 2**70), True, Kind.EXECUTE, 0),
    (_rows(_INS_R, 200, 201, 1, 202), False, Kind.EXECUTE, 0),
    (_rows(_INS, 130, 131) + _rows(_INS_R, 203, 1) + _rows(_INS, 132), False, Kind.EXECUTE, 0),
    (_rows("INSERT OR ROLLBACK INTO u(v) VALUES(?)", 140, 141, 140, 142), False, Kind.EXECUTE, 0),
    (_rows("INSERT INTO g VALUES(?)", 300, 301, -3, 302), False, Kind.EXECUTE, 0),
    (_rows(_INS_CH, 4, 5) + ("INSERT INTO p VALUES(4)",), False, Kind.EXECUTE, 0),
    (("INSERT INTO p VALUES(6)",) + _rows(_INS_CH, 6, 7, 6), False, Kind.EXECUTE, 0),
    (_rows(_INS_CH, 6, 8, 6) + ("INSERT INTO p VALUES(8)",), True, Kind.EXECUTE, 0),
    (
        _rows("INSERT INTO u(v) VALUES(?); INSERT INTO u(v) VALUES(?)", 150, 151),
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        (("INSERT INTO u(v) VALUES(?); INSERT INTO u(v) VALUES(?)", (152, 153)),) * 2,
        False,
        Kind.EXECUTE,
        0,
    ),
    (
        _rows(
            "WITH RECURSIVE c(i) AS (SELECT ? UNION ALL SELECT i+1 FROM c LIMIT 50000) "
            "INSERT INTO g SELECT i FROM c",
            1,
            1,
            1,
            1,
        ),
        False,
        Kind.EXECUTE,
        300,
    ),
    (_rows("SELECT v FROM u WHERE v > ?", 100, 200), False, Kind.EXECUTE, 0),
    (_rows(_INS, 160, 161), False, Kind.REQUEST, 0),
    (("BEGIN",) + _rows(_INS, 170, 171, 170, 172), False, Kind.EXECUTE, 0),
    (_rows(_INS, 173, 174), False, Kind.EXECUTE, 0),
    (_rows("PRAGMA user_version=?", 1, 2), False, Kind.EXECUTE, 0),
    (("COMMIT",), False, Kind.EXECUTE, 0),
    (_rows("SAVEPOINT ?", 1, 2), False, Kind.EXECUTE, 0),
]


def _statement(s: Sql) -> Statement:
    sql, params = (s, ()) if isinstance(s, str) else s
    return Statement(sql, params, returning="RETURNING" in sql)  # type: ignore[arg-type]


def _reference_apply(
    conn: apsw.Connection, sql: tuple[Sql, ...], tx: bool, kind: Kind, budget: int
) -> list[Result]:
    """What the state machine did before entries were wrapped and runs were
    batched: db.run alone, one statement at a time."""
    return db.run(
        conn,
        [_statement(s) for s in sql],
        transaction=tx,
        mode=fsm._MODES[kind],
        limit=db.step_budget(budget),
        timeout_error="query timeout" if kind is Kind.QUERY else "execute timeout",
        batch=False,
    )


def _comparable(results: list[Result]) -> list[Result]:
    return [replace(r, time=0.0) for r in results]


def _dump(conn: apsw.Connection) -> list[object]:
    out: list[object] = []
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
    ).fetchall():
        out.append((name, conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()))
    out.append(conn.execute("PRAGMA user_version").fetchone())
    return out


@pytest.mark.parametrize("foreign_keys", [True, False])
def test_wrapped_entries_give_the_results_and_data_of_unwrapped_ones(
    tmp_path: Path, foreign_keys: bool
) -> None:
    """Differential: every request through the state machine (one savepoint
    per entry, or unwrapped when it must be; runs batched) against plain
    db.run, the old way, on another database. With foreign keys on, for
    deferred constraints, and off, where a follower's batches run without
    counting. A follower (`counted=False`) must reach the same data and
    report the same errors."""

    def open_db(name: str) -> db.Database:
        return db.Database(str(tmp_path / name), foreign_keys=foreign_keys)

    ref = open_db("ref.sqlite")
    machine = fsm.StateMachine(open_db("db.sqlite"))
    follower = fsm.StateMachine(open_db("follower.sqlite"))
    for i, (sql, tx, kind, budget) in enumerate(SEMANTICS, start=1):
        stmts = tuple(_statement(s) for s in sql)
        data = command.encode(Command(kind, stmts, tx, budget))
        got = machine.apply_entry(entry(i, data))
        followed = follower.apply_entry(entry(i, data), counted=False)
        want = _reference_apply(ref.writer, sql, tx, kind, budget)
        assert _comparable(got) == _comparable(want), (i, sql)
        assert [r.error for r in followed] == [r.error for r in want], (i, sql)
        for m in (machine, follower):
            assert m.db.writer.get_autocommit() == ref.writer.get_autocommit(), (i, sql)
            assert _dump(m.db.writer) == _dump(ref.writer), (i, sql)
    assert machine.applied_index == follower.applied_index == len(SEMANTICS)
    fk_failed = any(
        r.error == db.FK_FAILED
        for r in _reference_apply(
            ref.writer, ("INSERT INTO ch VALUES(99)",), False, Kind.EXECUTE, 0
        )
    )
    assert fk_failed == foreign_keys


def test_a_multi_statement_entry_is_seen_by_readers_all_at_once(
    machine: fsm.StateMachine,
) -> None:
    seen: list[int] = []

    def peek() -> None:
        with machine.db.reader() as conn:
            seen.append(conn.execute("SELECT count(*) FROM t").fetchone()[0])

    machine.db.writer.create_scalar_function("peek", lambda: peek() or 0)
    machine.apply(
        [entry(2, cmd("INSERT INTO t(v) VALUES(1)", "SELECT peek()", "INSERT INTO t(v) VALUES(2)"))]
    )
    assert seen == [0]  # the first INSERT was not visible before the entry was done
    assert rows(machine, "SELECT count(*) FROM t") == [(2,)]


# --- raft.db through a VFS that fails on demand ------------------------------------


class _FailingFile(apsw.VFSFile):
    def __init__(self, vfs: FailingVFS, name: object, flags: list[int]) -> None:
        self._vfs = vfs
        super().__init__("unix", name, flags)  # type: ignore[arg-type]

    def xWrite(self, data: bytes, offset: int) -> None:  # noqa: N802 - apsw's name
        if self._vfs.fail_writes is not None:
            raise self._vfs.fail_writes()
        super().xWrite(data, offset)

    def xSync(self, flags: int) -> None:  # noqa: N802
        if self._vfs.fail_syncs is not None:
            raise self._vfs.fail_syncs()
        super().xSync(flags)


class FailingVFS(apsw.VFS):
    """The default VFS while installed: every connection opened meanwhile
    (LogStore's) writes through it, and fails when told to."""

    def __init__(self) -> None:
        self.fail_writes: type[apsw.Error] | None = None
        self.fail_syncs: type[apsw.Error] | None = None
        super().__init__("failing-disk", "unix", makedefault=True)

    def xOpen(self, name: object, flags: list[int]) -> apsw.VFSFile:  # noqa: N802
        return _FailingFile(self, name, flags)


@pytest.fixture
def failing_vfs() -> Iterator[FailingVFS]:
    vfs = FailingVFS()
    yield vfs
    vfs.unregister()


def log_entries(lo: int, hi: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(Term(term), Index(i), b"x%d" % i) for i in range(lo, hi + 1))


@pytest.mark.parametrize(
    ("where", "error", "message"),
    [
        ("fail_writes", apsw.FullError, disk.FULL),
        ("fail_syncs", apsw.IOError, disk.IO),
        ("fail_writes", apsw.IOError, disk.IO),
    ],
)
def test_a_log_save_that_fails_changes_nothing_and_can_be_retried(
    tmp_path: Path, failing_vfs: FailingVFS, where: str, error: type[apsw.Error], message: str
) -> None:
    path = str(tmp_path / "raft.db")
    store = LogStore(path)
    store.save(log_entries(1, 5), HardState(Term(1), NodeId("n1"), Index(3)))
    setattr(failing_vfs, where, error)
    new_hs = HardState(Term(2), NodeId("n2"), Index(5))
    for _ in range(3):
        with pytest.raises(DiskError, match=message):
            store.save(log_entries(4, 8, term=2), new_hs)
        assert store.last_index() == 5
        assert store.hard_state() == HardState(Term(1), NodeId("n1"), Index(3))
        assert [e.term for e in store.entries(Index(1), Index(6), 1 << 20)] == [1] * 5
    setattr(failing_vfs, where, None)
    store.save(log_entries(4, 8, term=2), new_hs)
    store.close()
    again = LogStore(path)
    assert again.last_index() == 8 and again.hard_state() == new_hs
    assert [e.term for e in again.entries(Index(1), Index(9), 1 << 20)] == [1, 1, 1, 2, 2, 2, 2, 2]


def test_snapshot_bookkeeping_in_the_log_fails_cleanly(
    tmp_path: Path, failing_vfs: FailingVFS
) -> None:
    store = LogStore(str(tmp_path / "raft.db"))
    store.save(log_entries(1, 10), HardState(Term(1), NodeId(""), Index(10)))
    failing_vfs.fail_writes = apsw.FullError
    meta = SnapshotMeta(Index(8), Term(1), ConfState.of(["n1"]))
    with pytest.raises(DiskError):
        store.set_snapshot(meta, (1, 2))
    with pytest.raises(DiskError):
        store.compact(Index(5))
    with pytest.raises(DiskError):
        store.apply_snapshot(meta)
    assert store.snapshot_meta() == SnapshotMeta()
    assert (store.first_index(), store.last_index()) == (1, 10)
    failing_vfs.fail_writes = None
    store.compact(Index(5))
    assert store.first_index() == 6


# --- the driver keeps a Ready it could not persist -----------------------------------


class FlakyLog(LogStore):
    """raft.db that fails to save while `failing` is set, counting attempts."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.failing = threading.Event()
        self.attempts = 0
        self.saved_up_to = Index(0)

    def save(self, entries: tuple[Entry, ...], hard_state: HardState | None) -> bool:
        if entries or hard_state is not None:
            self.attempts += 1
            if self.failing.is_set():
                raise DiskError(disk.FULL)
        wrote = super().save(entries, hard_state)
        if entries:
            self.saved_up_to = entries[-1].index
        return wrote


FAST = Timing(tick_s=0.01, election_ticks=10, heartbeat_ticks=1)


def _driver(tmp_path: Path, voters: list[str], me: str, **kw: object) -> tuple[Driver, FlakyLog]:
    storage = FlakyLog(str(tmp_path / "raft.db"))
    conf = ConfState.of(voters, addrs={v: f"127.0.0.1:{i}" for i, v in enumerate(voters)})
    storage.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
    machine = fsm.StateMachine(db.Database(str(tmp_path / "db.sqlite")))
    return Driver(NodeId(me), storage, machine, FAST, **kw), storage  # type: ignore[arg-type]


@pytest.fixture
def single(tmp_path: Path) -> Iterator[tuple[Driver, FlakyLog]]:
    d, storage = _driver(tmp_path, ["n1"], "n1")
    d.start()
    d.campaign()
    wait_for("leadership", lambda: d.status.role.value == "Leader")
    d.propose(cmd("CREATE TABLE t(v)")).result(5)
    yield d, storage
    d.stop()
    d.fsm.db.close()


def test_the_driver_retries_a_failing_save_and_then_proceeds(
    single: tuple[Driver, FlakyLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, storage = single
    advanced: list[tuple[int, int]] = []
    real_advance = d.core.advance

    def advance(rd: object) -> None:
        entries = rd.entries  # type: ignore[attr-defined]
        if entries:
            advanced.append((entries[-1].index, storage.saved_up_to))
        real_advance(rd)  # type: ignore[arg-type]

    monkeypatch.setattr(d.core, "advance", advance)
    applied = d.fsm.applied_index
    storage.failing.set()
    fut = d.propose(cmd("INSERT INTO t VALUES('waiting')"))
    with pytest.raises(DiskError, match="database or disk is full"):
        fut.result(5)  # refused once the node stalls, long before any timeout
    wait_for("a few retries", lambda: storage.attempts >= 4)
    assert d.disk_error is not None
    start = time.monotonic()
    with pytest.raises(DiskError):
        d.propose(cmd("INSERT INTO t VALUES('refused')")).result(5)
    assert time.monotonic() - start < 0.5
    with pytest.raises(DiskError):
        d.read_index().result(5)
    assert d.fsm.applied_index == applied
    assert d.status.commit_index == applied
    storage.failing.clear()
    wait_for("recovery", lambda: d.disk_error is None)
    # The kept Ready went through: the entry was persisted, then committed and applied.
    wait_for("the waiting entry applied", lambda: d.fsm.applied_index == applied + 1)
    idx, results = d.propose(cmd("INSERT INTO t VALUES('after')")).result(5)
    assert idx == applied + 2 and not results[0].error
    assert [r for (r,) in d.fsm.db.writer.execute("SELECT v FROM t")] == ["waiting", "after"]
    # The core never advanced past a Ready whose entries were not saved.
    assert advanced and all(last <= saved for last, saved in advanced)


def test_a_stalled_driver_still_stops(single: tuple[Driver, FlakyLog]) -> None:
    d, storage = single
    storage.failing.set()
    with pytest.raises(DiskError):
        d.propose(cmd("INSERT INTO t VALUES(1)")).result(5)
    wait_for("a retry", lambda: storage.attempts >= 2)
    start = time.monotonic()
    d.stop(timeout_s=5)
    assert not d._thread.is_alive()
    assert time.monotonic() - start < 2.0
    assert d.fatal is None


def follower_append(prev: int, commit: int, *sql: str) -> Message:
    """n1's append at term 2 to n2 (bootstrapped at term 1): one entry per
    statement after index `prev`, and n1's commit index."""
    return Message(
        MsgType.APPEND,
        NodeId("n1"),
        NodeId("n2"),
        Term(2),
        log_term=Term(1 if prev == 1 else 2),
        index=Index(prev),
        entries=tuple(Entry(Term(2), Index(prev + 1 + k), cmd(q)) for k, q in enumerate(sql)),
        commit=Index(commit),
    )


def hold_apply(
    monkeypatch: pytest.MonkeyPatch, machine: fsm.StateMachine, index: int
) -> tuple[threading.Event, threading.Event]:
    """Make the apply of entry `index` wait: (set once it waits, set to let it go)."""
    applying, release = threading.Event(), threading.Event()
    real_apply = machine.apply_entry

    def apply_entry(e: Entry, *a: object, **kw: object) -> list[Result]:
        if e.index == index:
            applying.set()
            assert release.wait(10)
        return real_apply(e, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(machine, "apply_entry", apply_entry)
    return applying, release


def test_a_follower_acknowledges_an_append_only_once_it_is_durable(tmp_path: Path) -> None:
    sent: list[Message] = []
    d, storage = _driver(tmp_path, ["n1", "n2"], "n2", send=sent.append)
    d.start()
    try:
        storage.failing.set()
        append = follower_append(1, 1, "CREATE TABLE t(v)")
        d.step(append)
        wait_for("a few retries", lambda: storage.attempts >= 3)
        assert not [m for m in sent if m.type is MsgType.APPEND_RESP]
        assert storage.last_index() == 1
        d.step(append)  # arrives while stalled: dropped, as by a lossy network
        storage.failing.clear()
        wait_for(
            "the acknowledgement",
            lambda: any(
                m.type is MsgType.APPEND_RESP and not m.reject and m.index == 2 for m in sent
            ),
        )
        assert storage.last_index() == 2 and storage.hard_state().term == 2
    finally:
        d.stop()
        d.fsm.db.close()


class GatedLog(FlakyLog):
    """raft.db whose saves of entries each wait for a permit."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.permits = threading.Semaphore(1)  # the bootstrap's
        self.waiting = threading.Event()

    def save(self, entries: tuple[Entry, ...], hard_state: HardState | None) -> bool:
        if entries:
            self.waiting.set()  # cleared by the test once it has seen it
            assert self.permits.acquire(timeout=10)
        return super().save(entries, hard_state)


def test_committed_entries_apply_while_the_next_save_runs_but_never_before_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_persist: a follower applies entries it had stored while it saves
    new ones, and applies no entry before it is durable here, even when
    the same append carries the entry and its commit. (Any entry here: a
    single small one is applied after the save, see the next test.)"""
    monkeypatch.setattr(driver, "OVERLAP_BYTES", 0)
    storage = GatedLog(str(tmp_path / "raft.db"))
    conf = ConfState.of(["n1", "n2"], addrs={"n1": "127.0.0.1:1", "n2": "127.0.0.1:2"})
    storage.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
    storage.waiting.clear()
    machine = fsm.StateMachine(db.Database(str(tmp_path / "db.sqlite")))
    d = Driver(NodeId("n2"), storage, machine, FAST, send=lambda m: None)
    applied_when: list[tuple[int, int]] = []
    real_apply = machine.apply_entry

    def apply_entry(e: Entry, *a: object, **kw: object) -> list[Result]:
        applied_when.append((e.index, storage.last_index()))
        return real_apply(e, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(machine, "apply_entry", apply_entry)
    append = follower_append

    def saving(last_stored: int) -> None:
        wait_for("a save waiting", storage.waiting.is_set)
        storage.waiting.clear()
        assert storage.last_index() == last_stored

    d.start()
    try:
        d.step(append(1, 1, "CREATE TABLE t(v)", "INSERT INTO t VALUES(2)"))
        saving(1)
        storage.permits.release()
        d.step(append(3, 3, "INSERT INTO t VALUES(3)"))
        saving(3)
        # Entries 2 and 3 were stored already: applied while 4 is being saved.
        wait_for("entries 2-3 applied", lambda: machine.applied_index == 3)
        d.step(append(4, 5, "INSERT INTO t VALUES(5)"))
        storage.permits.release()
        # One Ready saves 5 and commits 4 and 5: 4 applies meanwhile, 5 waits.
        saving(4)
        wait_for("entry 4 applied", lambda: machine.applied_index == 4)
        assert storage.last_index() == 4 and machine.applied_index == 4
        storage.permits.release()
        wait_for("entry 5 applied", lambda: machine.applied_index == 5)
        assert rows(machine, "SELECT v FROM t") == [(2,), (3,), (5,)]
        assert [i for i, _ in applied_when] == [1, 2, 3, 4, 5]
        assert all(index <= stored for index, stored in applied_when), applied_when
    finally:
        for _ in range(3):
            storage.permits.release()
        d.stop()
        machine.db.close()


def test_one_small_committed_entry_is_applied_after_the_save_on_the_same_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_worth_overlapping: at one client each append carries the commit of
    the entry before it; handing the save to the saver's thread to apply
    one INSERT beside it put a thread hand-over on the acknowledgement's
    path. Two entries, or a large one, still overlap."""
    savers: dict[int, str] = {}  # the thread that saved each entry
    d, storage = _driver(tmp_path, ["n1", "n2"], "n2", send=lambda m: None)
    real_save = storage.save

    def save(entries: tuple[Entry, ...], hard_state: HardState | None) -> bool:
        for e in entries:
            savers[e.index] = threading.current_thread().name
        return real_save(entries, hard_state)

    monkeypatch.setattr(storage, "save", save)
    applied_when: dict[int, int] = {}
    real_apply = d.fsm.apply_entry

    def apply_entry(e: Entry, *a: object, **kw: object) -> list[Result]:
        applied_when[e.index] = storage.last_index()
        return real_apply(e, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(d.fsm, "apply_entry", apply_entry)
    big = "x" * (driver.OVERLAP_BYTES + 1)
    d.start()
    try:
        d.step(follower_append(1, 1, "CREATE TABLE t(v)"))
        wait_for("entry 2 stored", lambda: storage.last_index() == 2)
        d.step(follower_append(2, 2, "INSERT INTO t VALUES(3)"))  # commits 2 (small)
        wait_for("entry 2 applied", lambda: d.fsm.applied_index == 2)
        d.step(follower_append(3, 3, f"INSERT INTO t VALUES('{big}')"))  # commits 3
        wait_for("entry 4 stored", lambda: storage.last_index() == 4)
        d.step(follower_append(4, 4, "INSERT INTO t VALUES(5)"))  # commits 4 (large)
        wait_for("entry 4 applied", lambda: d.fsm.applied_index == 4)
        wait_for("entry 5 stored", lambda: storage.last_index() == 5)
    finally:
        d.stop()
        d.fsm.db.close()
    assert applied_when[2] == 3  # after the save that carried its commit
    assert not savers[3].startswith("save-")  # that save: on the delivering thread
    assert applied_when[4] == 4  # a large entry: applied beside the next save,
    assert savers[5].startswith("save-")  # which the saver's thread made


def test_a_follower_acknowledges_a_saved_entry_while_it_still_applies_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """_persist: the acknowledgement goes out once the save is durable; a
    long apply of an earlier entry does not hold it (nor the leader's commit)."""
    sent: list[Message] = []
    d, storage = _driver(tmp_path, ["n1", "n2"], "n2", send=sent.append)
    applying, release = hold_apply(monkeypatch, d.fsm, 2)
    append = follower_append

    def acked(index: int) -> bool:
        return any(
            m.type is MsgType.APPEND_RESP and not m.reject and m.index == index for m in sent
        )

    d.start()
    try:
        d.step(append(1, 1, "CREATE TABLE t(v)"))
        wait_for("entry 2 acknowledged", lambda: acked(2))
        d.step(append(2, 2, "INSERT INTO t VALUES(3)"))  # commits 2, carries 3
        wait_for("entry 2 being applied", applying.is_set)
        wait_for("entry 3 acknowledged while 2 applies", lambda: acked(3))
        assert d.fsm.applied_index == 1 and storage.last_index() == 3
        release.set()
        wait_for("entry 2 applied", lambda: d.fsm.applied_index == 2)
        assert len([m for m in sent if m.type is MsgType.APPEND_RESP and m.index == 3]) == 1
    finally:
        release.set()
        d.stop()
        d.fsm.db.close()


def test_an_entry_that_cannot_be_applied_stalls_the_driver_until_it_can(
    single: tuple[Driver, FlakyLog],
) -> None:
    d, _ = single
    applied = d.fsm.applied_index
    fill_up(d.fsm)
    fut = d.propose(cmd("INSERT INTO t VALUES(zeroblob(200000))"))
    with pytest.raises(DiskError):
        fut.result(5)
    wait_for("the stall", lambda: d.disk_error is not None)
    assert d.fsm.applied_index == applied
    make_room(d.fsm)  # a pragma between the driver's retries: apsw serialises the connection
    wait_for("recovery", lambda: d.disk_error is None)
    assert d.fsm.applied_index == applied + 1
    assert list(d.fsm.db.writer.execute("SELECT count(*) FROM t")) == [(1,)]


def test_the_driver_rebuilds_the_database_after_an_unwrapped_entry_failed_halfway(
    single: tuple[Driver, FlakyLog],
) -> None:
    """PRAGMA makes the entry run unwrapped; its first INSERT commits before
    the disk fills. The driver rebuilds the database from the log (no
    snapshot yet) before applying the entry again: the row is there once."""
    d, _ = single
    d.propose(cmd("INSERT INTO t VALUES('before')")).result(5)
    applied = d.fsm.applied_index
    fill_up(d.fsm)
    fut = d.propose(cmd("INSERT INTO t VALUES('half')", "PRAGMA user_version", BIG_T))
    with pytest.raises(DiskError):
        fut.result(5)
    wait_for("the stall", lambda: d.disk_error is not None)
    assert d.fsm.needs_rebuild and d.fsm.applied_index == applied
    make_room(d.fsm)  # a pragma between the driver's retries: apsw serialises the connection
    wait_for("recovery", lambda: d.disk_error is None)
    assert not d.fsm.needs_rebuild and d.fsm.applied_index == applied + 1
    got = [r for (r,) in d.fsm.db.writer.execute("SELECT typeof(v) || ':' || length(v) FROM t")]
    assert got == ["text:6", "text:4", "blob:200000"]


# --- snapshots -----------------------------------------------------------------------


def test_a_snapshot_that_runs_out_of_space_is_abandoned_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = SnapshotStore(str(tmp_path / "snapshots"))
    d, storage = _driver(tmp_path, ["n1"], "n1", snapshots=snaps, trailing_logs=0)
    d.start()
    try:
        d.campaign()
        wait_for("leadership", lambda: d.status.role.value == "Leader")
        d.propose(cmd("CREATE TABLE t(v)")).result(5)
        first = d.snapshot().result(5)
        assert first and [s.meta.index for s in snaps.list()] == [first]
        for i in range(5):
            d.propose(cmd(f"INSERT INTO t VALUES({i})")).result(5)
        log_first = storage.first_index()
        real_copy = driver.copy_paced

        def copy_until_full(src: str, dst: str) -> None:
            with open(dst, "wb") as f:
                f.write(b"half a snapshot")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(driver, "copy_paced", copy_until_full)
        with pytest.raises(DiskError, match="full"):
            d.snapshot().result(5)
        base = os.path.basename(snaps.list()[0].path)[: -len(".sqlite")]
        assert sorted(os.listdir(snaps.dir)) == [base + ".json", base + ".sqlite"]
        assert [s.meta.index for s in snaps.list()] == [first]
        assert storage.snapshot_meta().index == first
        assert storage.first_index() == log_first  # not compacted
        snaps.verify(snaps.list()[0])
        monkeypatch.setattr(driver, "copy_paced", real_copy)
        # Copied, but raft.db cannot record it: its files go, the old one stays.
        real_set = storage.set_snapshot

        def set_snapshot_full(*args: object) -> None:
            raise DiskError(disk.FULL)

        monkeypatch.setattr(storage, "set_snapshot", set_snapshot_full)
        with pytest.raises(DiskError, match="full"):
            d.snapshot().result(5)
        assert sorted(os.listdir(snaps.dir)) == [base + ".json", base + ".sqlite"]
        assert storage.snapshot_meta().index == first and storage.first_index() == log_first
        monkeypatch.setattr(storage, "set_snapshot", real_set)
        second = d.snapshot().result(5)
        assert second > first and storage.snapshot_meta().index == second
        assert storage.first_index() == second + 1  # compacted now (no trailing logs)
        assert d.fatal is None
    finally:
        d.stop()
        d.fsm.db.close()


def test_a_snapshot_whose_description_cannot_be_written_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snaps = SnapshotStore(str(tmp_path / "snapshots"))
    tmp = tmp_path / "snapshots" / "x.sqlite.tmp"
    tmp.write_bytes(b"SQLite format 3\x00 pretend")
    meta = SnapshotMeta(Index(7), Term(1), ConfState.of(["n1"]))
    real_replace = os.replace

    def replace_fails_for_json(src: str, dst: str) -> None:
        if dst.endswith(".json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_fails_for_json)
    with pytest.raises(OSError):
        snaps.commit(meta, str(tmp))
    monkeypatch.setattr(os, "replace", real_replace)
    assert os.listdir(snaps.dir) == ["x.sqlite.tmp"]  # back where it was, nothing else
    assert snaps.list() == []
    snaps.commit(meta, str(tmp))
    assert [s.meta.index for s in snaps.list()] == [7]


def test_a_snapshot_from_the_leader_that_cannot_be_stored_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = tmp_path / "incoming"
    staging.mkdir()
    got: list[str] = []
    t = transport.Transport(
        NodeId("n2"),
        "127.0.0.1:1",
        "127.0.0.1:1",
        on_message=lambda m, more: None,
        on_call=lambda r: {},
        on_unreachable=lambda n: None,
        on_snapshot=lambda m, path: got.append(path),
        staging_dir=str(staging),
    )

    def full_disk(self: object, sock: object, fd: int, size: int, z: bool) -> int:
        with os.fdopen(fd, "wb") as f:
            f.write(b"part of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transport.Transport, "_receive_snapshot_file", full_disk)
    a, b = socket.socketpair()
    with a, b:
        m = Message(
            MsgType.SNAPSHOT,
            NodeId("n1"),
            NodeId("n2"),
            Term(2),
            snapshot=SnapshotMeta(Index(9), Term(2), ConfState.of(["n1", "n2"])),
        )
        a.sendall(wire.frame(wire.KIND_RAFT, wire.encode_message(m)))
        with pytest.raises(OSError):
            t._receive_snapshot(b, {"size": 100, "sha256": "0" * 64})
    assert os.listdir(staging) == [] and got == []


def test_receiving_a_snapshot_while_stalled_drops_it(tmp_path: Path) -> None:
    d, storage = _driver(tmp_path, ["n1", "n2"], "n2")
    d.start()
    try:
        storage.failing.set()
        d.step(
            Message(
                MsgType.APPEND,
                NodeId("n1"),
                NodeId("n2"),
                Term(2),
                log_term=Term(1),
                index=Index(1),
                commit=Index(1),
            )
        )
        wait_for("the stall", lambda: d.disk_error is not None)
        f = tmp_path / "received.snapshot.tmp"
        f.write_bytes(b"snapshot")
        meta = SnapshotMeta(Index(9), Term(2), ConfState.of(["n1", "n2"]))
        d.receive_snapshot(
            Message(MsgType.SNAPSHOT, NodeId("n1"), NodeId("n2"), Term(2), snapshot=meta), str(f)
        )
        wait_for("the file dropped", lambda: not f.exists())
        storage.failing.clear()
        wait_for("recovery", lambda: d.disk_error is None)
        assert d.fatal is None
    finally:
        d.stop()
        d.fsm.db.close()


def test_query_results_are_unchanged_for_reads(tmp_path: Path) -> None:
    d = db.Database(str(tmp_path / "db.sqlite"))
    d.writer.execute("CREATE TABLE t(v); INSERT INTO t VALUES(1)")
    [r] = d.query([Statement("SELECT v FROM t")], transaction=False)
    assert isinstance(r, QueryResult) and r.values == [[1]]
    [e] = d.query([Statement("SELECT * FROM nope")], transaction=False)
    assert e.error == "no such table: nope"
    d.close()
