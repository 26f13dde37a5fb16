"""Table tests for rqlite_py.sql: the rewriting of non-deterministic calls at
ingress (API.md §d), RETURNING detection (§a.4), disallowed PRAGMAs (§f) and
statement splitting. The stdlib sqlite3 module checks that rewritten text is
still SQL that SQLite reads the way it was meant."""

from __future__ import annotations

import random
import re
import sqlite3
import time
from contextlib import closing

import pytest

from rqlite_py.sql import (
    has_returning,
    is_disallowed_pragma,
    is_empty,
    julian_day,
    rewrite,
    split_statements,
)

NOW_JULIAN = 2461077.9459874
NOW = "2461077.945987"  # NOW_JULIAN with Go's %f: 6 decimals
INT = r"(-?\d{1,19})"
BLOB = r"x'([0-9A-F]*)'"


def rw(sql: str, **opts: bool) -> str:
    return rewrite(sql, rng=random.Random(7), now_julian=NOW_JULIAN, **opts)


def execute(sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(":memory:")) as conn:
        return conn.execute(sql).fetchall()


# --- rewrite: left exactly as sent ------------------------------------------

UNCHANGED = [
    # nothing to rewrite
    "",
    "INSERT INTO foo(name, age) VALUES(?, ?)",
    "SELECT RANDOM ()",  # rqlite's pre-filter wants `random(`
    "SELECT date ('now')",
    # RANDOM() chosen as an order, not a value
    "SELECT title FROM albums ORDER BY RANDOM()",
    "SELECT title FROM albums ORDER BY x, random() DESC LIMIT 5",
    "SELECT title FROM albums ORDER BY randomblob(4)",
    "SELECT group_concat(x ORDER BY random()) FROM t",
    "SELECT row_number() OVER (ORDER BY random()) FROM t",
    # strings, quoted identifiers and comments are not code
    "INSERT INTO t VALUES ('random()', 'datetime(''now'')')",
    'SELECT "random()", "a""date(\'now\')"',
    "INSERT INTO t VALUES (1) -- random(), date('now')",
    "INSERT INTO t VALUES (1) /* randomblob(4) */",
    "SELECT 'C:\\', 'random()'",  # SQLite has no backslash escapes
    # a name before `(` that is not a call
    "INSERT INTO random(x) VALUES (1)",
    "INSERT INTO main.random(x) VALUES (1)",
    "WITH date(d) AS (SELECT 1) SELECT d FROM date",
    "WITH random(x) AS (SELECT 1) SELECT x FROM random",
    "WITH randomblob(x) AS MATERIALIZED (SELECT 1) SELECT x FROM randomblob",
    "SELECT date, time FROM t WHERE day = date('2020-01-01')",
    # no 'now' where rqlite looks for it
    "INSERT INTO t VALUES (time())",
    "SELECT date(), datetime(), julianday(), unixepoch()",
    "SELECT strftime('now')",
    "SELECT timediff('now')",
    "SELECT datetime('2020-01-01', 'now')",
    "SELECT datetime('now ')",
    "SELECT date([now])",
    "INSERT INTO t VALUES (CURRENT_TIMESTAMP, CURRENT_DATE, CURRENT_TIME, date('2020-01-01'))",
    # randomblob(N) needs a plain integer literal
    "SELECT randomblob(x)",
    "SELECT randomblob(-1)",
    "SELECT randomblob(1.5)",
    "SELECT randomblob(0x10)",
    "SELECT randomblob(4, 5)",
    "SELECT randomblob(1000000001)",  # too big for SQLite: it fails the same everywhere
    # stored expressions
    "CREATE TABLE t (ts TEXT DEFAULT (datetime('now')), r INT DEFAULT (random()))",
    "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET ts = datetime('now'); END",
    "CREATE VIEW v AS SELECT random(), date('now')",
    "CREATE INDEX i ON t(x) WHERE x > julianday('now')",
    "ALTER TABLE t ADD COLUMN ts DEFAULT (date('now'))",
    # unreadable: left to SQLite to reject, as rqlite does when it cannot parse
    "SELECT 'unterminated, random()",
    "SELECT date('now'",
]


@pytest.mark.parametrize("sql", UNCHANGED)
def test_rewrite_leaves_statement_unchanged(sql: str) -> None:
    assert rw(sql) == sql


# --- rewrite: 'now' ----------------------------------------------------------

