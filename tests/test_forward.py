"""A follower's forwarding to the leader's HTTP API, against a real local
HTTP server standing in for the leader: replies pass through as they were
sent, and the connection is reused from one forwarded request to the next."""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rqlite_py.cluster import Cluster
from rqlite_py.http import forward
from rqlite_py.http.messages import Request
from rqlite_py.http.routing import Context
from rqlite_py.raft.types import NodeId

BIG = os.urandom(3 << 20)  # over READ_AT_ONCE_BYTES: relayed as it arrives
SMALL = b'{"results":[{"rows_affected":1}]}'
ZIPPED = gzip.compress(b"CREATE TABLE t (x);\n" * 1000)


class Leader(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real server
    connections: set[int] = set()

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        Leader.connections.add(self.client_address[1])
        body, headers = {
            "/small": (SMALL, {"Content-Type": "application/json"}),
            "/big": (BIG, {"Content-Type": "application/octet-stream"}),
            "/zipped": (ZIPPED, {"Content-Type": "application/sql", "Content-Encoding": "gzip"}),
        }[self.path.split("?")[0]]
        self.send_response(200)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class FakeStore:
    """What forwarding asks of the store: the leader's API and the client."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.cluster = Cluster(NodeId("n2"), "127.0.0.1:1", "127.0.0.1:2", 2.0)

    def leader_api_addr(self) -> str:
        return self.api


@pytest.fixture
def ctx() -> Iterator[Context]:
    Leader.connections = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Leader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Context(FakeStore(f"http://127.0.0.1:{server.server_port}"))  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()


def body_of(reply_body: bytes | Iterator[bytes]) -> bytes:
    return reply_body if isinstance(reply_body, bytes) else b"".join(reply_body)


def test_replies_pass_through_as_sent_on_one_reused_connection(ctx: Context) -> None:
    for path in ["/small", "/big", "/zipped", "/small", "/big", "/small"]:
        reply = forward.to_leader(ctx, Request("GET", path))
        assert reply.status == 200
        got = body_of(reply.body)
        want = {"/small": SMALL, "/big": BIG, "/zipped": ZIPPED}[path]
        assert got == want  # a gzip body is not decoded on the way
        if path == "/zipped":
            assert reply.header("Content-Encoding") == "gzip"
        if path == "/big":
            assert not isinstance(reply.body, bytes)  # streamed, never held whole
    assert len(Leader.connections) == 1


def test_a_relay_the_client_abandons_closes_its_connection(ctx: Context) -> None:
    reply = forward.to_leader(ctx, Request("GET", "/big"))
    assert not isinstance(reply.body, bytes)
    next(reply.body)
    reply.body.close()  # type: ignore[attr-defined]  # the client went away
    # The rest of that body was never read: the next request needs, and
    # gets, a connection of its own.
    assert body_of(forward.to_leader(ctx, Request("GET", "/small")).body) == SMALL
    assert len(Leader.connections) == 2
