"""SQL execution and result values, against a real SQLite file via apsw."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rqlite_py import db
from rqlite_py.command import Statement, Statements
from rqlite_py.db import Database, Mode
from rqlite_py.results import ExecuteResult, QueryResult


@pytest.fixture
def database(tmp_path: Path) -> Database:
    d = Database(str(tmp_path / "db.sqlite"))
    yield d
    d.close()


def execute(d: Database, *sqls: str | Statement, tx: bool = False) -> list:
    stmts = [s if isinstance(s, Statement) else Statement(s) for s in sqls]
    return db.run(d.writer, stmts, transaction=tx, mode=Mode.EXECUTE)


def query(d: Database, sql: str, *params: object) -> QueryResult:
    [r] = d.query([Statement(sql, tuple(params))], transaction=False)
    assert isinstance(r, QueryResult)
    return r


def test_execute_results(database: Database) -> None:
    r = execute(
        database,
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)",
        Statement("INSERT INTO foo(name) VALUES(?)", ("fiona",)),
        "DROP TABLE foo",
    )
    assert [(x.last_insert_id, x.rows_affected, x.error) for x in r] == [
        (0, 0, ""),
        (1, 1, ""),
        # rqlite reports the connection's last values for DDL (API.md §0.7).
        (1, 1, ""),
    ]


def test_error_does_not_stop_next_statement_without_transaction(database: Database) -> None:
    r = execute(
        database, "CREATE TABLE t (x)", "INSERT INTO nope VALUES(1)", "INSERT INTO t VALUES(1)"
    )
    assert r[1].error == "no such table: nope"
    assert r[2].error == "" and r[2].rows_affected == 1


def test_transaction_rolls_back_and_stops_at_first_error(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    r = execute(
        database,
        "INSERT INTO t VALUES(1)",
        "INSERT INTO nope VALUES(1)",
        "INSERT INTO t VALUES(2)",
        tx=True,
    )
    assert len(r) == 2 and r[1].error == "no such table: nope"
    assert query(database, "SELECT count(*) FROM t").values == [[0]]


def test_query_connection_refuses_writes(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    [r] = database.query([Statement("INSERT INTO t VALUES(1)")], transaction=False)
    assert r.error == "attempt to change database via query operation"
    [r] = database.query([Statement("CREATE TEMP TABLE z (a)")], transaction=False)
    assert r.error == "attempt to change database via query operation"
    assert query(database, "SELECT count(*) FROM t").values == [[0]]


def test_types_declared_and_inferred(database: Database) -> None:
    execute(database, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)")
    execute(database, Statement("INSERT INTO t VALUES(1, 'a', 1.5, ?)", (b"\xde\xad\xbe\xef",)))
    r = query(database, "SELECT *, 1+1, 'x', 2.5, count(*) FROM t")
    assert r.columns == ["id", "name", "score", "data", "1+1", "'x'", "2.5", "count(*)"]
    assert r.types == ["integer", "text", "real", "blob", "integer", "text", "real", "integer"]
    assert r.values == [[1, "a", 1.5, b"\xde\xad\xbe\xef", 2, "x", 2.5, 1]]


def test_empty_result_keeps_columns_and_types(database: Database) -> None:
    execute(database, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    r = query(database, "SELECT * FROM t")
    assert (r.columns, r.types, r.values) == (["id", "name"], ["integer", "text"], [])


def test_sqlite_master_types(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    assert query(database, "SELECT * FROM sqlite_master").types == [
        "text",
        "text",
        "text",
        "int",
        "text",
    ]


@pytest.mark.parametrize(
    ("decl", "stored", "expected"),
    [
        ("boolean", 1, True),
        ("boolean", 0, False),
        ("BOOLEAN", -1, False),
        ("datetime", 1076742900, "2004-02-14T07:15:00Z"),
        ("timestamp", 1076742900123, "2004-02-14T07:15:00.123Z"),
        ("date", "2004-02-14", "2004-02-14T00:00:00Z"),
        ("datetime", "2004-02-14 07:15:00", "2004-02-14T07:15:00Z"),
        ("datetime", "2004-02-14T07:15:00.5", "2004-02-14T07:15:00.5Z"),
        ("datetime", "2004-02-14 07:15:00+02:00", "2004-02-14T07:15:00+02:00"),
        ("datetime", "2004-02-14 07:15", "2004-02-14T07:15:00Z"),
        ("datetime", "not a date", "0001-01-01T00:00:00Z"),
        ("datetime", 1.5, 1.5),
        ("text", b"abc", "abc"),
        ("varchar(10)", b"abc", "abc"),
        ("blob", b"abc", b"abc"),
    ],
)
def test_go_driver_conversions(
    database: Database, decl: str, stored: object, expected: object
) -> None:
    execute(database, f"CREATE TABLE t (v {decl})", Statement("INSERT INTO t VALUES(?)", (stored,)))
    assert query(database, "SELECT v FROM t").values == [[expected]]


def test_returning_answers_in_query_shape(database: Database) -> None:
    execute(database, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    [r] = execute(
        database, Statement("INSERT INTO t(name) VALUES('a') RETURNING id, name", returning=True)
    )
    assert isinstance(r, QueryResult) and r.values == [[1, "a"]]


def test_named_and_mixed_parameters(database: Database) -> None:
    execute(database, "CREATE TABLE t (a, b)")
    execute(database, Statement("INSERT INTO t VALUES(:a, :b)", named=(("a", 1), ("b", "x"))))
    execute(database, Statement("INSERT INTO t VALUES(?, :b)", (2,), (("b", "y"),)))
    assert query(database, "SELECT a, b FROM t ORDER BY a").values == [[1, "x"], [2, "y"]]


def test_bad_parameter_count_is_a_result(database: Database) -> None:
    execute(database, "CREATE TABLE t (a)")
    [r] = execute(database, Statement("INSERT INTO t VALUES(?)", (1, 2)))
    assert isinstance(r, ExecuteResult) and r.error


def test_step_budget_interrupts_a_runaway_write(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    forever = (
        "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
        "SELECT x FROM c"
    )
    [r] = db.run(
        database.writer,
        [Statement(forever)],
        transaction=False,
        mode=Mode.EXECUTE,
        limit=db.step_budget(100_000),
    )
    assert r.error == "execute timeout"
    assert query(database, "SELECT count(*) FROM t").values == [[0]]


def test_query_deadline(database: Database) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    [r] = database.query([Statement(forever)], transaction=False, timeout_s=0.05)
    assert r.error == "query timeout"


def test_qualify_columns(database: Database) -> None:
    execute(database, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    [r] = database.query(
        [Statement("SELECT id, name, 1 FROM t")], transaction=False, qualify_columns=True
    )
    assert r.columns == ["t.id", "t.name", "1"]


def test_request_mode_answers_each_statement_as_what_it_is(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    r = db.run(
        database.writer,
        [Statement("INSERT INTO t VALUES(1)"), Statement("SELECT x FROM t")],
        transaction=False,
        mode=Mode.REQUEST,
    )
    assert isinstance(r[0], ExecuteResult) and isinstance(r[1], QueryResult)
    assert r[1].values == [[1]]


def test_has_write(database: Database) -> None:
    execute(database, "CREATE TABLE t (x)")
    assert not database.has_write([Statement("SELECT * FROM t")])
    assert database.has_write([Statement("SELECT 1"), Statement("DELETE FROM t")])


def test_wal_bytes_count_what_came_after_the_last_checkpoint(database: Database) -> None:
    """The WAL-size snapshot trigger reads wal_bytes: once the WAL has been
    checkpointed, the next write starts it again from nothing. The file is
    left at its largest size, to be written over: a truncated WAL made the
    writes after each snapshot allocate blocks again, stalling the Raft
    log's fsyncs."""
    execute(database, "CREATE TABLE t (b BLOB)")
    big = Statement("INSERT INTO t VALUES(zeroblob(1000000))")
    execute(database, *[big] * 4)
    assert database.wal_bytes() > 4_000_000
    assert abs(database.wal_bytes() - os.path.getsize(database.path + "-wal")) < 64 << 10
    assert database.checkpoint(100)
    assert database.wal_bytes() == 0  # before any commit restarts it
    execute(database, "INSERT INTO t VALUES(1)")
    assert 0 < database.wal_bytes() < 64 << 10
    assert os.path.getsize(database.path + "-wal") > 4_000_000


