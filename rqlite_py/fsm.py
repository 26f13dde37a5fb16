"""The state machine: committed log entries applied to SQLite, in order.

Exactly once: the database file is derived data. On start it is rebuilt by
replaying the committed log (until snapshots arrive, from the start of the
log), so an entry applied just before a crash is never applied twice and an
acknowledged one is never missing: acknowledgement waits for the log's fsync.
SQL errors are results, identical on every node; an entry that cannot be
decoded stops the node (CommandError propagates).

All or nothing: a failure of the disk (disk.DiskError) is never a result. Each
entry runs inside a SAVEPOINT, released when the entry is done (SQL errors
included) and rolled back when the disk fails, so the entry can be applied
again later, exactly once. The few entries that must manage transactions
themselves (BEGIN, COMMIT, VACUUM, PRAGMA, SQL dumps...) run unwrapped; if the
disk fails halfway through one of those, the database holds part of it and
is rebuilt aside from the latest snapshot and the log (`rebuild`) before the
entry is tried again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Sequence

import apsw

from . import authorizer, command, db
from .disk import DiskError, guarded
from .raft.types import ConfState, Entry, EntryType
from .results import ExecuteResult, Result

log = logging.getLogger(__name__)

STAGING_EXPIRY_ENTRIES = 1000

_MODES = {
    command.Kind.EXECUTE: db.Mode.EXECUTE,
    command.Kind.QUERY: db.Mode.QUERY,
    command.Kind.REQUEST: db.Mode.REQUEST,
}


def remove_database_files(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


_OWN_TRANSACTION_ERRORS = (
    "cannot start a transaction within a transaction",
    "cannot VACUUM from within a transaction",
)
"""SQLite's answers to a statement that cannot run inside a transaction."""


