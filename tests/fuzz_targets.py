"""What the fuzzers feed, and what must hold for any input (issue 8).

Each target takes arbitrary input and fails (raises AssertionError or an
unexpected exception) only when the code under test misbehaves: a decoder
may refuse bytes only with its own error type, never crash, hang or answer
a 500. tests/test_fuzz.py runs them in CI in a short, derandomized mode;
scripts/fuzz.py runs them longer with fresh seeds and prints what it tried.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from rqlite_py import command, sql, wire
from rqlite_py.http import body, params
from rqlite_py.http.app import create_app
from rqlite_py.raft.types import (
    ConfState,
    Entry,
    Index,
    Message,
    MsgType,
    NodeId,
    SnapshotMeta,
    Term,
)
from rqlite_py.store import Store, StoreConfig
from rqlite_py.transport import read_frame
from tests.app_client import AppClient
from tests.system.node import free_port, wait_for

# --- the Raft port's frames -------------------------------------------------------


class BytesSocket:
    """A socket's recv over fixed bytes, as a peer would send them."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def recv(self, n: int) -> bytes:
        # Never more than 7 bytes at once: frames cut at every boundary.
        got = bytes(self.data[self.pos : self.pos + min(n, 7)])
        self.pos += len(got)
        return got


def frames(data: bytes) -> int:
    """Read frames off `data` as the transport does, decoding each payload
    as its kind says. Only WireError may refuse them. Returns frames read."""
    sock = BytesSocket(data)
    count = 0
    try:
        while True:
            got = read_frame(sock)  # type: ignore[arg-type]
            if got is None:
                return count
            count += 1
            kind, payload = got
            if kind == wire.KIND_RAFT:
                m = wire.decode_message(payload)
                assert isinstance(m, Message)
            elif kind in (wire.KIND_HELLO, wire.KIND_CALL, wire.KIND_ANSWER, wire.KIND_SNAPSHOT):
                assert isinstance(wire.decode_json(payload), dict)
    except wire.WireError:
        return count


def _message(draw: Callable[..., Any]) -> Message:
    n = draw(st.integers(0, 3))
    entries = tuple(
        Entry(Term(draw(st.integers(0, 9))), Index(i + 1), draw(st.binary(max_size=40)))
        for i in range(n)
    )
    snapshot = None
    if draw(st.booleans()):
        voters = draw(st.lists(st.sampled_from(["n1", "n2", "n3"]), max_size=3, unique=True))
        conf = ConfState.of(voters, addrs={v: "127.0.0.1:1" for v in voters})
        snapshot = SnapshotMeta(Index(draw(st.integers(0, 99))), Term(1), conf)
    return Message(
        draw(st.sampled_from(list(MsgType))),
        NodeId(draw(st.sampled_from(["n1", "n2", "é"]))),
        NodeId("n2"),
        Term(draw(st.integers(0, 2**64 - 1))),
        entries=entries,
        snapshot=snapshot,
    )


@st.composite
def frame_streams(draw: Callable[..., Any]) -> bytes:
    """Valid frames, then cut, flipped, spliced or garbage bytes."""
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["raft", "call", "raw"]))
        if kind == "raft":
            parts.append(wire.frame(wire.KIND_RAFT, wire.encode_message(_message(draw))))
        elif kind == "call":
            obj = draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
            parts.append(wire.frame(wire.KIND_CALL, json.dumps(obj).encode()))
        else:
            parts.append(draw(st.binary(max_size=60)))
    data = bytearray(b"".join(parts))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert", "big-length"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=9))
        else:
            data[i : i + 4] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    return bytes(data)


