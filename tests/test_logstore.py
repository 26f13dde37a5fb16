"""raft.db: append, truncate, hard state, reopen; the LogStorage protocol."""

from __future__ import annotations

from pathlib import Path

import pytest

from rqlite_py.logstore import LogStore, LogStoreError
from rqlite_py.raft.storage import CompactedError
from rqlite_py.raft.types import Entry, EntryType, HardState, Index, NodeId, Term


def entries(lo: int, hi: int, term: int, size: int = 10) -> tuple[Entry, ...]:
    return tuple(Entry(Term(term), Index(i), bytes([i % 256]) * size) for i in range(lo, hi + 1))


def test_empty_store(tmp_path: Path) -> None:
    s = LogStore(str(tmp_path / "raft.db"))
    assert s.is_empty()
    assert (s.first_index(), s.last_index(), s.term(Index(0))) == (1, 0, 0)
    assert s.hard_state() == HardState()


def test_append_truncate_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    s = LogStore(path)
    s.save(entries(1, 10, 1), HardState(Term(1), NodeId("n1"), Index(3)))
    s.save(entries(6, 8, 2), None)  # replaces 6..10 with 6..8 of term 2
    assert s.last_index() == 8
    assert [e.term for e in s.entries(Index(1), Index(9), 1 << 20)] == [1] * 5 + [2] * 3
    s.close()
    r = LogStore(path)
    assert r.last_index() == 8
    assert r.term(Index(5)) == 1 and r.term(Index(6)) == 2
    assert r.hard_state() == HardState(Term(1), NodeId("n1"), Index(3))
    got = r.entries(Index(1), Index(9), 1 << 20)
    assert got == list(entries(1, 5, 1) + entries(6, 8, 2))
    assert not r.is_empty()


def test_entries_respect_max_bytes_but_return_one(tmp_path: Path) -> None:
    s = LogStore(str(tmp_path / "raft.db"))
    s.save(entries(1, 10, 1, size=100), None)
    assert len(s.entries(Index(1), Index(11), 1)) == 1
    assert len(s.entries(Index(1), Index(11), 3 * 124)) == 3


def test_bounds(tmp_path: Path) -> None:
    s = LogStore(str(tmp_path / "raft.db"))
    s.save(entries(1, 3, 1), None)
    with pytest.raises(IndexError):
        s.term(Index(4))
    with pytest.raises(IndexError):
        s.entries(Index(1), Index(5), 100)
    with pytest.raises(CompactedError):
        s.entries(Index(0), Index(2), 100)


def test_config_entries_keep_their_type(tmp_path: Path) -> None:
    path = str(tmp_path / "raft.db")
    s = LogStore(path)
    e = Entry(Term(1), Index(1), b'{"voters":["a"],"learners":[]}', EntryType.CONFIG)
    s.save((e,), None)
    s.close()
    assert LogStore(path).entries(Index(1), Index(2), 100) == [e]


def test_the_entry_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    """Found by issue 7's benchmark: 4096 cached entries of a bulk load kept
    a node at 1 GB resident. Evicted entries are read back from the file."""
    from rqlite_py import logstore

    s = LogStore(str(tmp_path / "raft.db"))
    big = 1 << 20
    for i in range(1, 41):
        s.save(entries(i, i, 1, size=big), None)
    assert s._cache.bytes <= logstore._CACHE_BYTES
    assert s._cache.get(1) is None and s._cache.get(40) is not None
    got = s.entries(Index(1), Index(41), 1 << 30)
    assert [e.index for e in got] == list(range(1, 41))
    assert all(len(e.data) == big for e in got)
    s.save(entries(30, 30, 2, size=big), None)  # truncation drops cached entries after it
    assert s._cache.get(31) is None and s._cache.get(30) is not None
    assert s._cache.bytes == sum(
        s._cache.get(i).size() for i in range(1, 41) if s._cache.get(i) is not None
    )


def test_a_second_opener_of_the_log_is_refused(tmp_path: Path) -> None:
    """One process owns raft.db (SQLite's exclusive locking mode): a second
    node started on the same data directory cannot share the log."""
    path = str(tmp_path / "raft.db")
    s = LogStore(path)
    with pytest.raises(LogStoreError, match="locked"):
        LogStore(path)
    s.close()
    LogStore(path).close()