class StateMachine:
    def __init__(self, database: db.Database) -> None:
        self.db = database
        self.applied_index = 0
        self.conf = ConfState()
        self._staging_path = database.path + ".load"
        self._staging: tuple[bytes, int, int, int] | None = None
        """(load id, next piece expected, index of the last piece, bytes staged)
        of a load in progress."""
        self.needs_rebuild = False
        """An unwrapped entry failed halfway: the database holds part of it and
        must be rebuilt (`rebuild`) before anything else is applied."""
        self._drop_staging()

    def _load_chunk(self, chunk: command.LoadChunk, index: int) -> list[Result]:
        """Stage the pieces of a loaded file; the last one replaces the
        database. Every node stages the same pieces at the same indexes.
        Each piece is written at its offset and the staging state moves on
        only once everything succeeded, so a piece can be applied again
        after a failure of the disk."""
        if chunk.seq == 0:
            self._drop_staging()
            offset = 0
        elif self._staging is None or self._staging[:2] != (chunk.load_id, chunk.seq):
            # A piece of a load whose start this node never staged (an
            # abandoned load): nothing to add it to.
            return []
        else:
            offset = self._staging[3]
        with guarded(), open(self._staging_path, "r+b" if offset else "wb") as f:
            f.seek(offset)
            f.write(chunk.data)
            f.truncate()
        if chunk.seq == chunk.count - 1:
            try:
                self.load_database(self._staging_path)
            except apsw.Error as e:
                # Not a disk failure (those raise DiskError): the file itself
                # is bad, on every node alike. That is the load's result.
                self._drop_staging()
                return [ExecuteResult(error=str(e))]
            self._drop_staging()
        else:
            self._staging = (chunk.load_id, chunk.seq + 1, index, offset + len(chunk.data))
        return []

    def _expire_staging(self, index: int) -> None:
        """A load abandoned midway (its leader died) is dropped once this many
        entries have gone by without a piece of it: at the same index on every
        node, since it is counted in the log."""
        if self._staging is not None and index - self._staging[2] > STAGING_EXPIRY_ENTRIES:
            log.warning("dropping an abandoned load")
            self._drop_staging()

    def _drop_staging(self) -> None:
        self._staging = None
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._staging_path)

    @property
    def is_staging(self) -> bool:
        """A load is half-applied: no snapshot may be taken now, because the
        staged pieces are not part of the database yet."""
        return self._staging is not None

    def restore_from(self, path: str, index: int, conf: ConfState) -> None:
        """Replace the whole database with the snapshot file at `path`.
        Readers see the old database or the new one, never a mix."""
        self.load_database(path)
        self._drop_staging()
        self.applied_index = index
        self.conf = conf
        self.needs_rebuild = False

    def apply(self, entries: Sequence[Entry]) -> list[list[Result]]:
        """Apply entries in order; one result list per entry. On DiskError
        the entries before the failing one stay applied (see applied_index)."""
        return [self.apply_entry(e) for e in entries]

    def apply_entry(
        self, e: Entry, decoded: command.Command | None = None, *, counted: bool = True
    ) -> list[Result]:
        """Apply one entry, all or nothing: on DiskError applied_index stays
        where it was and the entry may be applied again later. `decoded` is
        the command the entry holds, when the caller has it already. Without
        `counted`, nobody reads the results but their errors (see db.run)."""
        if self.needs_rebuild:
            raise DiskError("the database must be rebuilt before applying more entries")
        results = self._apply_one(e, decoded, counted)
        self.applied_index = e.index
        self._expire_staging(e.index)
        return results

    def load_database(self, path: str) -> None:
        """Replace the database's contents with the SQLite file at `path`, in
        one step (the backup API rolls the copy back if the disk fails)."""
        with guarded():
            src = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
            try:
                with self.db.writer.backup("main", src, "main") as b:
                    b.step()
            finally:
                src.close()

    def rebuild(
        self,
        snapshot_path: str | None,
        snapshot_index: int,
        snapshot_conf: ConfState,
        entries: Iterable[Entry],
    ) -> None:
        """Rebuild the database after an unwrapped entry failed halfway: a
        copy of the snapshot (or an empty database) gets the log after it,
        up to applied_index, replayed aside, then replaces the live
        database in one step, so readers see the old state or the new one.
        Raises DiskError (and stays to be rebuilt) if the disk fails again."""
        side = self.db.path + ".rebuild"
        remove_database_files(side)
        try:
            with guarded():
                if snapshot_path is not None:
                    shutil.copyfile(snapshot_path, side)
                try:
                    aside_db = db.Database(
                        side,
                        foreign_keys=self.db.foreign_keys,
                        max_readers=1,
                        allow_external=self.db.allow_external,
                    )
                except db.DatabaseError as e:
                    raise e.__cause__ or e from e
            aside = StateMachine(aside_db)
            try:
                aside.applied_index = snapshot_index
                aside.conf = snapshot_conf
                for e in entries:
                    aside.apply_entry(e)
                if aside.applied_index != self.applied_index:
                    raise RuntimeError(
                        f"rebuild reached {aside.applied_index}, not {self.applied_index}"
                    )
                writer = aside.db.writer
                with guarded():
                    if not writer.get_autocommit():
                        log.warning("rebuild: a transaction left open by a request is dropped")
                        writer.execute("ROLLBACK")
                    with authorizer.trusted():
                        writer.execute("PRAGMA journal_mode=DELETE")  # all of it in the file
            finally:
                aside._drop_staging()
                aside.db.close()
            live = self.db.writer
            with guarded():
                if not live.get_autocommit():
                    live.execute("ROLLBACK")
            self.load_database(side)
            self.needs_rebuild = False
            log.warning("database rebuilt from the snapshot at %d and the log", snapshot_index)
        finally:
            remove_database_files(side)

    def _apply_one(self, e: Entry, decoded: command.Command | None, counted: bool) -> list[Result]:
        if e.type is EntryType.CONFIG:
            self.conf = ConfState.decode(e.data)
            return []
        if not e.data:
            return []  # a new leader's no-op
        if decoded is not None:
            cmd = decoded
        else:
            chunk = command.decode_load_chunk(e.data)
            if chunk is not None:
                return self._load_chunk(chunk, e.index)
            cmd = command.decode(e.data)
        if cmd.kind is command.Kind.LOAD_SQL:
            return self._unwrapped(lambda: self._load_sql(cmd))
        return self._run(cmd, counted)

    def _load_sql(self, cmd: command.Command) -> list[Result]:
        """POST /db/load of SQL text: all of it or, on an error, none of it.
        It runs in a transaction of ours; a script that manages its own
        (a dump: `BEGIN TRANSACTION; ... COMMIT;`) fails in ours at its
        BEGIN, is rolled back, and runs again without it, its own BEGIN
        then making it all or nothing. Telling scripts apart by SQLite's
        answer, not by parsing them, keeps a large dump off the lexer."""
        writer = self.db.writer
        if writer.get_autocommit():
            with guarded():
                writer.execute("BEGIN")
            results = db.run(writer, cmd.statements, transaction=False, mode=db.Mode.EXECUTE)
            failed = [r.error for r in results if r.error]
            with guarded():
                if not failed:
                    if not writer.get_autocommit():  # the script may have committed itself
                        writer.execute("COMMIT")
                    return results
                if not writer.get_autocommit():
                    writer.execute("ROLLBACK")
            if not any(m in e for e in failed for m in _OWN_TRANSACTION_ERRORS):
                return results
        results = db.run(writer, cmd.statements, transaction=False, mode=db.Mode.EXECUTE)
        if any(r.error for r in results) and not writer.get_autocommit():
            with guarded():
                writer.execute("ROLLBACK")  # the dump's own BEGIN, left open
        return results

    def _run(self, cmd: command.Command, counted: bool) -> list[Result]:
        """A request inside the entry's savepoint (see db.run, `wrapped`)."""
        writer = self.db.writer

        def run(**wrap: bool) -> list[Result]:
            return db.run(
                writer,
                cmd.statements,
                transaction=cmd.transaction,
                mode=_MODES[cmd.kind],
                limit=db.step_budget(cmd.step_budget),
                timeout_error=(
                    "query timeout" if cmd.kind is command.Kind.QUERY else "execute timeout"
                ),
                counted=counted,
                **wrap,
            )

        outer = writer.get_autocommit()
        if cmd.transaction and not outer:
            # BEGIN inside a transaction a request left open: it fails, and
            # that failure is the result, as it is unwrapped.
            return self._unwrapped(run)
        with guarded():
            writer.execute("SAVEPOINT rqlite_entry")
        try:
            try:
                results = run(wrapped=True, from_autocommit=outer, statement_savepoints=False)
            except db.SavepointsNeededError:
                with guarded():
                    writer.execute("ROLLBACK TO rqlite_entry")
                results = run(wrapped=True, from_autocommit=outer)
        except db.OwnTransactionError:
            self._undo_entry(outer)  # back at the start of the entry: run it unwrapped
            if self.needs_rebuild:
                raise DiskError("the entry could not be rolled back") from None
            return self._unwrapped(run)
        except db.TransactionLostError:
            return self._unwrapped(run)  # all of it was rolled back: at the start again
        except DiskError:
            self._undo_entry(outer)
            raise
        try:
            with guarded():
                if not writer.get_autocommit():
                    writer.execute("RELEASE rqlite_entry")  # commits, when outer
        except DiskError:
            self._undo_entry(outer)
            raise
        return results

    def _undo_entry(self, outer: bool) -> None:
        """Roll the entry's savepoint back. If SQLite already rolled back a
        transaction a request had left open (it may, on SQLITE_FULL), earlier
        entries' work went with it: the database must be rebuilt."""
        writer = self.db.writer
        try:
            if writer.get_autocommit():
                if not outer:
                    self.needs_rebuild = True
            elif outer:
                writer.execute("ROLLBACK")
            else:
                writer.execute("ROLLBACK TO rqlite_entry")
                writer.execute("RELEASE rqlite_entry")
        except apsw.Error as e:
            log.error("cannot roll back a failed entry: %s", e)
            self.needs_rebuild = True

    def _unwrapped(self, run: Callable[[], list[Result]]) -> list[Result]:
        """Run an entry that manages transactions itself. If the disk fails
        halfway, what committed before stays: rebuild before going on."""
        try:
            return run()
        except DiskError:
            self.needs_rebuild = True
            writer = self.db.writer
            with contextlib.suppress(apsw.Error):
                if not writer.get_autocommit():
                    writer.execute("ROLLBACK")
            raise
