"""The state machine's staging of loaded files."""

from __future__ import annotations

from pathlib import Path

import pytest

from rqlite_py import authorizer, command, db, fsm
from rqlite_py.command import Command, Kind, Statement
from rqlite_py.raft.types import Entry, Index, Term


def entry(i: int, data: bytes) -> Entry:
    return Entry(Term(1), Index(i), data)


def sqlite_file(path: Path) -> bytes:
    d = db.Database(str(path))
    d.writer.execute("CREATE TABLE loaded (x); INSERT INTO loaded VALUES(42)")
    with authorizer.trusted():
        d.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    d.close()
    return path.read_bytes()


@pytest.fixture
def machine(tmp_path: Path) -> fsm.StateMachine:
    return fsm.StateMachine(db.Database(str(tmp_path / "db.sqlite")))


def test_pieces_apply_with_the_last(
    machine: fsm.StateMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "LOAD_CHUNK_BYTES", 1024)
    chunks = command.encode_load_chunks(sqlite_file(tmp_path / "src.sqlite"), b"a" * 16)
    machine.apply([entry(i + 1, c) for i, c in enumerate(chunks[:-1])])
    assert machine.is_staging
    assert not list(machine.db.writer.execute("SELECT name FROM sqlite_master WHERE name='loaded'"))
    machine.apply([entry(len(chunks), chunks[-1])])
    assert not machine.is_staging
    assert list(machine.db.writer.execute("SELECT x FROM loaded")) == [(42,)]


def test_an_abandoned_load_expires_after_enough_entries(
    machine: fsm.StateMachine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "LOAD_CHUNK_BYTES", 1024)
    chunks = command.encode_load_chunks(sqlite_file(tmp_path / "src.sqlite"), b"b" * 16)
    machine.apply([entry(1, chunks[0])])
    noop = command.encode(Command(Kind.EXECUTE, (Statement("SELECT 1"),)))
    machine.apply([entry(i, noop) for i in range(2, 2 + fsm.STAGING_EXPIRY_ENTRIES)])
    assert machine.is_staging
    machine.apply([entry(2 + fsm.STAGING_EXPIRY_ENTRIES, noop)])
    assert not machine.is_staging
    # A stray later piece of the abandoned load changes nothing.
    assert machine.apply([entry(5000, chunks[1])]) == [[]]
    assert not machine.is_staging
