"""Existing rqlite clients from PyPI, unchanged, against a live node:
pyrqlite's DB-API and the SQLAlchemy rqlite dialect."""

from __future__ import annotations

import datetime

import pyrqlite.dbapi2 as dbapi2
import pytest
import sqlalchemy as sa

from tests.system.node import Node


def test_pyrqlite_dbapi(node: Node) -> None:
    conn = dbapi2.connect(host="127.0.0.1", port=node.http_port)
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB, "
        "flag BOOLEAN, ts TIMESTAMP, n INTEGER)"
    )
    cur.execute(
        "INSERT INTO foo(name, score, data, flag, ts, n) VALUES(?, ?, ?, ?, ?, ?)",
        ("fiona é🙂 'q'", 1.5, b"\x00\x01\xff", True, "2020-01-02 03:04:05", -(2**63)),
    )
    assert cur.lastrowid == 1
    cur.execute("INSERT INTO foo(name) VALUES(?)", (None,))
    cur.execute("UPDATE foo SET score = score + 1 WHERE id >= ?", (1,))
    assert cur.rowcount == 2
    cur.execute("SELECT * FROM foo ORDER BY id")
    assert [d[0] for d in cur.description] == ["id", "name", "score", "data", "flag", "ts", "n"]
    assert cur.fetchall() == [
        (
            1,
            "fiona é🙂 'q'",
            2.5,
            b"\x00\x01\xff",
            True,
            datetime.datetime(2020, 1, 2, 3, 4, 5),
            -(2**63),
        ),
        (2, None, None, None, None, None, None),
    ]
    cur.executemany("INSERT INTO foo(name) VALUES(?)", [("a",), ("b",)])
    cur.execute("SELECT count(*) FROM foo")
    assert cur.fetchone() == (4,)
    with pytest.raises(dbapi2.Error, match="no such table: nope"):
        cur.execute("SELECT * FROM nope")
    with pytest.raises(dbapi2.Error, match="UNIQUE constraint failed"):
        cur.execute("INSERT INTO foo(id, name) VALUES(1, 'dup')")
    conn.close()


def test_sqlalchemy_dialect(node: Node) -> None:
    engine = sa.create_engine(f"rqlite+pyrqlite://127.0.0.1:{node.http_port}/")
    md = sa.MetaData()
    users = sa.Table(
        "users",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("created", sa.DateTime),
        sa.Column("ok", sa.Boolean),
        sa.Column("blob", sa.LargeBinary),
    )
    md.create_all(engine)
    when = datetime.datetime(2020, 1, 2, 3, 4, 5)
    with engine.begin() as c:
        c.execute(
            users.insert(),
            [
                {"name": "x", "created": when, "ok": True, "blob": b"\xde\xad"},
                {"name": "ünï", "created": None, "ok": False, "blob": None},
            ],
        )
    with engine.connect() as c:
        rows = c.execute(sa.select(users).order_by(users.c.id)).fetchall()
        assert [tuple(r) for r in rows] == [
            (1, "x", when, True, b"\xde\xad"),
            (2, "ünï", None, False, None),
        ]
        got = c.execute(sa.text("SELECT name FROM users WHERE id = :i"), {"i": 2}).scalar()
        assert got == "ünï"
    assert sa.inspect(engine).get_table_names() == ["users"]
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as c:
        c.execute(users.insert(), {"id": 1, "name": "dup"})