def test_wal_bytes_of_a_reopened_database_start_from_its_wal_file(tmp_path: Path) -> None:
    """Before its first commit a reopened database knows its WAL only by the
    file: taken as whole, it may ask for one snapshot early, never miss one."""
    path = str(tmp_path / "db.sqlite")
    first = Database(path)
    execute(first, "CREATE TABLE t (b BLOB)", "INSERT INTO t VALUES(zeroblob(100000))")
    second = Database(path)
    assert second.wal_bytes() >= first.wal_bytes() > 100_000
    first.close()
    second.close()


def test_a_batch_stops_before_the_row_after_a_deferred_fk_violation(tmp_path: Path) -> None:
    """With fk_check, a run stops once a row leaves a deferred foreign key
    violation: that row has its result, the next row is not run, and is
    left to the caller (run then retries with per-statement savepoints)."""
    d = Database(str(tmp_path / "fk.sqlite"), foreign_keys=True)
    w = d.writer
    w.execute(
        "CREATE TABLE p (id INTEGER PRIMARY KEY);"
        "CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
    )
    stmts = Statements.of([Statement("INSERT INTO c VALUES(?)", (i,)) for i in (1, 2, 3)])
    w.execute("BEGIN")
    rows = db._run_batch(w, stmts, 0, 3, "timeout", wrapped=True, fk_check=True, counted=True)
    assert [(r.last_insert_id, r.rows_affected) for r in rows] == [(1, 1)]
    assert w.execute("SELECT count(*) FROM c").fetchone()[0] == 1
    w.execute("ROLLBACK")
    d.close()
