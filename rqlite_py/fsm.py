"""The state machine: committed log entries applied to SQLite, in order.

Exactly once: the database file is derived data. On start it is rebuilt by
replaying the committed log (until snapshots arrive, from the start of the
log), so an entry applied just before a crash is never applied twice and an
acknowledged one is never missing: acknowledgement waits for the log's fsync.
SQL errors are results, identical on every node; an entry that cannot be
decoded stops the node (CommandError propagates).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence

import apsw

from . import command, db
from .raft.types import ConfState, Entry, EntryType
from .results import Result

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


class StateMachine:
    def __init__(self, database: db.Database) -> None:
        self.db = database
        self.applied_index = 0
        self.conf = ConfState()
        self._staging_path = database.path + ".load"
        self._staging: tuple[bytes, int, int] | None = None
        """(load id, next piece expected, index of the last piece) of a load in progress."""
        self._drop_staging()

    def _load_chunk(self, chunk: command.LoadChunk, index: int) -> list[Result]:
        """Stage the pieces of a loaded file; the last one replaces the
        database. Every node stages the same pieces at the same indexes."""
        if chunk.seq == 0:
            self._drop_staging()
            self._staging = (chunk.load_id, 0, index)
            open(self._staging_path, "wb").close()
        elif self._staging is None or self._staging[:2] != (chunk.load_id, chunk.seq):
            # A piece of a load whose start this node never staged (an
            # abandoned load): nothing to add it to.
            return []
        with open(self._staging_path, "ab") as f:
            f.write(chunk.data)
        self._staging = (chunk.load_id, chunk.seq + 1, index)
        if chunk.seq == chunk.count - 1:
            self.load_database(self._staging_path)
            self._drop_staging()
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

    def apply(self, entries: Sequence[Entry]) -> list[list[Result]]:
        """Apply entries in order; one result list per entry."""
        out = []
        for e in entries:
            out.append(self._apply_one(e))
            self.applied_index = e.index
            self._expire_staging(e.index)
        return out

    def load_database(self, path: str) -> None:
        """Replace the database's contents with the SQLite file at `path`."""
        src = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            with self.db.writer.backup("main", src, "main") as b:
                b.step()
        finally:
            src.close()

    def _apply_one(self, e: Entry) -> list[Result]:
        if e.type is EntryType.CONFIG:
            self.conf = ConfState.decode(e.data)
            return []
        if not e.data:
            return []  # a new leader's no-op
        chunk = command.decode_load_chunk(e.data)
        if chunk is not None:
            return self._load_chunk(chunk, e.index)
        cmd = command.decode(e.data)
        if cmd.kind is command.Kind.LOAD_SQL:
            writer = self.db.writer
            results = db.run(writer, cmd.statements, transaction=False, mode=db.Mode.EXECUTE)
            if any(r.error for r in results) and not writer.get_autocommit():
                writer.execute("ROLLBACK")  # the dump's own BEGIN, left open
            return results
        return db.run(
            self.db.writer,
            cmd.statements,
            transaction=cmd.transaction,
            mode=_MODES[cmd.kind],
            limit=db.step_budget(cmd.step_budget),
            timeout_error="query timeout" if cmd.kind is command.Kind.QUERY else "execute timeout",
        )
