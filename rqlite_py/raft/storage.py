"""The core's read-only view of what the driver has made durable.

The core never writes storage: the driver persists what a Ready asks for and
then calls `advance()`. Keeping reads behind this protocol lets a real node
serve the log from disk (logstore.py) while tests use `MemoryStorage`.
"""

from __future__ import annotations

from typing import Protocol

from .types import ConfState, Entry, EntryType, HardState, Index, SnapshotMeta, Term


class CompactedError(Exception):
    """The requested entries were discarded by log compaction."""


class LogStorage(Protocol):
    def hard_state(self) -> HardState: ...

    def snapshot_meta(self) -> SnapshotMeta:
        """The latest snapshot (index 0 when there is none)."""
        ...

    def first_index(self) -> Index:
        """The first entry still stored; `term(first_index() - 1)` is also known."""
        ...

    def last_index(self) -> Index: ...

    def term(self, index: Index) -> Term:
        """Term of the entry at `index`, for first_index()-1 <= index <= last_index()."""
        ...

    def entries(self, lo: Index, hi: Index, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi); at least one entry when lo < hi, whatever max_bytes."""
        ...


def bootstrap_entry(conf: ConfState) -> Entry:
    """Entry 1 of a brand-new cluster: its first configuration. Every founding
    member writes it with term 1 and commit 1, as hashicorp/raft's
    BootstrapCluster does, so that a node joining later learns the
    configuration from the log like any other entry."""
    return Entry(Term(1), Index(1), conf.encode(), EntryType.CONFIG)


class MemoryStorage:
    """LogStorage in memory, with the write operations a driver needs.

    Used by the simulator (its 'disk' survives a simulated crash) and by tests.
    `entries_[0]` is a dummy entry standing for the last compacted index.
    """

    def __init__(self) -> None:
        self._hard = HardState()
        self._snap = SnapshotMeta()
        self._snap_data = b""
        self._entries: list[Entry] = [Entry(Term(0), Index(0))]

    @classmethod
    def bootstrapped(cls, conf: ConfState) -> MemoryStorage:
        s = cls()
        s.append([bootstrap_entry(conf)])
        s.set_hard_state(HardState(Term(1), HardState().vote, Index(1)))
        return s

    # -- LogStorage --------------------------------------------------------
    def hard_state(self) -> HardState:
        return self._hard

    def snapshot_meta(self) -> SnapshotMeta:
        return self._snap

    def first_index(self) -> Index:
        return Index(self._entries[0].index + 1)

    def last_index(self) -> Index:
        return Index(self._entries[0].index + len(self._entries) - 1)

    def term(self, index: Index) -> Term:
        offset = self._entries[0].index
        if index < offset:
            raise CompactedError(index)
        if index > self.last_index():
            raise IndexError(index)
        return self._entries[index - offset].term

    def entries(self, lo: Index, hi: Index, max_bytes: int) -> list[Entry]:
        offset = self._entries[0].index
        if lo <= offset:
            raise CompactedError(lo)
        if hi > self.last_index() + 1:
            raise IndexError(hi)
        out: list[Entry] = []
        size = 0
        for e in self._entries[lo - offset : hi - offset]:
            size += e.size()
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    # -- what a driver does ------------------------------------------------
    def snapshot_data(self) -> bytes:
        return self._snap_data

    def set_hard_state(self, hs: HardState) -> None:
        self._hard = hs

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Write entries, replacing any stored at or after the first one."""
        if not entries:
            return
        offset = self._entries[0].index
        first = entries[0].index
        if first <= offset:
            raise ValueError(f"append at {first} overlaps compacted index {offset}")
        if first > self.last_index() + 1:
            raise ValueError(f"append at {first} leaves a gap after {self.last_index()}")
        del self._entries[first - offset :]
        self._entries.extend(entries)

    def create_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Record a snapshot of the local state machine (meta.index <= applied)."""
        if meta.index < self._snap.index:
            raise ValueError("snapshot older than the current one")
        self._snap, self._snap_data = meta, data

    def compact(self, index: Index) -> None:
        """Discard entries up to and including `index` (keeping its term)."""
        offset = self._entries[0].index
        if index <= offset:
            return
        if index > self.last_index():
            raise ValueError(f"compact {index} beyond last index {self.last_index()}")
        term = self.term(index)
        self._entries = [Entry(term, index)] + self._entries[index - offset + 1 :]

    def apply_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Replace everything with a snapshot received from the leader."""
        self._snap, self._snap_data = meta, data
        self._entries = [Entry(meta.term, meta.index)]
        if self._hard.commit < meta.index:
            self._hard = HardState(self._hard.term, self._hard.vote, meta.index)
