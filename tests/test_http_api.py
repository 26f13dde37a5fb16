"""rqlite's HTTP API against a real single-node store, the application
called directly (tests/app_client.py): exact JSON shapes from API.md,
parameters, and bad input."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from rqlite_py import authorizer, command, sql
from rqlite_py.command import Statement
from rqlite_py.driver import LeadershipLostError
from rqlite_py.http.app import create_app
from rqlite_py.http.body import parse_json
from rqlite_py.raft.core import ProposalDroppedError
from rqlite_py.raft.types import NodeId
from rqlite_py.store import NotLeaderHere, Store
from tests.app_client import AppClient


@pytest.fixture(params=["worker", "loop"])
def client(store: Store, request: pytest.FixtureRequest) -> AppClient:
    """Every test twice: through App.handle, and through the event loop's
    path for a leader's writes (App.begin/finish)."""
    app = create_app(store, max_body_bytes=1 << 16)
    return AppClient(app, via_loop=request.param == "loop")


def ex(client: AppClient, body: object, qs: str = "") -> bytes:
    r = client.post("/db/execute" + qs, data=json.dumps(body))
    assert r.status_code == 200, r.data
    return r.data


def q(client: AppClient, body: object, qs: str = "") -> bytes:
    r = client.post("/db/query" + qs, data=json.dumps(body))
    assert r.status_code == 200, r.data
    return r.data


@pytest.fixture
def foo(client: AppClient) -> AppClient:
    ex(client, ["CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT, age INTEGER)"])
    ex(client, [["INSERT INTO foo(name, age) VALUES(?, ?)", "fiona", 20]])
    return client


def test_create_table_is_an_empty_result(client: AppClient) -> None:
    assert ex(client, ["CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)"]) == (
        b'{"results":[{}]}'
    )


def test_insert_and_select_exact_shape(client: AppClient) -> None:
    ex(client, ["CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)"])
    assert ex(client, ['INSERT INTO foo(name) VALUES("fiona")']) == (
        b'{"results":[{"last_insert_id":1,"rows_affected":1}]}'
    )
    assert q(client, ["SELECT * FROM foo"]) == (
        b'{"results":[{"columns":["id","name"],"types":["integer","text"],"values":[[1,"fiona"]]}]}'
    )


def test_get_query_with_q(foo: AppClient) -> None:
    r = foo.get("/db/query?q=SELECT%20name%20FROM%20foo")
    assert r.data == b'{"results":[{"columns":["name"],"types":["text"],"values":[["fiona"]]}]}'
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["X-RQLITE-VERSION"].startswith("v")
    assert r.headers["X-RQLITE-SERVED-BY"] == "127.0.0.1:4001"


def test_sql_errors_are_results_with_200(foo: AppClient) -> None:
    assert q(foo, ["SELECT * FROM bar"]) == b'{"results":[{"error":"no such table: bar"}]}'
    assert q(foo, ["blah"]) == b'{"results":[{"error":"near \\"blah\\": syntax error"}]}'


def test_associative(foo: AppClient) -> None:
    assert q(foo, ["SELECT name FROM foo WHERE id = 99"], "?associative") == (
        b'{"results":[{"types":{"name":"text"},"rows":[]}]}'
    )
    assert q(foo, ["SELECT name, age FROM foo"], "?associative") == (
        b'{"results":[{"types":{"age":"integer","name":"text"},"rows":[{"age":20,"name":"fiona"}]}]}'
    )
    assert ex(foo, [["INSERT INTO foo(name) VALUES(?)", "x"]], "?associative") == (
        b'{"results":[{"last_insert_id":2,"rows_affected":1,"rows":null}]}'
    )


def test_blobs_base64_and_blob_array(client: AppClient) -> None:
    ex(client, ["CREATE TABLE b (name TEXT, data BLOB)"])
    ex(client, [["INSERT INTO b VALUES(?, ?)", "fiona", "x'DEADBEEF'"]])
    ex(client, [["INSERT INTO b VALUES(?, ?)", "ints", [222, 173, 190, 239]]])
    assert q(client, ["SELECT data FROM b"]) == (
        b'{"results":[{"columns":["data"],"types":["blob"],"values":[["3q2+7w=="],["3q2+7w=="]]}]}'
    )
    assert b"[[222,173,190,239]" in q(client, ["SELECT data FROM b"], "?blob_array")