NOW_REWRITES = [
    ("INSERT INTO t VALUES (datetime('now'))", f"INSERT INTO t VALUES (datetime({NOW}))"),
    ("SELECT date('now','start of month')", f"SELECT date({NOW},'start of month')"),
    ("SELECT time('now')", f"SELECT time({NOW})"),
    ('SELECT time("now")', f"SELECT time({NOW})"),
    ("SELECT time(now)", f"SELECT time({NOW})"),
    ("SELECT julianday('NOW')", f"SELECT julianday({NOW})"),
    ("SELECT unixepoch('now')", f"SELECT unixepoch({NOW})"),
    ("SELECT unixepoch('now', 'subsec')", f"SELECT unixepoch({NOW}, 'subsec')"),
    ("SELECT strftime('%s','now')", f"SELECT strftime('%s',{NOW})"),
    ("SELECT strftime('%F', 'now', '+1 day')", f"SELECT strftime('%F', {NOW}, '+1 day')"),
    ("SELECT timediff('now','now')", f"SELECT timediff({NOW},{NOW})"),
    ("SELECT timediff('now', '2020-01-01')", f"SELECT timediff({NOW}, '2020-01-01')"),
    ("SELECT timediff('2020-01-01', 'now')", f"SELECT timediff('2020-01-01', {NOW})"),
    ("SELECT DateTime( 'Now' , 'localtime' )", f"SELECT DateTime( {NOW} , 'localtime' )"),
    ("SELECT date ('now'), date('now')", f"SELECT date ({NOW}), date({NOW})"),
    ("SELECT date(/* c */ 'now')", f"SELECT date(/* c */ {NOW})"),
    ("SELECT strftime(date('now'), 'now')", f"SELECT strftime(date({NOW}), {NOW})"),
    ("SELECT strftime(printf('%s', 'x'), 'now')", f"SELECT strftime(printf('%s', 'x'), {NOW})"),
    (
        "INSERT INTO \"foo\" (\"date\") VALUES (date('now')) -- date('now')",
        f'INSERT INTO "foo" ("date") VALUES (date({NOW})) -- date(\'now\')',
    ),
    (
        "UPDATE t SET ts = datetime('now') WHERE id = 1 RETURNING ts",
        f"UPDATE t SET ts = datetime({NOW}) WHERE id = 1 RETURNING ts",
    ),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET ts = datetime('now')",
        f"INSERT INTO t VALUES (1) ON CONFLICT DO UPDATE SET ts = datetime({NOW})",
    ),
    (
        "SELECT x FROM t ORDER BY julianday('now') - x",
        f"SELECT x FROM t ORDER BY julianday({NOW}) - x",
    ),
    (
        "CREATE TABLE t AS SELECT date('now') AS d",
        f"CREATE TABLE t AS SELECT date({NOW}) AS d",
    ),
    (
        "SELECT datetime('now'); SELECT date('now');\n",
        f"SELECT datetime({NOW}); SELECT date({NOW});\n",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), NOW_REWRITES)
def test_rewrite_replaces_now_by_julian_day(sql: str, expected: str) -> None:
    assert rw(sql) == expected


def test_rewrite_uses_one_current_timestamp_per_call() -> None:
    before = julian_day(time.time())
    out = rewrite("SELECT datetime('now'), julianday('now')")
    after = julian_day(time.time())
    match = re.fullmatch(r"SELECT datetime\(([\d.]+)\), julianday\(([\d.]+)\)", out)
    assert match, out
    assert match[1] == match[2]
    assert before - 1e-6 <= float(match[1]) <= after + 1e-6


def test_julian_day_of_unix_time() -> None:
    assert julian_day(0) == 2440587.5
    assert julian_day(86400 * 1.5) == 2440589.0


def test_rewritten_now_is_read_by_sqlite_as_that_instant() -> None:
    out = rewrite("SELECT datetime('now')", now_julian=julian_day(1_700_000_000))
    assert execute(out) == [("2023-11-14 22:13:20",)]


# --- rewrite: RANDOM() and RANDOMBLOB(N) -------------------------------------

RANDOM_REWRITES = [
    (
        "INSERT INTO \"names\" VALUES (RANDOM(), 'bob', '123-45-678')",
        rf"INSERT INTO \"names\" VALUES \({INT}, 'bob', '123-45-678'\)",
    ),
    ("SELECT random()", rf"SELECT {INT}"),
    ("select Random( )", rf"select {INT}"),
    ("SELECT abs(random()) % 10", rf"SELECT abs\({INT}\) % 10"),
    ("SELECT random(), 'random()'", rf"SELECT {INT}, 'random\(\)'"),
    ("SELECT random() FROM t ORDER BY x", rf"SELECT {INT} FROM t ORDER BY x"),
    (
        "SELECT group_concat(x ORDER BY y), random() FROM t",
        rf"SELECT group_concat\(x ORDER BY y\), {INT} FROM t",
    ),
    ("SELECT random(date('now'))", rf"SELECT {INT}"),  # the call goes whole
    (
        "SELECT x FROM t ORDER BY random() LIMIT abs(random()) % 5",
        rf"SELECT x FROM t ORDER BY random\(\) LIMIT abs\({INT}\) % 5",
    ),
    (
        "SELECT (SELECT y FROM u ORDER BY random() LIMIT 1), random() FROM t",
        rf"SELECT \(SELECT y FROM u ORDER BY random\(\) LIMIT 1\), {INT} FROM t",
    ),
    ("INSERT INTO random(x) VALUES (random())", rf"INSERT INTO random\(x\) VALUES \({INT}\)"),
    (
        "INSERT INTO t SELECT random() FROM u ORDER BY random()",
        rf"INSERT INTO t SELECT {INT} FROM u ORDER BY random\(\)",
    ),
    (
        "CREATE TABLE t AS SELECT random() AS r",
        rf"CREATE TABLE t AS SELECT {INT} AS r",
    ),
    ("SELECT random();  \n", rf"SELECT {INT};  \n"),
]


