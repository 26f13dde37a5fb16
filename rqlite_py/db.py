"""SQLite through apsw: one writer connection, a pool of read-only readers,
and the conversion of rows into rqlite's result values.

The writer belongs to the state machine (fsm.py) and is only ever used from
the Raft driver's thread. Readers serve local reads from any HTTP thread;
SQLite's WAL mode lets them run beside the writer.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import apsw

from . import authorizer
from .command import Statement, Statements
from .disk import environmental
from .results import ExecuteResult, QueryResult, Result, Value

SQLITE_HEADER = b"SQLite format 3\x00"
"""How every SQLite database file begins."""
BUSY_TIMEOUT_MS = 5000
READER_CACHE_KIB = 512
WRITE_VIA_QUERY = "attempt to change database via query operation"
_TIME_TYPES = frozenset({"date", "datetime", "timestamp"})
_TEXT_PREFIXES = (
    "varchar",
    "varying character",
    "nchar",
    "native character",
    "nvarchar",
    "clob",
)
_ZERO_TIME = "0001-01-01T00:00:00Z"
_SHOWN_PRAGMAS = (
    "busy_timeout",
    "foreign_keys",
    "journal_mode",
    "synchronous",
    "wal_autocheckpoint",
)
_PROGRESS_STEPS = 1000
"""The progress handler runs every this many SQLite VM steps."""
_WAL_FRAME_HEADER = 24
"""Bytes before each page in a WAL frame (SQLite's file format)."""


class DatabaseError(Exception):
    """The database file could not be opened or used (not a SQL error:
    those are results, reported per statement)."""


def _open(
    path: str,
    *,
    readonly: bool,
    foreign_keys: bool,
    guard: authorizer.Authorizer | None = None,
) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE
    flags |= apsw.SQLITE_OPEN_CREATE if not readonly else 0
    try:
        conn = apsw.Connection(path, flags=flags)
    except apsw.Error as e:
        raise DatabaseError(f"cannot open {path}: {e}") from e
    conn.set_busy_timeout(BUSY_TIMEOUT_MS)
    # The main file changes only when a snapshot checkpoints the WAL into it
    # (snapshots.py): never when a connection closes, never automatically.
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # SQLite keeps the WAL file at its largest size and writes over it
        # after a checkpoint (journal_size_limit's default). Truncating it at
        # each restart made every write after a snapshot allocate blocks
        # again, and ext4 orders those before the next journal commit: the
        # Raft log's fsyncs stalled 30-60 ms after each snapshot (issue 7).
        # What came after the last checkpoint is counted by Database's WAL
        # hook instead of read from the file's size.
        # The Raft log is the durable copy; this file is rebuilt from it.
        conn.execute("PRAGMA synchronous=OFF")
    conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    if readonly:
        # Every pooled reader has a private page cache (2 MB by default): 32
        # concurrent readers held 64 MB of a node's heap (issue 7's memory
        # target). Pages missed here come from the OS page cache.
        conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
    if guard is not None:
        conn.authorizer = guard  # last: the node's own PRAGMAs above pass unasked
    return conn


class Mode(enum.Enum):
    EXECUTE = "execute"
    """Writes answer in execute shape; RETURNING statements in query shape."""
    QUERY = "query"
    """Everything answers in query shape (strong reads through the log)."""
    QUERY_ONLY = "query_only"
    """Query shape, and a statement that would write is refused."""
    REQUEST = "request"
    """Each statement answers as what it is: a read or a write."""


class Database:
    def __init__(
        self,
        path: str,
        *,
        foreign_keys: bool = False,
        max_readers: int = 256,
        allow_external: bool = False,
    ) -> None:
        self.path = path
        self.foreign_keys = foreign_keys
        self.allow_external = allow_external
        self._guard = authorizer.make(allow_external)
        """Clients' SQL may not reach outside the database (authorizer.py)."""
        self.writer = _open(path, readonly=False, foreign_keys=foreign_keys, guard=self._guard)
        with authorizer.trusted():
            page_size = self.writer.execute("PRAGMA page_size").get
        self._frame_bytes = page_size + _WAL_FRAME_HEADER
        self._wal_frames = self._file_wal_bytes() // self._frame_bytes
        """Frames in the WAL after the last commit: SQLite restarts the WAL
        from its first frame once a checkpoint has copied it all."""
        self.writer.set_wal_hook(self._count_wal_frames)
        self._max_readers = max_readers or 1 << 30
        self._readers: queue.LifoQueue[apsw.Connection] = queue.LifoQueue()
        self._reader_slots = threading.BoundedSemaphore(self._max_readers)

    def checkpoint(self, timeout_ms: int) -> bool:
        """Copy the whole WAL into the main file, so that the file alone is
        the database as of now. Readers are never made to wait: if they hold
        the WAL for longer than `timeout_ms`, give up (False) and try later."""
        self.writer.set_busy_timeout(timeout_ms)
        try:
            with authorizer.trusted():
                busy, frames, done = self.writer.execute("PRAGMA wal_checkpoint(FULL)").fetchone()
        except apsw.BusyError:
            return False
        except apsw.Error as e:
            disk = environmental(e)
            if disk is None:
                raise
            raise disk from e  # the main file could not grow: try again later
        finally:
            self.writer.set_busy_timeout(BUSY_TIMEOUT_MS)
        if busy == 0 and frames == done:
            self._wal_frames = 0  # all copied: the next commit restarts the WAL
            return True
        return False

    def checkpoint_passive(self) -> None:
        """Copy what the WAL holds into the main file without pausing the
        writer (SQLite's PASSIVE mode, from a connection of its own): a
        snapshot's checkpoint then has only what came meanwhile to copy.
        The main file then differs from the last snapshot's: a node that
        stops before the next snapshot restarts from the snapshot file."""
        conn = _open(self.path, readonly=False, foreign_keys=self.foreign_keys)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except apsw.Error as e:
            disk = environmental(e)
            if disk is None:
                raise
            raise disk from e
        finally:
            conn.close()

    def _count_wal_frames(self, _conn: apsw.Connection, _name: str, frames: int) -> int:
        # Setting a WAL hook replaces SQLite's autocheckpoint, which is off
        # here anyway (wal_autocheckpoint=0).
        self._wal_frames = frames
        return apsw.SQLITE_OK

    def wal_bytes(self) -> int:
        """What the WAL holds since the last checkpoint restarted it (the
        file itself stays at its largest size)."""
        return self._wal_frames * self._frame_bytes

    def _file_wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def fingerprint(self) -> tuple[int, int]:
        """(size, mtime in ns) of the main file: unchanged between snapshots."""
        st = os.stat(self.path)
        return st.st_size, st.st_mtime_ns

    def close(self) -> None:
        while not self._readers.empty():
            self._readers.get_nowait().close()
        self.writer.close()

    # -- readers ------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[apsw.Connection]:
        """Borrow a read-only connection (at most -db-max-ro-conns at once)."""
        self._reader_slots.acquire()
        with self._lend() as conn:
            yield conn

    @contextlib.contextmanager
    def _lend(self) -> Iterator[apsw.Connection]:
        """A reader for the holder of a reader slot, who gives both back."""
        try:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = _open(
                    self.path, readonly=True, foreign_keys=self.foreign_keys, guard=self._guard
                )
            try:
                yield conn
            finally:
                self._readers.put(conn)
        finally:
            self._reader_slots.release()

    # -- the operations -----------------------------------------------------
    def query(
        self,
        statements: Sequence[Statement],
        *,
        transaction: bool,
        timeout_s: float = 0.0,
        qualify_columns: bool = False,
    ) -> list[Result]:
        """/db/query on a read-only connection: a statement that writes is
        refused, as rqlite does, before it runs."""
        with self.reader() as conn:
            return run(
                conn,
                statements,
                transaction=transaction,
                mode=Mode.QUERY_ONLY,
                limit=_deadline(timeout_s),
                timeout_error="query timeout",
                qualify_columns=qualify_columns,
            )

    def query_briefly(
        self,
        statements: Sequence[Statement],
        *,
        transaction: bool,
        qualify_columns: bool,
        max_steps: int,
    ) -> list[Result] | None:
        """`query` for a caller that must not wait (the HTTP event loop):
        None when no reader is free at once, or when the statements run
        past `max_steps` SQLite VM steps (they are stopped there; they only
        read, so there is nothing to undo and the caller runs them again
        with `query`)."""
        if not self._reader_slots.acquire(blocking=False):
            return None
        with self._lend() as conn:
            budget = StepBudget(max_steps)
            results = run(
                conn,
                statements,
                transaction=transaction,
                mode=Mode.QUERY_ONLY,
                limit=budget,
                qualify_columns=qualify_columns,
            )
            return None if budget.exceeded else results

    def backup(self, path: str, *, fmt: str, vacuum: bool, tables: Sequence[str]) -> None:
        """Write a consistent copy of the database to `path`: a SQLite file
        (WAL, or DELETE journal mode for fmt=delete), or an SQL dump."""
        with self.reader() as conn:
            if fmt == "sql":
                with open(path, "w", encoding="utf-8") as out:
                    shell = apsw.Shell(db=conn, stdout=out, stderr=out)
                    shell.process_command(".dump " + " ".join(tables))
                return
            if vacuum:
                with authorizer.trusted():
                    conn.execute("VACUUM INTO ?", (path,))
            else:
                dest = apsw.Connection(path)
                try:
                    with dest.backup("main", conn, "main") as b:
                        b.step()
                finally:
                    dest.close()
        if fmt == "delete":
            copy = apsw.Connection(path)
            try:
                copy.execute("PRAGMA journal_mode=DELETE")
            finally:
                copy.close()

    def reader_pragmas(self) -> dict[str, str]:
        """As a read-only connection reports them (for /status)."""
        with self.reader() as conn:
            return {p: str(conn.execute(f"PRAGMA {p}").fetchone()[0]) for p in _SHOWN_PRAGMAS}

    def writer_pragmas(self) -> dict[str, str]:
        """As _open sets them on the writer, which belongs to the Raft thread."""
        return {
            "busy_timeout": str(BUSY_TIMEOUT_MS),
            "foreign_keys": "1" if self.foreign_keys else "0",
            "journal_mode": "wal",
            "synchronous": "0",
            "wal_autocheckpoint": "0",
        }

    def has_write(self, statements: Sequence[Statement]) -> bool:
        """Would any statement change the database (sqlite3_stmt_readonly)?"""
        with self.reader() as conn:
            return any(not is_readonly(conn, s.sql) for s in statements)


def _deadline(timeout_s: float) -> Callable[[], bool] | None:
    if timeout_s <= 0:
        return None
    end = time.monotonic() + timeout_s
    return lambda: time.monotonic() > end


class StepBudget:
    """A limit counted in VM steps, as a progress handler (see run):
    deterministic, so every node applying the same entry stops at the same
    statement. `exceeded` tells, afterwards, whether it stopped anything."""

    def __init__(self, steps: int) -> None:
        self.left = steps // _PROGRESS_STEPS + 1
        self.exceeded = False

    def __call__(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.exceeded = True
        return self.exceeded


def step_budget(steps: int) -> StepBudget | None:
    return StepBudget(steps) if steps > 0 else None


def is_readonly(conn: apsw.Connection, sql: str) -> bool:
    verdict: list[bool] = []

    def tracer(cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
        verdict.append(bool(cursor.is_readonly))
        return False

    cur = conn.cursor()
    cur.exec_trace = tracer
    try:
        cur.execute(sql)
    except apsw.ExecTraceAbort:
        pass
    except apsw.Error:
        return True  # it will fail as a read, with SQLite's own error
    return all(verdict)


class OwnTransactionError(Exception):
    """A statement manages transactions itself (BEGIN, COMMIT, SAVEPOINT,
    VACUUM, ATTACH, PRAGMA...): it cannot run inside the entry's savepoint.
    Raised before it runs."""


class SavepointsNeededError(Exception):
    """A statement left a deferred foreign key violation while running
    without a savepoint of its own: roll the request back and run it again
    with `statement_savepoints`, which can undo that one statement."""


class TransactionLostError(Exception):
    """A statement rolled back the entry's whole transaction (ON CONFLICT
    ROLLBACK, RAISE(ROLLBACK), an interrupted write)."""


_OWN_TRANSACTION = frozenset(
    ("BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE")
    + ("VACUUM", "ATTACH", "DETACH", "PRAGMA")
)
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z]+")


@functools.lru_cache(maxsize=4096)
def manages_transactions(sql: str) -> bool:
    """Does this one statement (as SQLite split it) begin, end or need to be
    outside a transaction? PRAGMAs count: some are no-ops inside one.
    Cached: a bulk request runs one text a thousand times."""
    m = _WORD.match(sql, _LEADING.match(sql).end())  # type: ignore[union-attr]
    return m is not None and m.group().upper() in _OWN_TRANSACTION


def deferred_fk_violations(conn: apsw.Connection) -> int:
    return conn.status(apsw.SQLITE_DBSTATUS_DEFERRED_FKS)[0]


FK_FAILED = "FOREIGN KEY constraint failed"


def run(
    conn: apsw.Connection,
    statements: Sequence[Statement],
    *,
    transaction: bool,
    mode: Mode,
    limit: Callable[[], bool] | None = None,
    timeout_error: str = "execute timeout",
    qualify_columns: bool = False,
    wrapped: bool = False,
    from_autocommit: bool = True,
    statement_savepoints: bool = True,
    batch: bool = True,
    counted: bool = True,
) -> list[Result]:
    """Run statements in order. SQL errors are results; failures of the
    disk raise DiskError. Without `transaction` an error does not stop the
    next statement; with it, the first error rolls everything back and ends
    the request (rqlite's executeWithConn).

    `wrapped`: the caller holds a SAVEPOINT around the whole request (the
    state machine's entry) and will release it, or roll it back if the disk
    fails. A statement that manages transactions raises OwnTransactionError
    before it runs. When the savepoint began in autocommit mode
    (`from_autocommit`), what autocommit would do is reproduced exactly: each
    statement in a savepoint of its own, failing like a commit would on a
    deferred foreign key violation; `transaction` with a nested savepoint
    instead of BEGIN/COMMIT; and a statement that rolls the whole
    transaction back raises TransactionLostError (the caller is then back at
    the start of the request and runs it unwrapped).

    Without `statement_savepoints`, the per-statement savepoints are left
    out: they change nothing unless a statement leaves a deferred foreign
    key violation, which raises SavepointsNeededError (the caller rolls
    back and runs the request again with them). Three fewer SQL calls per
    statement; the results are the same.

    With `batch`, a run of the same write (as a bulk INSERT sends) goes
    through one executemany (_run_batch), with the same results; without
    it every statement runs on its own, the reference the tests hold the
    batches to. Without `counted`, nobody will read the ids and counts of
    successful writes: a batch may answer UNCOUNTED for them (errors are
    always reported), and runs faster."""
    statements = Statements.of(statements)  # runs of one write: batch boundaries
    emulate = wrapped and from_autocommit
    savepoints = emulate and not transaction and statement_savepoints
    fast = emulate and not transaction and not statement_savepoints
    assert not (transaction and wrapped and not from_autocommit)
    results: list[Result] = []
    if limit is not None:
        conn.set_progress_handler(limit, _PROGRESS_STEPS)
    try:
        if transaction:
            conn.execute("SAVEPOINT rqlite_tx" if emulate else "BEGIN")
        batching = batch and mode == Mode.EXECUTE and not savepoints
        i = 0
        run_end = 0  # statements[i:run_end]: the rest of a run of one write (Statements.run_end)
        solo = False  # that run cannot go through executemany: one at a time
        while i < len(statements):
            stmt = statements[i]
            if not stmt.sql.strip():
                i += 1
                continue
            if savepoints:
                conn.execute("SAVEPOINT rqlite_stmt")
            if i >= run_end:
                run_end = statements.run_end(i) if batching else i + 1
                solo = False
            rows = (
                []
                if solo or run_end - i < 2
                else _run_batch(
                    conn,
                    statements,
                    i,
                    run_end,
                    timeout_error,
                    wrapped=wrapped,
                    fk_check=fast,
                    counted=counted or not fast or limit is not None,
                )
            )
            if rows:
                # All but the last row passed the checks below inside the batch.
                results.extend(rows[:-1])
                result = rows[-1]
                i += len(rows)
            else:
                solo = True
                result = _run_one(conn, stmt, mode, timeout_error, qualify_columns, guard=wrapped)
                i += 1
            if wrapped and conn.get_autocommit():
                if from_autocommit:
                    raise TransactionLostError()
                # The caller's own transaction was rolled back: from here on
                # every statement commits on its own, as it would unwrapped.
                wrapped = False
            if fast and deferred_fk_violations(conn):
                raise SavepointsNeededError()
            if savepoints:
                if not result.error and deferred_fk_violations(conn):
                    conn.execute("ROLLBACK TO rqlite_stmt")
                    result = _error(mode, stmt, FK_FAILED, start=0.0, elapsed=result.time)
                conn.execute("RELEASE rqlite_stmt")
            results.append(result)
            if transaction and result.error:
                if emulate:
                    conn.execute("ROLLBACK TO rqlite_tx")
                    conn.execute("RELEASE rqlite_tx")
                else:
                    with contextlib.suppress(apsw.Error):
                        conn.execute("ROLLBACK")
                return results
        if transaction and emulate:
            if deferred_fk_violations(conn):  # COMMIT would fail
                conn.execute("ROLLBACK TO rqlite_tx")
                conn.execute("RELEASE rqlite_tx")
                results.append(ExecuteResult(error=FK_FAILED))
            else:
                conn.execute("RELEASE rqlite_tx")
        elif transaction:
            conn.execute("COMMIT")
    except apsw.Error as e:
        disk = environmental(e)
        if disk is not None:
            raise disk from e
        if emulate:
            raise  # our own savepoints failed: not a statement's error
        # BEGIN/COMMIT themselves failed (e.g. a user's dangling transaction).
        with contextlib.suppress(apsw.Error):
            if not conn.get_autocommit():
                conn.execute("ROLLBACK")
        results.append(ExecuteResult(error=authorizer.explain(str(e))))
    finally:
        if limit is not None:
            conn.set_progress_handler(None)
    return results


_BIND_ERRORS = (TypeError, OverflowError, apsw.BindingsError)

UNCOUNTED = ExecuteResult()
"""The result of each row of a batch run with `counted=False` (see run).
Shared: never to be modified."""


_Tracer = Callable[[apsw.Cursor, str, object], bool]


class _Batch:
    """A run of rows of one statement through one executemany: SQLite
    prepares it once, and Python does a few calls per row instead of a
    cursor, a tracer and a result per statement (about 2.5x faster for a
    bulk INSERT; issue 7). The exec tracer, called before each row, notes
    where the previous row left last_insert_rowid, changes and the clock;
    results are made from those marks once the run ends (half the cost of
    making each in the tracer). With `fk_check`, the run stops before a row
    when the previous one left a deferred foreign key violation, which
    per-statement savepoints must handle (see run). A row can lose the
    caller's transaction only by failing, which ends the run."""

    def __init__(self, conn: apsw.Connection, sql: str, fk_check: bool) -> None:
        self.conn = conn
        self.sql = sql
        self.fk_check = fk_check
        self.marks: list[tuple[int, int, float]] = []
        """(last_insert_rowid, changes, time) after each finished row."""
        self.started = False
        """A row is under way: the tracer runs before each row, so once the
        first has begun, the last one begun has not finished."""
        self.t0 = time.perf_counter()

    def first(self, cursor: apsw.Cursor, sql: str, _bindings: object) -> bool:
        if sql != self.sql:
            # Several statements in one text would share the bindings: run
            # those one by one. Nothing has been executed yet.
            return False
        self.started = True
        cursor.exec_trace = self._next_checked() if self.fk_check else self._next()
        return True

    def _next(self) -> _Tracer:
        append, rowid, changes, clock = (
            self.marks.append,
            self.conn.last_insert_rowid,
            self.conn.changes,
            time.perf_counter,
        )

        def tracer(_cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
            append((rowid(), changes(), clock()))
            return True

        return tracer

    def _next_checked(self) -> _Tracer:
        def tracer(_cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
            self.finish_row()
            if deferred_fk_violations(self.conn):
                self.started = False  # the next row does not begin
                return False
            return True

        return tracer

    def finish_row(self) -> None:
        conn = self.conn
        self.marks.append((conn.last_insert_rowid(), conn.changes(), time.perf_counter()))

    def results(self) -> list[Result]:
        out: list[Result] = []
        append = out.append
        last = self.t0
        for rowid, changes, t in self.marks:
            append(ExecuteResult(rowid, changes, "", t - last))
            last = t
        return out

    def last_time(self) -> float:
        return self.marks[-1][2] if self.marks else self.t0


def _run_batch(
    conn: apsw.Connection,
    statements: Statements,
    start: int,
    end: int,
    timeout_error: str,
    *,
    wrapped: bool,
    fk_check: bool,
    counted: bool,
) -> list[Result]:
    """Run statements[start:end], a run of one write (Statements.run_end), in
    Mode.EXECUTE. Returns one result per row run, in order, the last of
    which may be an error: the rows after a failed one are left to the
    caller. Returns [] when the SQL holds several statements or manages
    transactions in a `wrapped` run, having run nothing. Results are those
    _run_one would give; without `counted`, UNCOUNTED stands for each row
    that succeeded."""
    sql = statements[start].sql
    if wrapped and manages_transactions(sql):
        return []  # _run_one raises OwnTransactionError
    rows = statements.rows(start, end)
    if fk_check and not _foreign_keys_on(conn):
        fk_check = False  # no deferred violation can appear
    if not counted and not fk_check:
        done = _run_uncounted(conn, sql, rows)
        if done is not None:
            return done
    batch = _Batch(conn, sql, fk_check)
    cur = conn.cursor()
    cur.exec_trace = batch.first
    try:
        for _ in cur.executemany(sql, rows):
            pass
    except apsw.ExecTraceAbort:
        pass  # stopped before a row: that row and the rest are the caller's
    except (apsw.Error, TypeError, OverflowError) as e:
        if isinstance(e, apsw.Error):
            disk = environmental(e)
            if disk is not None:
                raise disk from e
        if isinstance(e, _BIND_ERRORS) and batch.started:
            # A row's parameters failed to bind, which happens before its
            # tracer call: the row before it ran to completion.
            batch.finish_row()
        results = batch.results()
        stmt = statements[start + len(results)]
        if isinstance(e, apsw.InterruptError):
            message = timeout_error
        elif isinstance(e, apsw.Error):
            message = authorizer.explain(str(e))
        else:
            message = f"cannot bind parameters: {e}"
        results.append(_error(Mode.EXECUTE, stmt, message, start=batch.last_time()))
        return results
    if batch.started:
        batch.finish_row()
    return batch.results()


def _run_uncounted(
    conn: apsw.Connection, sql: str, rows: Sequence[Sequence[Value]]
) -> list[Result] | None:
    """The rows of a batch with no tracer at all, when nobody reads their
    ids and counts (a follower applying an entry): half the cost again.
    If a row fails, which row it was is unknown, so the rows are rolled
    back (None: run them counted). Only where a rerun cannot differ: the
    caller's savepoint holds the request (a failure that loses it raises
    TransactionLostError, as run would), and no step budget is counting."""
    if not _is_one_statement(conn, sql, rows[0]):
        return None
    conn.execute("SAVEPOINT rqlite_rows")
    try:
        for _ in conn.cursor().executemany(sql, rows):
            pass
    except (apsw.Error, TypeError, OverflowError) as e:
        if isinstance(e, apsw.Error):
            disk = environmental(e)
            if disk is not None:
                raise disk from e
        if conn.get_autocommit():
            raise TransactionLostError() from None
        conn.execute("ROLLBACK TO rqlite_rows")
        conn.execute("RELEASE rqlite_rows")
        return None
    conn.execute("RELEASE rqlite_rows")
    return [UNCOUNTED] * len(rows)


def _is_one_statement(conn: apsw.Connection, sql: str, params: Sequence[Value]) -> bool:
    """Does `sql` hold one statement (that prepares, and binds `params`)?
    Found by preparing it and stopping before it runs; the prepared
    statement stays in apsw's cache for the run that follows."""
    seen: list[str] = []

    def tracer(_cursor: apsw.Cursor, text: str, _bindings: object) -> bool:
        seen.append(text)
        return False

    cur = conn.cursor()
    cur.exec_trace = tracer
    with contextlib.suppress(apsw.ExecTraceAbort, apsw.Error, TypeError, OverflowError):
        cur.execute(sql, params)
    return seen == [sql]


def _foreign_keys_on(conn: apsw.Connection) -> bool:
    return bool(conn.execute("PRAGMA foreign_keys").get)


def _bindings(conn: apsw.Connection, stmt: Statement) -> object:
    if not stmt.named:
        return stmt.params
    if not stmt.params:
        return {k.lstrip(":@$"): v for k, v in stmt.named}
    # Mixed positional and named: bind everything by index.
    names = _parameter_names(conn, stmt.sql, len(stmt.params) + len(stmt.named))
    named = {k.lstrip(":@$"): v for k, v in stmt.named}
    positional = iter(stmt.params)
    out: list[Value] = []
    for name in names:
        if name is not None and name in named:
            out.append(named[name])
        else:
            out.append(next(positional, None))
    return tuple(out)


def _parameter_names(conn: apsw.Connection, sql: str, count: int) -> tuple[str | None, ...]:
    """SQLite numbers `?` and `:name` parameters together; learn the names by
    preparing the statement (with placeholder values) and stopping before it runs."""
    names: list[tuple[str | None, ...]] = []

    def tracer(cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
        names.append(tuple(cursor.bindings_names))
        return False

    cur = conn.cursor()
    cur.exec_trace = tracer
    with contextlib.suppress(apsw.ExecTraceAbort, apsw.Error):
        cur.execute(sql, (None,) * count, can_cache=False)
    return names[0] if names else ()


def _run_one(
    conn: apsw.Connection,
    stmt: Statement,
    mode: Mode,
    timeout_error: str,
    qualify: bool,
    *,
    guard: bool = False,
) -> Result:
    start = time.perf_counter()
    info: dict[str, object] = {}

    def tracer(cursor: apsw.Cursor, sql: str, _bindings: object) -> bool:
        if guard and manages_transactions(sql):
            info["own_transaction"] = True
            return False
        readonly = bool(cursor.is_readonly)
        if mode == Mode.QUERY_ONLY and not readonly:
            info["denied"] = True
            return False
        info["readonly"] = info.get("readonly", True) and readonly
        description = cursor.get_description()
        if description:
            if qualify:
                # description_full: (name, decltype, database, table, origin)
                description = tuple(
                    (f"{full[3]}.{full[0]}" if full[3] else full[0], full[1])
                    for full in cursor.description_full
                )
            info["description"] = description
        return True

    cur = conn.cursor()
    cur.exec_trace = tracer
    try:
        cur.execute(stmt.sql, _bindings(conn, stmt))
        rows = list(cur)
    except apsw.ExecTraceAbort:
        if info.get("own_transaction"):
            raise OwnTransactionError() from None
        return QueryResult(error=WRITE_VIA_QUERY, time=time.perf_counter() - start)
    except apsw.InterruptError:
        return _error(mode, stmt, timeout_error, start)
    except apsw.Error as e:
        disk = environmental(e)
        if disk is not None:
            raise disk from e
        return _error(mode, stmt, authorizer.explain(str(e)), start)
    except (TypeError, OverflowError, StopIteration) as e:
        return _error(mode, stmt, f"cannot bind parameters: {e}", start)
    elapsed = time.perf_counter() - start
    as_query = (
        mode in (Mode.QUERY, Mode.QUERY_ONLY)
        or stmt.returning
        or (mode == Mode.REQUEST and bool(info.get("readonly")))
    )
    if not as_query:
        return ExecuteResult(conn.last_insert_rowid(), conn.changes(), time=elapsed)
    description = info.get("description") or ()
    return _query_result(description, rows, elapsed)  # type: ignore[arg-type]


def _error(
    mode: Mode, stmt: Statement, message: str, start: float, elapsed: float | None = None
) -> Result:
    if elapsed is None:
        elapsed = time.perf_counter() - start
    if mode == Mode.EXECUTE and not stmt.returning:
        return ExecuteResult(error=message, time=elapsed)
    return QueryResult(error=message, time=elapsed)


# -- rows into rqlite values ----------------------------------------------
def _query_result(
    description: Sequence[tuple[str, str | None]], rows: list[tuple[object, ...]], elapsed: float
) -> QueryResult:
    columns = [d[0] for d in description]
    decltypes = [(d[1] or "").lower() for d in description]
    types = [t or (_infer_type(rows[0][i]) if rows else "") for i, t in enumerate(decltypes)]
    converters = [_converter(decl, typ) for decl, typ in zip(decltypes, types, strict=True)]
    values = [[conv(v) for conv, v in zip(converters, row, strict=True)] for row in rows]
    return QueryResult(columns, types, values, time=elapsed)


def _infer_type(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "real"
    if isinstance(v, str):
        return "text"
    if isinstance(v, bytes):
        return "blob"
    return ""


def _is_text_type(t: str) -> bool:
    return t in ("text", "json", "") or t.startswith(_TEXT_PREFIXES)


def _converter(decltype: str, result_type: str) -> Callable[[object], Value]:
    """How a column's values look to clients: the conversions of rqlite's Go
    SQLite driver (mattn/go-sqlite3) and of rqlite itself."""
    is_time = decltype in _TIME_TYPES
    is_bool = decltype == "boolean"
    blob_as_text = _is_text_type(result_type)

    def convert(v: object) -> Value:
        if isinstance(v, int):
            if is_time:
                return unix_to_rfc3339(v)
            if is_bool:
                return v > 0
            return v
        if isinstance(v, str):
            return text_to_rfc3339(v) if is_time else v
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace") if blob_as_text else v
        return v  # type: ignore[return-value]

    return convert


_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?(?:([+-])(\d{2}):(\d{2}))?)?)?$"
)


def unix_to_rfc3339(v: int) -> str:
    """INTEGER in a time column: Unix seconds, or milliseconds when |v| > 1e12."""
    try:
        if abs(v) > 10**12:
            seconds, ms = divmod(v, 1000)
            t = dt.datetime.fromtimestamp(seconds, dt.UTC)
            return _format(t, ms * 1_000_000, None)
        return _format(dt.datetime.fromtimestamp(v, dt.UTC), 0, None)
    except (OverflowError, OSError, ValueError):
        return _ZERO_TIME


def text_to_rfc3339(s: str) -> str:
    """TEXT in a time column, parsed with SQLite's timestamp layouts; what
    does not parse becomes Go's zero time."""
    m = _TS.match(s.removesuffix("Z"))
    if m is None:
        return _ZERO_TIME
    year, month, day, hh, mm, ss, frac, sign, oh, om = m.groups()
    try:
        t = dt.datetime(int(year), int(month), int(day), int(hh or 0), int(mm or 0), int(ss or 0))
    except ValueError:
        return _ZERO_TIME
    nanos = int((frac or "0").ljust(9, "0"))
    offset = None
    if sign:
        offset = (int(oh) * 60 + int(om)) * (1 if sign == "+" else -1)
    return _format(t, nanos, offset)


def _format(t: dt.datetime, nanos: int, offset_minutes: int | None) -> str:
    """Go's RFC3339Nano: fraction without trailing zeros, 'Z' for UTC."""
    out = t.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        out += "." + f"{nanos:09d}".rstrip("0")
    if not offset_minutes:
        return out + "Z"
    sign = "+" if offset_minutes > 0 else "-"
    h, m = divmod(abs(offset_minutes), 60)
    return f"{out}{sign}{h:02d}:{m:02d}"