def test_named_parameters_nulls_floats_unicode(client: AppClient) -> None:
    ex(client, ["CREATE TABLE t (a INTEGER, b REAL, c TEXT, d BOOLEAN)"])
    ex(
        client,
        [["INSERT INTO t VALUES(:a, :b, :c, :d)", {"a": None, "b": 2.0, "c": "é🙂", "d": 1}]],
    )
    assert (
        q(client, ["SELECT * FROM t"])
        == (
            '{"results":[{"columns":["a","b","c","d"],"types":["integer","real","text","boolean"],'
            '"values":[[null,2,"é🙂",true]]}]}'
        ).encode()
    )


def test_timings_and_raft_index(foo: AppClient) -> None:
    body = json.loads(ex(foo, [["INSERT INTO foo(name) VALUES(?)", "x"]], "?timings&raft_index"))
    assert body["raft_index"] > 0 and body["time"] > 0 and body["results"][0]["time"] > 0
    assert "time" not in json.loads(ex(foo, [["INSERT INTO foo(name) VALUES(?)", "y"]]))


def test_pretty(foo: AppClient) -> None:
    assert q(foo, ["SELECT id FROM foo"], "?pretty=false").startswith(b'{\n    "results": [')


def test_transaction_stops_at_first_error(foo: AppClient) -> None:
    body = json.loads(
        ex(
            foo,
            [
                'INSERT INTO foo(name) VALUES("a")',
                "INSERT INTO nope VALUES(1)",
                'INSERT INTO foo(name) VALUES("b")',
            ],
            "?transaction",
        )
    )
    assert len(body["results"]) == 2 and body["results"][1]["error"] == "no such table: nope"
    assert json.loads(q(foo, ["SELECT count(*) FROM foo"]))["results"][0]["values"] == [[1]]


def test_without_transaction_errors_do_not_stop(foo: AppClient) -> None:
    body = json.loads(ex(foo, ["INSERT INTO nope VALUES(1)", 'INSERT INTO foo(name) VALUES("b")']))
    assert body["results"][0]["error"] and body["results"][1]["rows_affected"] == 1


def test_query_endpoint_is_read_only(foo: AppClient) -> None:
    assert q(foo, ['INSERT INTO foo(name) VALUES("z")']) == (
        b'{"results":[{"error":"attempt to change database via query operation"}]}'
    )


def test_text_plain_body(client: AppClient) -> None:
    r = client.post(
        "/db/execute",
        data="CREATE TABLE t (x); INSERT INTO t VALUES(1)",
        content_type="text/plain",
    )
    assert r.status_code == 200
    assert json.loads(q(client, ["SELECT x FROM t"]))["results"][0]["values"] == [[1]]


def test_unified_request(foo: AppClient) -> None:
    r = foo.post(
        "/db/request",
        data=json.dumps(
            ['INSERT INTO foo(name) VALUES("r")', "SELECT count(*) FROM foo", "SELECT * FROM nope"]
        ),
    )
    body = json.loads(r.data)
    assert body["results"][0]["rows_affected"] == 1
    assert body["results"][1]["values"] == [[2]]
    assert body["results"][2] == {"error": "no such table: nope"}


def test_returning_in_execute(foo: AppClient) -> None:
    body = json.loads(ex(foo, ['INSERT INTO foo(name) VALUES("r") RETURNING id, name']))
    assert body["results"][0]["values"] == [[2, "r"]]


@pytest.mark.parametrize(
    "level", ["none", "weak", "linearizable", "strong", "auto", "WEAK", "bogus"]
)
def test_every_level_reads(foo: AppClient, level: str) -> None:
    body = json.loads(q(foo, ["SELECT name FROM foo"], f"?level={level}"))
    assert body["results"][0]["values"] == [["fiona"]]


def test_strong_read_goes_through_the_log(foo: AppClient) -> None:
    body = json.loads(q(foo, ["SELECT name FROM foo"], "?level=strong&raft_index"))
    assert body["raft_index"] > 0


def test_random_is_rewritten_before_the_log(client: AppClient) -> None:
    ex(client, ["CREATE TABLE r (v INTEGER)"])
    ex(client, ["INSERT INTO r(v) VALUES(RANDOM())"])
    body = json.loads(client.get("/db/sql?q=INSERT%20INTO%20r(v)%20VALUES(RANDOM())").data)
    assert body["results"][0]["original"] == "INSERT INTO r(v) VALUES(RANDOM())"
    assert "RANDOM()" not in body["results"][0]["rewritten"].upper()


