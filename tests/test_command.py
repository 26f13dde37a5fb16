"""The log-entry payload codec: round trips, and loud failure on garbage."""

from __future__ import annotations

import pytest

from rqlite_py import command
from rqlite_py.command import Command, CommandError, Kind, Statement
from rqlite_py.http import body

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
    # Runs of one SQL text, broken by another text, by named parameters
    # appearing or going, by RETURNING, and by BLOBs among plain values.
    Command(
        Kind.REQUEST,
        (
            *(Statement("INSERT INTO t VALUES(?, ?)", (i, f"v{i}")) for i in range(3)),
            Statement("INSERT INTO t VALUES(?, ?)", (b"\x01", None)),
            Statement("INSERT INTO t VALUES(?, ?)"),
            Statement("SELECT 1"),
            Statement("SELECT 1"),
            Statement("INSERT INTO t VALUES(?, :b)", (1,), (("b", b"\x02"),)),
            Statement("INSERT INTO t VALUES(?, :b)", (2,), (("b", 2),)),
            Statement("INSERT INTO t VALUES(?, :b)", (3,)),
            Statement("INSERT INTO t VALUES(?, :b) RETURNING *", (4,), returning=True),
            Statement("INSERT INTO t VALUES(?, :b) RETURNING *", (5,), (("b", 1),), True),
            Statement("INSERT INTO t VALUES(?, :b) RETURNING *", (6,)),
        ),
    ),
    Command(Kind.EXECUTE, ()),
]


@pytest.mark.parametrize("cmd", CASES)
def test_round_trip(cmd: Command) -> None:
    assert command.decode(command.encode(cmd)) == cmd


def test_a_run_writes_its_sql_once() -> None:
    sql = "INSERT INTO kv(k, v) VALUES(?, ?)"
    cmd = Command(Kind.EXECUTE, tuple(Statement(sql, (f"k{i}", "v")) for i in range(1000)))
    data = command.encode(cmd)
    assert data.count(sql.encode()) == 1
    assert command.decode(data) == cmd


def test_entries_written_by_earlier_versions_still_decode() -> None:
    """The log outlives the code: entries in the version 1 layout (one item
    per statement, parameter lists always present with named ones, BLOBs
    as objects) decode."""
    old = (
        b'{"v":1,"k":"execute","s":[["INSERT INTO b VALUES(?, ?)",["x",{"b":"AP8="}]],'
        b'["SELECT 1"],["INSERT INTO t VALUES(:n)",[],{"n":{"b":"AQ=="}}],'
        b'["INSERT INTO t VALUES(1) RETURNING *",[],{},1]],"tx":1,"sb":5}'
    )
    assert command.decode(old) == Command(
        Kind.EXECUTE,
        (
            Statement("INSERT INTO b VALUES(?, ?)", ("x", b"\x00\xff")),
            Statement("SELECT 1"),
            Statement("INSERT INTO t VALUES(:n)", named=(("n", b"\x01"),)),
            Statement("INSERT INTO t VALUES(1) RETURNING *", returning=True),
        ),
        transaction=True,
        step_budget=5,
    )


def test_parsed_bodies_survive_the_log_unchanged() -> None:
    """The leader applies the command it proposed, without decoding it
    (driver.propose's `decoded`); followers decode the entry. Both must
    run the same statements: what a request body parses to round-trips,
    a name given twice included."""
    raw = (
        b'["CREATE TABLE t(a, b)", ["INSERT INTO t VALUES(?, ?)", "x\'01\'", [1, 2]],'
        b' ["INSERT INTO t VALUES(:a, :b)", {"a": 1, "b": null}, {"a": 2.5}],'
        b' ["INSERT INTO t VALUES(?, :b)", true, {"b": "s"}], ["SELECT ?", 9007199254740993]]'
    )
    stmts = tuple(body.parse_json(raw))
    assert stmts[2].named == (("a", 2.5), ("b", None))
    cmd = Command(Kind.EXECUTE, stmts)
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
        b'{"v":3,"k":"execute","r":[]}',
        b'{"v":2,"k":"execute","r":[[1,[[]]]]}',
        b'{"v":2,"k":"execute","r":[["SELECT ?",[[{"x":1}]]]]}',
        b'{"v":2,"k":"execute","r":[["SELECT ?","ab"]]}',
        b'{"v":2,"k":"execute","r":[["SELECT ?",[5]]]}',
        b'{"v":2,"k":"execute","r":[["SELECT :a",[[],[]],[{"a":1}]]]}',
        b'{"v":2,"k":"execute","r":[["SELECT :a",[[]],{"a":1}]]}',
        b'{"v":2,"k":"execute","r":[["SELECT ?",[[[1]]]]]}',
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


def test_statements_kept_as_runs_behave_as_a_sequence() -> None:
    plain = [Statement("INSERT INTO t VALUES(?)", (i,)) for i in range(3)]
    named = Statement("INSERT INTO t VALUES(:a)", named=(("a", 1),))
    ret = Statement("INSERT INTO t VALUES(1) RETURNING *", returning=True)
    listed = [*plain, named, named, ret, Statement("SELECT 1"), *plain]
    stmts = command.Statements.of(listed)
    assert [len(r.rows) for r in stmts.runs] == [3, 2, 1, 1, 3]
    assert stmts == listed and stmts == tuple(listed) and tuple(listed) == stmts
    assert stmts != listed[:-1] and list(stmts) == listed and len(stmts) == 10
    assert stmts[0] == plain[0] and stmts[4] == named and stmts[-1] == plain[2]
    assert stmts[2:5] == listed[2:5] and stmts[::-3] == listed[::-3]
    with pytest.raises(IndexError):
        stmts[10]
    # Where each statement's run of one plain write ends (db.run's batches).
    assert [stmts.run_end(i) for i in range(10)] == [3, 3, 3, 4, 5, 6, 7, 10, 10, 10]
    assert stmts.rows(8, 10) == [(1,), (2,)]
    assert command.Statements.of(stmts) is stmts


def test_a_bulk_body_parses_into_one_run() -> None:
    raw = (
        b'[["INSERT INTO t VALUES(?, ?)", 1, "a"], ["INSERT INTO t VALUES(?, ?)", 2, "b"],'
        b' ["INSERT INTO t VALUES(?, ?)", 3, "x\'01\'"], ["INSERT INTO t VALUES(?, ?)", 4, null],'
        b' "SELECT 1", "SELECT 1", ["INSERT INTO t VALUES(?, ?)", 5, {"b": 1}]]'
    )
    stmts = body.parse_json(raw)
    assert [len(r.rows) for r in stmts.runs] == [4, 2, 1]
    assert stmts[2] == Statement("INSERT INTO t VALUES(?, ?)", (3, b"\x01"))
    assert stmts[6] == Statement("INSERT INTO t VALUES(?, ?)", (5,), (("b", 1),))
    assert [stmts.run_end(i) for i in range(7)] == [4, 4, 4, 4, 6, 6, 7]
    cmd = Command(Kind.EXECUTE, stmts)
    assert command.decode(command.encode(cmd)) == cmd
