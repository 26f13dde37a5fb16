"""The durable Raft log, hard state and snapshot metadata, in `raft.db`.

apsw with WAL and synchronous=FULL: a Ready's entries and hard state are
written in one transaction, so one fsync makes a whole batch durable. It
implements the core's `LogStorage` protocol; recent entries are also kept in
memory so that the leader's appends and the apply loop rarely read the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator

import apsw

from .disk import DiskError, guarded
from .raft.storage import CompactedError
from .raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    SnapshotMeta,
    Term,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,
                                type INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_CACHE_ENTRIES = 4096
_CACHE_BYTES = 8 << 20
"""The cache is bounded in bytes too: 4096 entries of a bulk load are 4 GB
(issue 7 measured a node at 1 GB resident after building a 1 GB database)."""


class _EntryCache:
    """The most recent entries, oldest evicted first, within both bounds."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self.bytes = 0

    def get(self, index: int) -> Entry | None:
        return self._entries.get(index)

    def put(self, e: Entry) -> None:
        old = self._entries.pop(e.index, None)
        if old is not None:
            self.bytes -= old.size()
        self._entries[e.index] = e
        self.bytes += e.size()
        while self._entries and (len(self._entries) > _CACHE_ENTRIES or self.bytes > _CACHE_BYTES):
            self.bytes -= self._entries.popitem(last=False)[1].size()

    def drop(self, keep: Callable[[int], bool]) -> None:
        for i in [k for k in self._entries if not keep(k)]:
            self.bytes -= self._entries.pop(i).size()

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class LogStoreError(Exception):
    """raft.db is unreadable or inconsistent: the node must not start."""