def test_each_statement_of_a_run_gets_its_own_random_value(client: AppClient, store: Store) -> None:
    """A bulk request is kept as one run of its SQL text; a text that is
    rewritten is rewritten for each statement, not once for the run."""
    ex(client, ["CREATE TABLE r (v INTEGER)"])
    insert = ["INSERT INTO r(v) VALUES(RANDOM())", "INSERT INTO r(v) VALUES(?)"]
    ex(client, [[insert[0]]] * 5 + [[insert[1], 7]] * 3 + [[insert[0]]] * 5)
    result = json.loads(q(client, ["SELECT v FROM r ORDER BY rowid"]))["results"][0]
    values = [row[0] for row in result["values"]]
    assert values[5:8] == [7, 7, 7]
    assert len(set(values[:5] + values[8:])) == 10
    # The log holds the rewritten values: applying the entry again agrees.
    last = store.logstore.last_index()
    [entry] = store.logstore.entries(last, last + 1, 1 << 20)
    logged = command.decode(entry.data).statements
    assert [s.sql for s in logged][5:8] == [insert[1]] * 3
    assert all("RANDOM()" not in s.sql.upper() for s in logged)


def test_disallowed_pragma(client: AppClient) -> None:
    for path in ("/db/execute", "/db/query"):
        r = client.post(path, data=json.dumps(["PRAGMA journal_mode=DELETE"]))
        assert (r.status_code, r.data) == (200, b'{"results":[],"error":"disallowed pragma"}')


def test_empty_statement_is_skipped(client: AppClient) -> None:
    assert q(client, [""]) == b'{"results":[]}'


def test_db_timeout(client: AppClient) -> None:
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
    assert q(client, [forever], "?db_timeout=50ms") == b'{"results":[{"error":"query timeout"}]}'


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/db/execute", b"not json", 400, b"invalid JSON body\n"),
        ("/db/execute", b'{"a":1}', 400, b"invalid request\n"),
        ("/db/execute", b"[]", 400, b"no statements\n"),
        ("/db/execute", b"[1]", 400, b"invalid request\n"),
        (
            "/db/execute",
            b'[["INSERT INTO t VALUES(?)", {"x": {"y": 1}}]]',
            400,
            b"unsupported type dict for parameter\n",
        ),
        ("/db/execute", b'["\xff\xfe"]', 400, b"invalid JSON body\n"),
        ("/db/execute", b"[" * 100_000 + b"]" * 100_000, 413, b"request body too large\n"),
        ("/db/execute", b"[" * 20_000 + b"]" * 20_000, 400, b"invalid JSON body\n"),
        (
            "/db/query?level=strong&db_timeout=soon",
            b'["SELECT 1"]',
            400,
            b"db_timeout is not a valid duration\n",
        ),
        (
            "/db/query?freshness_strict",
            b'["SELECT 1"]',
            400,
            b"freshness_strict requires freshness\n",
        ),
        ("/db/query?q=", b"", 400, b"query parameter not set\n"),
        ("/db/query?levle=strong", b'["SELECT 1"]', 400, b"unknown query parameter levle\n"),
    ],
)
def test_bad_input(client: AppClient, path: str, body: bytes, status: int, message: bytes) -> None:
    r = client.post(path, data=body)
    assert (r.status_code, r.data) == (status, message)
    # ...and the node keeps serving.
    assert client.get("/db/query?q=SELECT%201").status_code == 200


def test_methods_paths_and_options(client: AppClient) -> None:
    assert client.get("/db/execute").status_code == 405
    assert client.get("/nope").status_code == 404
    assert client.options("/db/execute").status_code == 200
    r = client.get("/")
    assert (r.status_code, r.headers["Location"]) == (302, "/console/")