# --- HTTP bodies and parameters -------------------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["x'0A'", "X'zz'", "SELECT 1", "INSERT INTO t VALUES(?)"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def bodies(draw: Callable[..., Any]) -> bytes:
    kind = draw(st.sampled_from(["json", "statements", "bytes", "deep"]))
    if kind == "json":
        return json.dumps(draw(_json_values)).encode()
    if kind == "statements":
        items = draw(
            st.lists(
                st.text(max_size=20)
                | st.lists(_json_values, min_size=1, max_size=4).map(
                    lambda xs: ["INSERT INTO t VALUES(?)", *xs]
                ),
                max_size=5,
            )
        )
        return json.dumps(items, ensure_ascii=draw(st.booleans())).encode()
    if kind == "deep":
        depth = draw(st.integers(1, 200_000))
        return b"[" * depth + b"]" * draw(st.integers(0, depth))
    return draw(st.binary(max_size=80))


def body_parsing(data: bytes) -> None:
    """JSON bodies: statements, or BodyError; and the fast path for plain
    bodies agrees with the item-by-item one."""
    try:
        got = body.parse_json(data)
    except body.BodyError:
        got = None
    if got is not None:
        assert isinstance(got, command.Statements)
        obj = json.loads(data)
        try:
            slow = body._parse_items(obj)
        except body.BodyError as e:
            raise AssertionError(f"fast path accepted what the slow one refuses: {e}") from e
        assert [(s.sql, s.params) for s in got] == [(s.sql, s.params) for s in slow]
    queued = body.parse_queued(data)
    assert queued is None or isinstance(queued, list | command.Statements)
    with contextlib.suppress(body.BodyError):
        body.parse_text(data)


_PARAM_NAMES = sorted(params.KNOWN) + ["levle", "", "q", "x" * 300]


@st.composite
def query_args(draw: Callable[..., Any]) -> dict[str, str]:
    names = draw(st.lists(st.sampled_from(_PARAM_NAMES), max_size=6))
    values = st.sampled_from(["", "1", "-1", "1s", "5m", "1h2m", "strong", "none", "x", "1e99"])
    return {n: draw(values | st.text(max_size=8)) for n in names}


def parameter_parsing(args: dict[str, str]) -> None:
    with contextlib.suppress(params.ParamError):
        params.parse(args)


# --- SQL at ingress ---------------------------------------------------------------------

_SQL_WORDS = [
    "SELECT",
    "INSERT",
    "INTO",
    "VALUES",
    "(",
    ")",
    ",",
    ";",
    "RANDOM()",
    "randomblob(",
    "16",
    "'now'",
    "now",
    "datetime(",
    "strftime('%s',",
    "ORDER",
    "BY",
    "PRAGMA",
    "journal_mode",
    "=",
    "main.",
    "--",
    "/*",
    "*/",
    "'",
    '"',
    "`",
    "[",
    "]",
    "RETURNING",
    "*",
    "x'0A'",
    "CREATE",
    "TRIGGER",
    "BEGIN",
    "END",
    "CASE",
    "WHEN",
    "\n",
    " ",
    "$",
    "?1",
    ":a",
    "@b",
    "\\",
]


@st.composite
def sql_texts(draw: Callable[..., Any]) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=60))
    words = draw(st.lists(st.sampled_from(_SQL_WORDS), max_size=30))
    return "".join(w + draw(st.sampled_from(["", " "])) for w in words)


def sql_ingress(text: str) -> None:
    """The rewriter and the checks at ingress take any text: a string out,
    text without anything to rewrite left as it was."""
    out = sql.rewrite(text, rng=random.Random(7), now_julian=2461000.5)
    assert isinstance(out, str)
    lowered = text.lower()
    if "random" not in lowered and "now" not in lowered:
        assert out == text
    assert isinstance(sql.is_disallowed_pragma(text), bool)
    assert isinstance(sql.has_returning(text), bool)
    assert all(isinstance(s, str) for s in sql.split_statements(text))
    assert isinstance(sql.is_empty(text), bool)


# --- whole requests through the application ------------------------------------------------