@pytest.mark.parametrize(("sql", "pattern"), RANDOM_REWRITES)
def test_rewrite_replaces_random_by_int64_literal(sql: str, pattern: str) -> None:
    out = rw(sql)
    match = re.fullmatch(pattern, out)
    assert match, out
    assert all(-(2**63) <= int(value) < 2**63 for value in match.groups())


RANDOMBLOB_SIZES = [
    ("SELECT randomblob(16)", 16),
    ("SELECT randomblob(0)", 1),
    ("SELECT randomblob(1)", 1),
    ("SELECT RANDOMBLOB( 4 )", 4),
    ("SELECT randomblob(007)", 7),
]


@pytest.mark.parametrize(("sql", "size"), RANDOMBLOB_SIZES)
def test_rewrite_replaces_randomblob_by_blob_literal(sql: str, size: int) -> None:
    out = rw(sql)
    match = re.fullmatch(f"SELECT {BLOB}", out)
    assert match, out
    assert len(match[1]) == 2 * size


def test_rewritten_randomblob_is_a_blob_of_that_size() -> None:
    assert execute(rw("SELECT typeof(randomblob(16)), length(randomblob(16))")) == [("blob", 16)]


def test_rewrite_draws_a_value_per_call() -> None:
    out = rw("SELECT random(), random(), randomblob(8), randomblob(8)")
    match = re.fullmatch(rf"SELECT {INT}, {INT}, {BLOB}, {BLOB}", out)
    assert match, out
    assert match[1] != match[2]
    assert match[3] != match[4]


@pytest.mark.parametrize("seed", range(32))
def test_negative_literal_after_minus_is_not_a_comment(seed: int) -> None:
    """5-random() must not become 5--42: -- would start a comment."""
    out = rewrite("SELECT 5-random() AS v", rng=random.Random(seed))
    assert "--" not in out
    (value,) = execute(out)[0]
    assert isinstance(value, int | float)


def test_literal_before_a_word_is_kept_apart() -> None:
    out = rw("SELECT random()AS r")
    assert re.fullmatch(rf"SELECT {INT} AS r", out), out
    assert len(execute(out)) == 1


# --- rewrite: opt-outs and determinism ---------------------------------------

MIXED = "INSERT INTO t VALUES (random(), datetime('now'))"


def test_norwrandom_keeps_random_but_rewrites_time() -> None:
    assert rw(MIXED, rewrite_random=False) == f"INSERT INTO t VALUES (random(), datetime({NOW}))"


def test_norwtime_keeps_time_but_rewrites_random() -> None:
    out = rw(MIXED, rewrite_time=False)
    assert re.fullmatch(rf"INSERT INTO t VALUES \({INT}, datetime\('now'\)\)", out), out


@pytest.mark.parametrize("sql", [MIXED, "SELECT randomblob(4)", "SELECT date('now')"])
def test_both_opt_outs_leave_statement_unchanged(sql: str) -> None:
    assert rw(sql, rewrite_random=False, rewrite_time=False) == sql


def test_seeded_rng_gives_the_same_rewrite() -> None:
    sql = "INSERT INTO t VALUES (random(), randomblob(8))"
    first = rewrite(sql, rng=random.Random(42))
    assert first != sql
    assert rewrite(sql, rng=random.Random(42)) == first
    assert rewrite(sql, rng=random.Random(43)) != first


def test_default_rng_differs_between_calls() -> None:
    assert rewrite("SELECT random()") != rewrite("SELECT random()")


# --- has_returning -----------------------------------------------------------