def test_status_readyz_nodes_leader(client: AppClient) -> None:
    status = json.loads(client.get("/status").data)
    assert status["store"]["raft"]["state"] == "Leader"
    assert status["store"]["node_id"] == "n1"
    assert json.loads(client.get("/status?key=store.raft.state").data) == "Leader"
    r = client.get("/readyz")
    assert (r.status_code, r.data) == (200, b"[+]node ok\n[+]leader ok\n[+]store ok\n[+]db ok")
    assert client.get("/readyz?noleader").data == b"[+]node ok"
    nodes = json.loads(client.get("/nodes").data)
    assert nodes["n1"]["leader"] is True and nodes["n1"]["api_addr"] == "http://127.0.0.1:4001"
    v2 = json.loads(client.get("/nodes?ver=2").data)
    assert [n["id"] for n in v2["nodes"]] == ["n1"]
    assert json.loads(client.get("/leader").data)["id"] == "n1"
    assert "store" in json.loads(client.get("/debug/vars").data)


def _sqlite_rows(data: bytes, tmp_path: Path, sql: str) -> list[tuple]:
    import apsw

    path = tmp_path / "copy.sqlite"
    path.write_bytes(data)
    conn = apsw.Connection(str(path))
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def test_backup_binary_sql_compressed_vacuum_delete(foo: AppClient, tmp_path: Path) -> None:
    import gzip

    r = foo.get("/db/backup")
    assert r.status_code == 200 and r.data.startswith(b"SQLite format 3\x00")
    assert _sqlite_rows(r.data, tmp_path, "SELECT name, age FROM foo") == [("fiona", 20)]
    r = foo.get("/db/backup?fmt=sql")
    assert r.headers["Content-Type"].startswith("application/sql")
    assert b"INSERT INTO foo VALUES(1,'fiona',20);" in r.data
    r = foo.get("/db/backup?compress")
    assert gzip.decompress(r.data).startswith(b"SQLite format 3\x00")
    r = foo.get("/db/backup?vacuum")
    assert _sqlite_rows(r.data, tmp_path, "SELECT count(*) FROM foo") == [(1,)]
    r = foo.get("/db/backup?fmt=delete")
    assert _sqlite_rows(r.data, tmp_path, "PRAGMA journal_mode") == [("delete",)]
    r = foo.get("/db/backup?fmt=sql&vacuum")
    assert json.loads(r.data)["error"] == "vacuum is only supported with the binary format"


def test_load_sqlite_file_and_sql_dump(foo: AppClient, client: AppClient) -> None:
    binary = foo.get("/db/backup").data
    dump = foo.get("/db/backup?fmt=sql").data
    ex(foo, ["DROP TABLE foo"])
    r = client.post("/db/load", data=binary, content_type="application/octet-stream")
    assert r.status_code == 200 and json.loads(r.data) == {"results": []}
    assert json.loads(q(client, ["SELECT name FROM foo"]))["results"][0]["values"] == [["fiona"]]
    ex(client, ["DROP TABLE foo"])
    r = client.post("/db/load", data=dump, content_type="text/plain")
    assert r.status_code == 200 and "error" not in r.data.decode()
    assert json.loads(q(client, ["SELECT name FROM foo"]))["results"][0]["values"] == [["fiona"]]


def test_load_bad_sql_dump_changes_nothing(client: AppClient) -> None:
    dump = (
        b"BEGIN TRANSACTION; CREATE TABLE x (a); INSERT INTO x VALUES(1); "
        b"INSERT INTO nope VALUES(2); COMMIT;"
    )
    body = json.loads(client.post("/db/load", data=dump, content_type="text/plain").data)
    assert body["results"][0]["error"] == "no such table: nope"
    assert json.loads(q(client, ["SELECT * FROM x"]))["results"][0]["error"] == "no such table: x"
    ex(client, ["CREATE TABLE y (a)"])  # and the writer is not stuck in a transaction


def test_load_of_sql_without_its_own_transaction_is_all_or_nothing(client: AppClient) -> None:
    script = b"CREATE TABLE y (a); INSERT INTO y VALUES(1); INSERT INTO nope VALUES(2);"
    body = json.loads(client.post("/db/load", data=script, content_type="text/plain").data)
    assert body["results"][0]["error"] == "no such table: nope"
    assert json.loads(q(client, ["SELECT * FROM y"]))["results"][0]["error"] == "no such table: y"
    good = b"CREATE TABLE y (a); INSERT INTO y VALUES(1); INSERT INTO y VALUES(2);"
    body = json.loads(client.post("/db/load", data=good, content_type="text/plain").data)
    assert "error" not in body["results"][0]
    assert json.loads(q(client, ["SELECT a FROM y"]))["results"][0]["values"] == [[1], [2]]
    ex(client, ["INSERT INTO y VALUES(3)"])  # the writer is not left in a transaction


