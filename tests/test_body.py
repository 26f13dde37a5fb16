"""Request bodies into statements: the fast path for plain bodies gives what
the item-by-item parse gives, and takes the bodies it should."""

from __future__ import annotations

import json

import pytest

from rqlite_py.command import Run, Statement
from rqlite_py.http import body
from rqlite_py.http.body import BodyError, parse_json

BODIES = [
    [["INSERT INTO t VALUES(?, ?)", 1, "a"], ["INSERT INTO t VALUES(?, ?)", 2.5, None]],
    [["INSERT INTO t VALUES(?)", True], ["INSERT INTO u VALUES(?)", False], ["SELECT 1"]],
    [["A", 1], ["B", 2], ["A", 3], ["A", 4]],  # a text that comes back starts a new run
    [["CREATE TABLE t(v)"], ["INSERT INTO t VALUES(?)", "x"]],
    [["INSERT INTO t VALUES(?)", "x'00'"], ["INSERT INTO t VALUES(?)", "X'0a0B'"]],  # BLOBs
    [["INSERT INTO t VALUES(?)", "x'zz'"]],  # not hex: stays text
    [["INSERT INTO t VALUES(?)", "\u0078'00'"]],  # an escaped x: still a BLOB
    [["INSERT INTO t VALUES(?)", "caf\u00e9 'quoted'"]],
    [["INSERT INTO t VALUES(?)", [1, 2, 255]]],  # a BLOB as byte values
    [["INSERT INTO t VALUES(:a)", {"a": 1}], ["INSERT INTO t VALUES(:a)", {"a": 2}]],
    [["INSERT INTO t VALUES(?, :a)", 1, {"a": 2}]],
    ["INSERT INTO t VALUES(1)", ["INSERT INTO t VALUES(?)", 2]],  # a bare string item
    [["INSERT INTO t VALUES(?)", 1], "INSERT INTO t VALUES(1)"],
    [["INSERT INTO t VALUES(?)", 2**63 - 1], ["INSERT INTO t VALUES(?)", -(2**63)]],
]


def _reference(obj: list[object]) -> list[Statement]:
    return list(body._parse_items(obj))


@pytest.mark.parametrize("obj", BODIES)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_body_parses_as_item_by_item(obj: list[object], ascii_only: bool) -> None:
    raw = json.dumps(obj, ensure_ascii=ascii_only).encode()
    got = parse_json(raw)
    assert list(got) == _reference(json.loads(raw))
    # Runs group consecutive statements of one text, as add_statement does.
    assert [(r.sql, len(r.rows)) for r in got.runs] == [
        (r.sql, len(r.rows)) for r in body._parse_items(json.loads(raw)).runs
    ]


def test_a_bulk_body_takes_the_fast_path_as_one_run() -> None:
    items = [["INSERT INTO kv(k, v) VALUES(?, ?)", f"k{i}", i] for i in range(1000)]
    raw = json.dumps(items).encode()
    fast = body._plain_runs(json.loads(raw), raw)
    assert fast is not None
    assert fast.runs == [
        Run("INSERT INTO kv(k, v) VALUES(?, ?)", [[f"k{i}", i] for i in range(1000)])
    ]
    assert list(parse_json(raw)) == _reference(json.loads(raw))


@pytest.mark.parametrize(
    "obj",
    [
        [["INSERT INTO t VALUES(?)", "x'00'"]],  # a quote: maybe a BLOB
        [["INSERT INTO t VALUES(?)", "\u00e9"]],  # an escape (ensure_ascii)
        [["INSERT INTO t VALUES(?)", [1]]],
        [["INSERT INTO t VALUES(:a)", {"a": 1}]],
        ["SELECT 1"],
        [[]],
        [[1, 2]],
    ],
)
def test_bodies_the_fast_path_leaves_to_the_item_parse(obj: list[object]) -> None:
    raw = json.dumps(obj).encode()
    assert body._plain_runs(json.loads(raw), raw) is None


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"[[]]", "invalid request"),
        (b"[[1, 2]]", "invalid request"),
        (b'[["INSERT INTO t VALUES(?)", [1, 256]]]', "unsupported type list for parameter"),
        (b'[["INSERT INTO t VALUES(?)", [true]]]', "unsupported type list for parameter"),
        (b"[]", "no statements"),
        (b"{}", "invalid request"),
        (b"[", "invalid JSON body"),
    ],
)
def test_bad_bodies_are_refused_with_rqlites_messages(raw: bytes, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        parse_json(raw)
