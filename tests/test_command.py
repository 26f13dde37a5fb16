"""The log-entry payload codec: round trips, and loud failure on garbage."""

from __future__ import annotations

import pytest

from rqlite_py import command
from rqlite_py.command import Command, CommandError, Kind, Statement

CASES = [
    Command(Kind.EXECUTE, (Statement("CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)"),)),
    Command(
        Kind.EXECUTE,
        (
            Statement("INSERT INTO foo(name, age) VALUES(?, ?)", ("fiona", 20)),
            Statement("INSERT INTO foo(name) VALUES(:name)", named=(("name", "é 🙂"),)),
            Statement("INSERT INTO b VALUES(?, ?, ?, ?)", (b"\x00\xff", None, 1.5, True)),
            Statement("INSERT INTO foo(name) VALUES('x') RETURNING id", returning=True),
        ),
        transaction=True,
        step_budget=1000,
    ),
    Command(Kind.QUERY, (Statement("SELECT * FROM foo WHERE id > ?", (-(2**63),)),)),
    Command(Kind.REQUEST, (Statement("SELECT 1"), Statement("INSERT INTO t VALUES(1)"))),
]


@pytest.mark.parametrize("cmd", CASES)
def test_round_trip(cmd: Command) -> None:
    assert command.decode(command.encode(cmd)) == cmd


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        b'{"v":2,"k":"execute","s":[]}',
        b'{"v":1,"k":"nope","s":[]}',
        b'{"v":1,"k":"execute","s":[[1,[{"x":1}]]]}',
    ],
)
def test_garbage_is_a_command_error(data: bytes) -> None:
    with pytest.raises(CommandError):
        command.decode(data)


def test_load_chunks_round_trip_and_garbage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command, "LOAD_CHUNK_BYTES", 4)
    data = b"SQLite format 3\x00xyz"
    chunks = command.encode_load_chunks(data, b"i" * 16)
    decoded = [command.decode_load_chunk(c) for c in chunks]
    assert [(c.seq, c.count) for c in decoded if c] == [(i, 5) for i in range(5)]
    assert b"".join(c.data for c in decoded if c) == data
    assert command.decode_load_chunk(command.encode(CASES[0])) is None
    with pytest.raises(CommandError):
        command.decode_load_chunk(command.LOAD_PREFIX + b"short")