def test_load_of_sql_that_commits_its_own_work_keeps_what_it_committed(
    client: AppClient,
) -> None:
    script = b"CREATE TABLE kept (a); COMMIT; CREATE TABLE lost (a); INSERT INTO nope VALUES(1);"
    body = json.loads(client.post("/db/load", data=script, content_type="text/plain").data)
    assert body["results"][0]["error"] == "no such table: nope"
    assert json.loads(q(client, ["SELECT * FROM kept"]))["results"][0]["columns"] == ["a"]
    ex(client, ["CREATE TABLE lost (a)"])  # what came after its COMMIT was undone


def test_boot(foo: AppClient, client: AppClient) -> None:
    binary = foo.get("/db/backup").data
    ex(foo, ["DROP TABLE foo"])
    assert client.post("/boot", data=b"not sqlite").status_code == 400
    assert client.post("/boot", data=binary).status_code == 200
    assert json.loads(q(client, ["SELECT name FROM foo"]))["results"][0]["values"] == [["fiona"]]


def test_load_in_pieces(foo: AppClient, client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file loads as many log entries; the database changes only with the last."""
    from rqlite_py import command

    monkeypatch.setattr(command, "LOAD_CHUNK_BYTES", 1000)
    ex(foo, [["INSERT INTO foo(name, age) VALUES(?, ?)", "x" * 1500, i] for i in range(20)])
    binary = foo.get("/db/backup").data
    assert len(binary) > 10 * 1000
    ex(foo, ["DROP TABLE foo"])
    r = client.post("/db/load?raft_index", data=binary)
    body = json.loads(r.data)
    assert r.status_code == 200 and body["raft_index"] > len(binary) // 1000
    assert json.loads(q(client, ["SELECT count(*) FROM foo"]))["results"][0]["values"] == [[21]]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (LeadershipLostError("entry 9 was overwritten"), "leadership lost while committing log"),
        (
            ProposalDroppedError("leadership transfer to n2 in progress"),
            "leadership transfer in progress",
        ),
    ],
)
def test_lost_proposals_are_request_errors(
    store: Store,
    client: AppClient,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    message: str,
) -> None:
    """Found by the chaos runner: a write whose entry another leader
    overwrote answered 500 with a traceback; rqlite reports it in the body."""

    def lost(data: bytes, decoded: object = None) -> Future[object]:
        fut: Future[object] = Future()
        fut.set_exception(error)
        return fut

    monkeypatch.setattr(store.driver, "propose", lost)
    r = client.post("/db/execute", data=json.dumps(["CREATE TABLE t (x)"]))
    assert r.status_code == 200
    assert r.get_json() == {"results": [], "error": message}


def test_a_full_disk_answers_writes_at_once_and_recovers_by_itself(
    foo: AppClient, store: Store
) -> None:
    """The state machine's database may not grow (max_page_count, set from
    here: the driver thread only idles meanwhile): a write that needs room
    stalls the node, and every write is refused at once with 503 and rqlite's
    JSON error body until there is room again."""
    writer = store.fsm.db.writer
    with authorizer.trusted():
        writer.execute(f"PRAGMA max_page_count={writer.execute('PRAGMA page_count').fetchone()[0]}")
    big = [["INSERT INTO foo(name) VALUES(zeroblob(100000))"]]
    start = time.monotonic()
    r = foo.post("/db/execute", data=json.dumps(big))
    assert (r.status_code, r.data) == (503, b'{"results":[],"error":"database or disk is full"}')
    assert r.content_type == "application/json; charset=utf-8"
    r = foo.post("/db/execute", data=json.dumps([["INSERT INTO foo(name) VALUES('y')"]]))
    assert r.status_code == 503
    assert time.monotonic() - start < 5  # never the 10 s apply timeout
    assert foo.post("/db/query?level=strong", data=json.dumps(["SELECT 1"])).status_code == 503
    assert foo.post("/db/query", data=json.dumps(["SELECT 1"])).status_code == 503  # weak
    assert q(foo, ["SELECT name FROM foo"], "?level=none") == (
        b'{"results":[{"columns":["name"],"types":["text"],"values":[["fiona"]]}]}'
    )
    status = foo.get("/status").get_json()["store"]
    assert status["disk_error"] == "database or disk is full" and not status["ready"]
    r = foo.get("/readyz")
    assert r.status_code == 503 and b"store not ready: database or disk is full" in r.data
    with authorizer.trusted():
        writer.execute("PRAGMA max_page_count=1000000")
    deadline = time.monotonic() + 10
    while store.driver.disk_error is not None:
        assert time.monotonic() < deadline, "never recovered"
        time.sleep(0.01)
    ex(foo, [["INSERT INTO foo(name) VALUES('after')"]])
    # The stalled write was in the log: it is applied now, once; 'y' never was.
    assert q(foo, ["SELECT length(name) FROM foo ORDER BY id"], "?level=none") == (
        b'{"results":[{"columns":["length(name)"],"types":["integer"],'
        b'"values":[[5],[100000],[5]]}]}'
    )
    assert foo.get("/readyz").status_code == 200


def test_what_begins_on_the_event_loop(store: Store) -> None:
    from rqlite_py.http.messages import Request

    app = create_app(store)
    body = json.dumps(["CREATE TABLE t (x)"]).encode()
    begun = app.begin(Request("POST", "/db/execute", "", {}, body))
    assert begun is not None and begun.future is not None
    begun.future.result(timeout=10)
    reply = app.finish(begun)
    assert reply is not None and reply.body == b'{"results":[{}]}'
    for req in (
        Request("POST", "/db/execute", "queue", {}, body),
        Request("GET", "/db/execute", "q=SELECT%201"),
        Request("POST", "/db/execute", "", {}, b"not json"),  # the worker answers the 400
        Request("GET", "/db/query", "q=SELECT%201&level=strong"),  # through the log
        Request("GET", "/db/query", "q=SELECT%201&db_timeout=1s"),
        Request("POST", "/db/query", "", {}, b"not json"),
        Request("GET", "/db/query", ""),  # no statements
    ):
        assert app.begin(req) is None, req

    # Reads: weak and none at once, linearizable once its read index is in.
    one = b'{"results":[{"columns":["1"],"types":["integer"],"values":[[1]]}]}'
    for qs, waits in (("", False), ("&level=none", False), ("&level=linearizable", True)):
        begun = app.begin(Request("GET", "/db/query", "q=SELECT%201" + qs))
        assert begun is not None and (begun.future is not None) == waits, qs
        if begun.future is not None:
            begun.future.result(timeout=10)
        reply = app.finish(begun)
        assert reply is not None and reply.body == one, qs

    # A read that is not brief stops at its step limit and runs on a worker.
    count = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000) "
    long_read = json.dumps([count + "SELECT count(*) FROM c"]).encode()
    begun = app.begin(Request("POST", "/db/query", "", {}, long_read))
    assert begun is not None and begun.future is None
    assert app.finish(begun) is None
    reply = app.finish_slow(begun, Request("POST", "/db/query", "", {}, long_read))
    assert reply.body == (
        b'{"results":[{"columns":["count(*)"],"types":["integer"],"values":[[100000]]}]}'
    )


# -- queued writes (API.md §c) ---------------------------------------------------


def queued(client: AppClient, body: object, qs: str = "") -> int:
    r = client.post("/db/execute?queue" + qs, data=json.dumps(body))
    assert r.status_code == 200, r.data
    assert re.fullmatch(rb'\{"results":\[\],"sequence_number":\d+\}', r.data), r.data
    return r.get_json()["sequence_number"]


def test_queued_writes_answer_at_once_and_wait_is_a_barrier(foo: AppClient) -> None:
    first = queued(foo, [["INSERT INTO foo(name) VALUES(?)", "q1"], "INSERT INTO nope VALUES(1)"])
    assert queued(foo, [["INSERT INTO foo(name) VALUES(:n)", {"n": "q2"}]]) == first + 1
    barrier = queued(foo, [], "&wait")  # no statements: allowed with wait
    assert barrier == first + 2
    # Everything queued before the barrier is written; the SQL error went nowhere.
    assert q(foo, ["SELECT name FROM foo ORDER BY id"]) == (
        b'{"results":[{"columns":["name"],"types":["text"],"values":[["fiona"],["q1"],["q2"]]}]}'
    )
    status = json.loads(foo.get("/status?key=http.queue._default").data)
    assert status["sequence_number"] == barrier
    assert status["statement_errors"] == 1


def test_queued_write_bodies(foo: AppClient) -> None:
    r = foo.post("/db/execute?queue", data=b"[]")
    assert (r.status_code, r.data) == (400, b"no statements\n")
    # rqlite's quirk: a body that is not a request is queued, as an empty one;
    # text/plain is parsed as JSON too.
    queued(foo, "not a request")
    r = foo.post(
        "/db/execute?queue", data=b"INSERT INTO foo(name) VALUES('t')", content_type="text/plain"
    )
    assert r.status_code == 200 and b"sequence_number" in r.data
    r = foo.post("/db/execute?queue", data=json.dumps(["PRAGMA journal_mode=DELETE"]))
    assert r.get_json() == {"results": [], "error": "disallowed pragma"}
    queued(foo, [], "&wait")
    assert q(foo, ["SELECT COUNT(*) FROM foo"]) == (
        b'{"results":[{"columns":["COUNT(*)"],"types":["integer"],"values":[[1]]}]}'
    )


def test_queued_writes_are_rewritten_once_at_enqueue(
    client: AppClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex(client, ["CREATE TABLE r (v INTEGER)"])
    calls: list[str] = []
    rewrite = sql.rewrite

    def counting(text: str, **kw: bool) -> str:
        calls.append(text)
        return rewrite(text, **kw)

    monkeypatch.setattr(sql, "rewrite", counting)
    queued(client, ["INSERT INTO r(v) VALUES(RANDOM())"], "&wait")
    assert calls == ["INSERT INTO r(v) VALUES(RANDOM())"]
    last = store.logstore.last_index()
    [entry] = store.logstore.entries(last, last + 1, 1 << 20)
    [stmt] = command.decode(entry.data).statements
    assert "RANDOM()" not in stmt.sql.upper()


def test_queued_write_needs_a_leader_unless_noleader(make_store: Callable[..., Store]) -> None:
    client = AppClient(create_app(make_store(opened=False)))
    r = client.post("/db/execute?queue", data=b'["SELECT 1"]')
    assert (r.status_code, r.data) == (503, b"leader not found\n")
    queued(client, ["SELECT 1"], "&noleader")


def test_queue_wait_timeout_is_408(make_store: Callable[..., Store]) -> None:
    client = AppClient(create_app(make_store(write_queue_timeout_s=60.0)))
    r = client.post("/db/execute?queue&wait&timeout=50ms", data=b'["CREATE TABLE t (x)"]')
    assert (r.status_code, r.data) == (408, b"queue wait timeout\n")
    assert r.content_type == "text/plain; charset=utf-8"


def test_queue_tx_runs_each_batch_in_one_transaction(make_store: Callable[..., Store]) -> None:
    client = AppClient(
        create_app(
            make_store(write_queue_tx=True, write_queue_batch_size=2, write_queue_timeout_s=60.0)
        )
    )
    ex(client, ["CREATE TABLE t (x INTEGER NOT NULL)"])
    queued(client, ["INSERT INTO t VALUES(1)"])
    queued(client, ["INSERT INTO t VALUES(NULL)"], "&wait")  # fails: the batch rolls back
    assert q(client, ["SELECT COUNT(*) FROM t"]) == (
        b'{"results":[{"columns":["COUNT(*)"],"types":["integer"],"values":[[0]]}]}'
    )


def test_a_follower_forwards_batches_already_rewritten(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, str, bytes]] = []

    class Answer:
        status_code = 200
        text = ""

        @staticmethod
        def json() -> object:
            return {"results": [{"last_insert_id": 1, "rows_affected": 1}, {"error": "boom"}]}

    def not_leader(*args: object) -> object:
        raise NotLeaderHere(NodeId("n2"))

    def forward(api: str, method: str, path: str, data: bytes, *rest: object) -> Answer:
        sent.append((api, path, data))
        return Answer()

    monkeypatch.setattr(store, "_through_log", not_leader)
    monkeypatch.setattr(store, "leader_api_addr", lambda: "http://leader:4001")
    monkeypatch.setattr(store.cluster, "forward", forward)
    stmts = (
        Statement("INSERT INTO t VALUES(?, ?, ?)", (b"\x01\xff", 1.5, None)),
        Statement("INSERT INTO t VALUES(:a)", (), (("a", "x'zz'"),)),
    )
    assert store._submit_queued(stmts, True) == ["boom"]
    [(api, path, data)] = sent
    assert (api, path) == ("http://leader:4001", "/db/execute?noparse&transaction")
    assert parse_json(data) == list(stmts)
