"""The Raft log as the core sees it: what storage holds (durable) plus an
unstable tail that a Ready hands to the driver to persist."""

from __future__ import annotations

from .storage import CompactedError, LogStorage
from .types import Entry, Index, SnapshotMeta, Term


class LogInvariantError(AssertionError):
    """A rule that Raft guarantees was broken: a bug, never bad input."""


class RaftLog:
    def __init__(self, storage: LogStorage, applied: Index | None = None) -> None:
        self.storage = storage
        hs = storage.hard_state()
        snap = storage.snapshot_meta()
        self.committed: Index = Index(max(hs.commit, snap.index))
        self.applied: Index = (
            Index(max(snap.index, storage.first_index() - 1)) if applied is None else applied
        )
        if not storage.first_index() - 1 <= self.applied <= self.committed:
            raise LogInvariantError(
                f"applied {self.applied} outside [{storage.first_index() - 1}, {self.committed}]"
            )
        self.unstable: list[Entry] = []
        self.unstable_offset: Index = Index(storage.last_index() + 1)
        self.pending_snapshot: SnapshotMeta | None = None
        """A snapshot received from the leader, not yet installed by the driver."""

    # -- bounds and lookups -------------------------------------------------
    def first_index(self) -> Index:
        if self.pending_snapshot is not None:
            return Index(self.pending_snapshot.index + 1)
        return self.storage.first_index()

    def last_index(self) -> Index:
        if self.unstable:
            return Index(self.unstable_offset + len(self.unstable) - 1)
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return self.storage.last_index()

    def last_stable_index(self) -> Index:
        """The last index that is durable and still part of this log."""
        if self.pending_snapshot is not None:
            return Index(0)
        return Index(min(self.storage.last_index(), self.unstable_offset - 1))

    def term(self, index: Index) -> Term | None:
        """The entry's term, or None when it is compacted or beyond the end."""
        if self.pending_snapshot is not None and index == self.pending_snapshot.index:
            return self.pending_snapshot.term
        if index > self.last_index() or index < self.first_index() - 1:
            return None
        if self.unstable and index >= self.unstable_offset:
            return self.unstable[index - self.unstable_offset].term
        try:
            return self.storage.term(index)
        except CompactedError:
            return None

    def last_term(self) -> Term:
        t = self.term(self.last_index())
        if t is None:
            raise LogInvariantError("term of the last index is unknown")
        return t

    def match_term(self, index: Index, term: Term) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        """§5.4.1: a candidate's log is at least as up to date as ours."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def entries(self, lo: Index, hi: Index, max_bytes: int) -> list[Entry] | None:
        """Entries [lo, hi), at least one, at most about max_bytes; None if
        any of them was compacted."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            return None
        out: list[Entry] = []
        if lo < self.unstable_offset:
            try:
                out = self.storage.entries(lo, min(hi, self.unstable_offset), max_bytes)
            except CompactedError:
                return None
            if len(out) < min(hi, self.unstable_offset) - lo:
                return out
        if hi > self.unstable_offset:
            size = sum(e.size() for e in out)
            start = max(lo, self.unstable_offset) - self.unstable_offset
            for e in self.unstable[start : hi - self.unstable_offset]:
                size += e.size()
                if out and size > max_bytes:
                    break
                out.append(e)
        return out

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> Index:
        """The first entry that is not in our log (new or of another term), or 0."""
        for e in entries:
            if not self.match_term(e.index, e.term):
                return e.index
        return Index(0)

    def find_conflict_by_term(self, index: Index, term: Term) -> Index:
        """The largest index <= `index` whose term is <= `term`: every entry
        after it is known not to match a log whose entry at `index` has
        `term`, so a whole term is skipped per round trip."""
        while index > 0:
            t = self.term(index)
            if t is None or t <= term:
                break
            index = Index(index - 1)
        return index

    # -- changes ------------------------------------------------------------
    def append(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        """Append, truncating any (uncommitted) suffix they replace."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.committed:
            raise LogInvariantError(f"truncating committed entry {first} <= {self.committed}")
        if first > self.last_index() + 1:
            raise LogInvariantError(f"gap: append at {first} after {self.last_index()}")
        if first == self.unstable_offset + len(self.unstable):
            self.unstable.extend(entries)
        elif first <= self.unstable_offset:
            self.unstable = list(entries)
            self.unstable_offset = first
        else:
            del self.unstable[first - self.unstable_offset :]
            self.unstable.extend(entries)

    def maybe_append(
        self, prev_index: Index, prev_term: Term, commit: Index, entries: tuple[Entry, ...]
    ) -> Index | None:
        """The AppendEntries receiver rules (Figure 2). Returns the index of
        the last new entry, or None when the consistency check fails."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = Index(prev_index + len(entries))
        conflict = self.find_conflict(entries)
        if conflict:
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(Index(min(commit, last_new)))
        return last_new

    def commit_to(self, index: Index) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise LogInvariantError(f"commit {index} beyond last index {self.last_index()}")
            self.committed = index

    def applied_to(self, index: Index) -> None:
        if index > self.committed or index < self.applied:
            raise LogInvariantError(f"applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def restore(self, snap: SnapshotMeta) -> None:
        """Replace the log with a snapshot received from the leader."""
        self.pending_snapshot = snap
        self.unstable = []
        self.unstable_offset = Index(snap.index + 1)
        self.committed = snap.index

    def stable_to(self, index: Index, term: Term) -> None:
        """Entries up to `index` (of `term`) are durable."""
        if self.term(index) != term or index < self.unstable_offset:
            return
        del self.unstable[: index + 1 - self.unstable_offset]
        self.unstable_offset = Index(index + 1)

    def snapshot_installed(self, snap: SnapshotMeta) -> None:
        if self.pending_snapshot == snap:
            self.pending_snapshot = None
            self.applied = Index(max(self.applied, snap.index))

    def next_committed(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet applied, in order."""
        lo = Index(self.applied + 1)
        if self.pending_snapshot is not None:
            lo = Index(max(lo, self.pending_snapshot.index + 1))
        hi = Index(self.committed + 1)
        if lo >= hi:
            return []
        got = self.entries(lo, hi, max_bytes)
        if got is None:
            raise LogInvariantError(f"committed entries from {lo} were compacted before apply")
        return got