_PATHS = [
    "/db/execute",
    "/db/query",
    "/db/request",
    "/db/sql",
    "/status",
    "/nodes",
    "/readyz",
    "/leader",
    "/remove",
    "/snapshot",
    "/db/backup",
    "/nope",
    "/db/execute/x",
    "//",
    "/",
]
_ALLOWED = {200, 204, 301, 302, 400, 401, 404, 405, 408, 413, 503}


@st.composite
def requests_(draw: Callable[..., Any]) -> tuple[str, str, str, bytes, str]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    path = draw(st.sampled_from(_PATHS))
    args = draw(query_args())
    # Readers that wait (timeouts, wait, sync) are bounded so the fuzzer stays fast.
    for slow in ("timeout", "wait", "sync", "linearizable_timeout", "freshness", "db_timeout"):
        args.pop(slow, None)
    query = "&".join(f"{k}={v}" if v else k for k, v in args.items())
    content_type = draw(st.sampled_from(["application/json", "text/plain", ""]))
    return method, path, query, draw(bodies()), content_type


def fuzz_app(where: str) -> tuple[AppClient, Store]:
    """A single-node store in `where` behind the application (no server),
    with a table t, for the requests target; the caller closes the store."""
    store = Store(
        StoreConfig(
            data_dir=where,
            node_id=NodeId("n1"),
            raft_addr=f"127.0.0.1:{free_port()}",
            http_addr="127.0.0.1:4001",
            apply_timeout_s=2.0,
        )
    )
    store.open()
    wait_for("the fuzzed store ready", store.is_ready, 10)
    client = AppClient(create_app(store, max_body_bytes=1 << 16))
    client.post("/db/execute", data='["CREATE TABLE t(x)"]', content_type="application/json")
    return client, store


def http_request(client: Any, request: tuple[str, str, str, bytes, str]) -> None:
    """Any request gets one of rqlite's statuses, never a 500, and leaves
    the node's Raft loop running."""
    method, path, query, data, content_type = request
    target = path + (f"?{query}" if query else "")
    r = client.open(method, target, data=data, content_type=content_type)
    assert r.status_code in _ALLOWED, (r.status_code, target, r.data[:300])
    fatal = client.app.ctx.store.driver.fatal
    assert fatal is None, (target, fatal)


# --- raw bytes to a node's HTTP port (its HTTP parser) -------------------------------------


@st.composite
def raw_http(draw: Callable[..., Any]) -> bytes:
    """A request as bytes, then cut, flipped or spliced; or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    method = draw(st.sampled_from([b"GET", b"POST", b"DELETE", b"OPTIONS", b"G\x00T", b""]))
    path = draw(st.sampled_from([b"/db/execute", b"/db/query?q=SELECT%201", b"/status", b"*"]))
    data = draw(bodies())
    headers = [b"Host: x", b"Content-Type: application/json"]
    length = draw(st.sampled_from([len(data), 0, len(data) + 5, -1, 2**40]))
    headers.append(b"Content-Length: %d" % length)
    if draw(st.booleans()):
        headers.append(b"Transfer-Encoding: chunked")
    raw = bytearray(method + b" " + path + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n")
    raw += data
    for _ in range(draw(st.integers(0, 3))):
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del raw[i:]
        else:
            raw[i:i] = draw(st.sampled_from([b"\r\n", b"\x00", b":", b" ", b"\xff"]))
    return bytes(raw)


def http_wire(addr: tuple[str, int], data: bytes) -> None:
    """Bytes, then end of stream: the node answers with an HTTP response
    that is not a 500, or closes the connection; it never hangs."""
    with socket.create_connection(addr, 10) as s:
        s.settimeout(10)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(1 << 16):
                reply += chunk
        except ConnectionError:
            return  # reset: the node dropped it
    if reply:
        assert reply.startswith(b"HTTP/1.1 "), reply[:100]
        assert not reply.startswith(b"HTTP/1.1 500"), reply[:300]