class LogStore:
    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = apsw.Connection(path)
            # Only this connection ever opens raft.db: with the lock held for
            # good, SQLite skips the file locks and the shared-memory index it
            # would take on every transaction (part of a save's time on the
            # path of every write), and a second process started on the
            # same data directory fails here instead of sharing the log.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except apsw.Error as e:
            raise LogStoreError(f"cannot open Raft log {path}: {e}") from e
        # The driver thread writes; HTTP threads read /status figures.
        self._lock = threading.RLock()
        self._cache = _EntryCache()
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        hs = json.loads(meta.get("hard_state", '{"term":0,"vote":"","commit":0}'))
        self._hard = HardState(Term(hs["term"]), NodeId(hs["vote"]), Index(hs["commit"]))
        self._hard_unsaved = False  # _hard's commit index is newer than the file's
        self._snap = _decode_snap(meta.get("snapshot"))
        fp = json.loads(meta.get("db_fingerprint", "null"))
        self._fingerprint: tuple[int, int, int] | None = tuple(fp) if fp else None  # type: ignore[assignment]
        # The entry before the first stored one: (index, term) after compaction.
        base = json.loads(meta.get("base", "[0,0]"))
        self._base_index, self._base_term = Index(base[0]), Term(base[1])
        row = self._db.execute("SELECT max(idx) FROM log").fetchone()
        self._last = Index(row[0] if row and row[0] is not None else self._base_index)

    def close(self) -> None:
        with self._lock:
            if self._hard_unsaved:
                with contextlib.suppress(DiskError, apsw.Error), self._transaction():
                    self._put_hard_state(self._hard)
            self._db.close()

    def is_empty(self) -> bool:
        return self._last == 0 and self._hard == HardState() and self._snap.index == 0

    # -- LogStorage -----------------------------------------------------------
    def hard_state(self) -> HardState:
        return self._hard

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap

    def first_index(self) -> Index:
        return Index(self._base_index + 1)

    def last_index(self) -> Index:
        return self._last

    def term(self, index: Index) -> Term:
        if index == self._base_index:
            return self._base_term
        if index < self._base_index:
            raise CompactedError(index)
        if index > self._last:
            raise IndexError(index)
        cached = self._cache.get(index)
        if cached is not None:
            return cached.term
        with self._lock:
            row = self._db.execute("SELECT term FROM log WHERE idx=?", (index,)).fetchone()
        if row is None:
            raise LogStoreError(f"entry {index} missing from the log")
        return Term(row[0])

    def entries(self, lo: Index, hi: Index, max_bytes: int) -> list[Entry]:
        if lo <= self._base_index:
            raise CompactedError(lo)
        if hi > self._last + 1:
            raise IndexError(hi)
        out: list[Entry] = []
        size = 0
        i = lo
        while i < hi:
            e = self._cache.get(i)
            if e is None:
                break
            size += e.size()
            if out and size > max_bytes:
                return out
            out.append(e)
            i = Index(i + 1)
        if i < hi:
            with self._lock:
                rows = self._db.execute(
                    "SELECT idx, term, type, data FROM log WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (i, hi),
                )
                for idx, term, type_, data in rows:
                    e = Entry(Term(term), Index(idx), bytes(data), EntryType(type_))
                    size += e.size()
                    if out and size > max_bytes:
                        break
                    out.append(e)
        return out

    # -- what the driver writes -------------------------------------------------
    def save(self, entries: tuple[Entry, ...], hard_state: HardState | None) -> bool:
        """Persist a Ready's entries (replacing any at or after the first) and
        hard state in one transaction, durable when this returns. A failure
        of the disk raises DiskError and changes nothing: the transaction is
        rolled back and what this object reports stays as it was. Returns
        whether it wrote (and synced) anything."""
        if not entries and hard_state is None:
            return False
        if (
            not entries
            and hard_state is not None
            and (hard_state.term, hard_state.vote) == (self._hard.term, self._hard.vote)
        ):
            # Only the commit index moved. Raft keeps it volatile (a restarted
            # node learns it again), and an fsync for it alone would sit on the
            # path of every write: it is written with the next save, or at close.
            self._hard = hard_state
            self._hard_unsaved = True
            return False
        with self._lock, guarded(), self._transaction():
            if entries:
                first = entries[0].index
                if first <= self._base_index:
                    raise LogStoreError(f"append at {first} below compacted {self._base_index}")
                if first <= self._last:
                    self._db.execute("DELETE FROM log WHERE idx >= ?", (first,))
                    self._cache.drop(lambda k: k < first)
                self._db.executemany(
                    "INSERT INTO log(idx, term, type, data) VALUES(?,?,?,?)",
                    [(e.index, e.term, e.type.value, e.data) for e in entries],
                )
            if hard_state is not None or self._hard_unsaved:
                self._put_hard_state(hard_state or self._hard)
        if entries:
            self._last = entries[-1].index
            for e in entries:
                self._cache.put(e)
        if hard_state is not None:
            self._hard = hard_state
        self._hard_unsaved = False
        return True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN ... COMMIT through execute: apsw releases the GIL while
        SQLite commits (the fsync), which its `with connection:` does not,
        so HTTP threads keep serving while the Raft loop waits for the disk."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if not self._db.get_autocommit():
                self._db.execute("ROLLBACK")
            raise

    def set_snapshot(self, meta: SnapshotMeta, db_fingerprint: tuple[int, int]) -> None:
        """Record that a snapshot of the state machine exists at meta.index,
        and the fingerprint of the database file that holds that state."""
        with self._lock, guarded(), self._db:
            self._put("snapshot", _encode_snap(meta))
            self._put("db_fingerprint", [meta.index, *db_fingerprint])
        self._snap = meta
        self._fingerprint = (meta.index, *db_fingerprint)

    def db_fingerprint(self) -> tuple[int, int, int] | None:
        """(index, size, mtime_ns) of the database file at the last snapshot."""
        return self._fingerprint

    def compact(self, index: Index) -> None:
        """Discard entries up to and including `index` (keeping its term)."""
        if index <= self._base_index:
            return
        if index > self._last:
            raise LogStoreError(f"compact {index} beyond last index {self._last}")
        term = self.term(index)
        with self._lock, guarded(), self._db:
            self._db.execute("DELETE FROM log WHERE idx <= ?", (index,))
            self._put("base", [index, term])
        self._base_index, self._base_term = index, term
        self._cache.drop(lambda k: k > index)

    def apply_snapshot(self, meta: SnapshotMeta) -> None:
        """Replace the log with a snapshot received from the leader."""
        hs = self._hard
        if hs.commit < meta.index:
            hs = HardState(hs.term, hs.vote, meta.index)
        with self._lock, guarded(), self._db:
            self._db.execute("DELETE FROM log")
            self._put("base", [meta.index, meta.term])
            self._put("snapshot", _encode_snap(meta))
            self._put_hard_state(hs)
        self._cache.clear()
        self._base_index, self._base_term = meta.index, meta.term
        self._last = meta.index
        self._snap = meta
        self._hard = hs
        self._hard_unsaved = False

    def bootstrap(self, entry: Entry, hard_state: HardState) -> None:
        self.save((entry,), hard_state)

    def _put_hard_state(self, hs: HardState) -> None:
        self._put("hard_state", {"term": hs.term, "vote": hs.vote, "commit": hs.commit})

    def _put(self, key: str, value: object) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, json.dumps(value))
        )

    def size_bytes(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0


def _encode_snap(meta: SnapshotMeta) -> dict[str, object]:
    return {
        "index": meta.index,
        "term": meta.term,
        "voters": list(meta.conf.voters),
        "learners": list(meta.conf.learners),
        "addrs": dict(meta.conf.addrs),
    }


def _decode_snap(text: str | None) -> SnapshotMeta:
    if not text:
        return SnapshotMeta()
    obj = json.loads(text)
    return SnapshotMeta(
        Index(obj["index"]),
        Term(obj["term"]),
        ConfState.of(obj["voters"], obj["learners"], obj.get("addrs")),
    )
