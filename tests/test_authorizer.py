"""SQL that reaches outside the database is refused by SQLite's authorizer
(authorizer.py), however it is spelt; the node's own statements pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rqlite_py import db
from rqlite_py.command import Statement
from rqlite_py.http.app import create_app
from tests.app_client import AppClient
from tests.conftest import StoreFactory


def run(d: db.Database, sql: str) -> str:
    """The error of one statement run on the writer ("" if it succeeded)."""
    [result] = d_run(d, sql)
    return result.error


def d_run(d: db.Database, sql: str) -> list[db.Result]:
    return db.run(d.writer, [Statement(sql)], transaction=False, mode=db.Mode.EXECUTE)


@pytest.fixture
def database(tmp_path: Path) -> db.Database:
    d = db.Database(str(tmp_path / "db.sqlite"))
    d.writer.execute("CREATE TABLE t(x)")
    return d


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("ATTACH '{dir}/other.db' AS o", "ATTACH and VACUUM INTO"),
        ("attach   database '{dir}/other.db' as o", "ATTACH and VACUUM INTO"),
        ("VACUUM INTO '{dir}/copy.db'", "ATTACH and VACUUM INTO"),
        ("/* hidden */ VACUUM main INTO '{dir}/copy.db'", "ATTACH and VACUUM INTO"),
        ("SELECT load_extension('{dir}/evil.so')", "load_extension() is disabled"),
        ("PRAGMA writable_schema=ON", "PRAGMA writable_schema"),
        ("PRAGMA main . journal_mode = DELETE", "PRAGMA journal_mode"),
        ("pragma Synchronous(2)", "PRAGMA synchronous"),
        ("PRAGMA wal_checkpoint", "PRAGMA wal_checkpoint"),
        ("PRAGMA locking_mode=EXCLUSIVE", "PRAGMA locking_mode"),
        ("PRAGMA temp_store_directory='{dir}'", "PRAGMA temp_store_directory"),
    ],
)
def test_sql_that_reaches_outside_is_refused_with_its_reason(
    database: db.Database, tmp_path: Path, sql: str, reason: str
) -> None:
    error = run(database, sql.format(dir=tmp_path))
    assert error.startswith("not authorized: ") and reason in error, error
    assert not (tmp_path / "other.db").exists() and not (tmp_path / "copy.db").exists()
    assert run(database, "INSERT INTO t VALUES(1)") == ""  # the connection still works


def test_readers_refuse_it_too(database: db.Database, tmp_path: Path) -> None:
    [r] = database.query([Statement(f"ATTACH '{tmp_path}/o.db' AS o")], transaction=False)
    assert r.error.startswith("not authorized: ATTACH")
    assert not (tmp_path / "o.db").exists()


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA journal_mode",  # reading is fine
        "PRAGMA foreign_keys=ON",
        "PRAGMA cache_size=-4000",
        "VACUUM",  # attaches a temporary database of its own
        "ATTACH '' AS scratch",  # a private temporary database: no file
        "CREATE TEMP TABLE tt(x)",
        "CREATE TABLE u(x); CREATE INDEX ui ON u(x)",
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO t VALUES(NEW.x + 1); END",
    ],
)
def test_ordinary_sql_passes(database: db.Database, sql: str) -> None:
    assert all(not r.error for r in d_run(database, sql))


def test_the_flag_lets_attach_and_vacuum_into_through(tmp_path: Path) -> None:
    d = db.Database(str(tmp_path / "db.sqlite"), allow_external=True)
    assert run(d, f"ATTACH '{tmp_path}/other.db' AS o") == ""
    assert run(d, f"VACUUM INTO '{tmp_path}/copy.db'") == ""
    assert (tmp_path / "copy.db").exists()
    assert "PRAGMA journal_mode" in run(d, "PRAGMA journal_mode=DELETE")  # never allowed


def test_the_nodes_own_statements_are_not_refused(database: db.Database, tmp_path: Path) -> None:
    assert run(database, "INSERT INTO t VALUES(7)") == ""
    assert database.checkpoint(1000)
    database.backup(str(tmp_path / "b.db"), fmt="delete", vacuum=True, tables=())
    copy = db.Database(str(tmp_path / "b.db"))
    assert list(copy.writer.execute("SELECT x FROM t")) == [(7,)]


def test_over_http_the_refusal_is_the_statements_error(make_store: StoreFactory) -> None:
    client = AppClient(create_app(make_store()))
    r = client.post(
        "/db/execute",
        data=json.dumps(
            ["CREATE TABLE t(x)", "ATTACH '/tmp/rqpy-never.db' AS o", "INSERT INTO t VALUES(1)"]
        ),
    )
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert "error" not in results[0] and "error" not in results[2]
    assert results[1]["error"].startswith("not authorized: ATTACH and VACUUM INTO")
    assert not Path("/tmp/rqpy-never.db").exists()
    q = client.get("/db/query?q=" + "SELECT%20load_extension('x')").get_json()
    assert q["results"][0]["error"].startswith("not authorized: load_extension()")