RETURNING = [
    ("INSERT INTO \"names\" VALUES (1, 'bob', '123-45-678') RETURNING *", True),
    ("insert into t values (1) returning id", True),
    ("UPDATE t SET a = 1\nRETURNING\ta, b", True),
    ("DELETE FROM t WHERE id = 1 RETURNING id", True),
    ("INSERT INTO t VALUES (1) RETURNING(id)", True),
    ("INSERT INTO t VALUES (random()) RETURNING *", True),
    ("INSERT INTO \"names\" VALUES (1, 'bob', 'RETURNING')", False),
    ("INSERT INTO \"names\" VALUES (RANDOM(), 'bob', '123-45-678')", False),
    ("SELECT title FROM albums ORDER BY RANDOM()", False),
    ("INSERT INTO foo(name, age) VALUES(?, ?)", False),
    ("DELETE FROM t -- RETURNING *\n", False),
    ('SELECT "returning", [returning] FROM t', False),
    ("", False),
]


@pytest.mark.parametrize(("sql", "expected"), RETURNING)
def test_has_returning(sql: str, expected: bool) -> None:
    assert has_returning(sql) is expected


# --- is_disallowed_pragma ----------------------------------------------------

DISALLOWED = [
    "PRAGMA journal_mode=WAL",
    "PRAGMA journal_mode = DELETE",
    "  \n\tpragma JOURNAL_MODE=off",
    "PRAGMA main.journal_mode=WAL",
    "PRAGMA main . journal_mode = WAL",
    'PRAGMA "main"."journal_mode" = WAL',
    "PRAGMA journal_mode(DELETE)",
    "PRAGMA wal_autocheckpoint=0",
    "PRAGMA main.wal_autocheckpoint = 1000",
    "PRAGMA wal_checkpoint",
    "PRAGMA wal_checkpoint(TRUNCATE)",
    "PRAGMA main.wal_checkpoint(PASSIVE)",
    "PRAGMA synchronous=OFF",
    "PRAGMA synchronous = 0",
    "PRAGMA /* sneaky */ synchronous\n= FULL",
    "PRAGMA query_only=1",
    "PRAGMA query_only = true",
    "-- note\nPRAGMA synchronous=OFF",
    "SELECT 1; PRAGMA synchronous=OFF",
    "INSERT INTO t VALUES (';'); pragma query_only = 1;",
    "PRAGMA max_page_count=10",
    "PRAGMA main.max_page_count(10)",
]

ALLOWED = [
    "PRAGMA journal_mode",
    "PRAGMA main.journal_mode",
    "PRAGMA synchronous",
    "PRAGMA wal_autocheckpoint",
    "PRAGMA query_only",
    "PRAGMA max_page_count",
    "PRAGMA foreign_keys=ON",
    "PRAGMA table_info(t)",
    "PRAGMA busy_timeout = 5000",
    "SELECT 'PRAGMA journal_mode=WAL'",
    "-- PRAGMA synchronous=OFF\nSELECT 1",
    "SELECT 1 /* PRAGMA query_only=1 */",
    "SELECT journal_mode FROM t WHERE synchronous = 1",
    "",
]


@pytest.mark.parametrize("sql", DISALLOWED)
def test_disallowed_pragma_is_refused(sql: str) -> None:
    assert is_disallowed_pragma(sql)


@pytest.mark.parametrize("sql", ALLOWED)
def test_other_statements_are_allowed(sql: str) -> None:
    assert not is_disallowed_pragma(sql)


# --- split_statements and is_empty -------------------------------------------

SPLITS = [
    ("SELECT 1", ["SELECT 1"]),
    ("SELECT 1; SELECT 2", ["SELECT 1;", "SELECT 2"]),
    ("  SELECT 1;\n\nSELECT 2;\n", ["SELECT 1;", "SELECT 2;"]),
    ("INSERT INTO t VALUES ('a;b'); SELECT ';'", ["INSERT INTO t VALUES ('a;b');", "SELECT ';'"]),
    ("SELECT 1; ; ;; /* c */ ;\n-- only a comment\n", ["SELECT 1;"]),
    ("-- lead\nSELECT 1;", ["-- lead\nSELECT 1;"]),
    (
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET a=1; DELETE FROM v; END; SELECT 1",
        [
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE u SET a=1; DELETE FROM v; END;",
            "SELECT 1",
        ],
    ),
    ("BEGIN; INSERT INTO t VALUES (1); END;", ["BEGIN;", "INSERT INTO t VALUES (1);", "END;"]),
    ("", []),
    (" ;\n-- c", []),
]


@pytest.mark.parametrize(("sql", "expected"), SPLITS)
def test_split_statements(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


EMPTY = [
    ("", True),
    ("   \n\t", True),
    (";", True),
    (" ;; ; ", True),
    ("-- just a comment", True),
    ("/* c */ ; -- d\n", True),
    ("/* never closed", True),
    ("SELECT 1", False),
    ("-- c\nSELECT 1", False),
    ("'--'", False),
    ("; x", False),
]


@pytest.mark.parametrize(("sql", "expected"), EMPTY)
def test_is_empty(sql: str, expected: bool) -> None:
    assert is_empty(sql) is expected
