"""The tools' HTTP client against small local servers: which failures move
it to another node, which requests it sends again, and what /nodes teaches
it. A request that may have reached a node is sent again only when it is
safe to (a read); one that never left goes to the next node whatever it is."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rqlite_py.tools.client import (
    Client,
    ClientError,
    ConnectionOptions,
    add_connection_arguments,
    options_from_args,
)
from tests.system.node import free_port


class Recorder(ThreadingHTTPServer):
    """A node that answers every request with `answer(path)` (JSON) and
    remembers what it was sent."""

    daemon_threads = True

    def __init__(self, answer: Callable[[str], object] = lambda _path: {"results": []}) -> None:
        self.answer = answer
        self.seen: list[tuple[str, str, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _reply(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, body))
        data = json.dumps(self.server.answer(self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _reply

    def log_message(self, format: str, *args: object) -> None:
        pass  # the test output is not the place


class Silent:
    """A node that takes the request and then dies (`close`) or never
    answers: the client cannot know whether it was applied."""

    def __init__(self, *, close: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.close_after_read = close
        self.received: list[bytes] = []
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.received.append(read_request(conn))
            if self.close_after_read:
                conn.close()
            else:
                self.conns.append(conn)

    def stop(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in _serve
        self.sock.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


def read_request(conn: socket.socket) -> bytes:
    """Headers and body, whole: the client sends them in separate writes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture
def serve() -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def start(answer: Callable[[str], object] | None = None) -> Recorder:
        server = Recorder(answer) if answer else Recorder()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.shutdown()
        s.server_close()


@pytest.fixture
def silent() -> Iterator[Callable[..., Silent]]:
    started: list[Silent] = []

    def start(*, close: bool) -> Silent:
        s = Silent(close=close)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def client_for(first: str, *others: str, timeout_s: float = 10.0) -> Client:
    host, _, port = first.rpartition(":")
    return Client(
        ConnectionOptions(host=host, port=int(port), alternatives=list(others), timeout_s=timeout_s)
    )


def refused() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


def test_a_refused_connection_moves_any_request_to_the_next_node(
    serve: Callable[..., Recorder],
) -> None:
    node = serve()
    client = client_for(dead := refused(), node.addr)
    resp = client.request("POST", "/db/execute", json=["INSERT INTO t VALUES(1)"])
    assert resp.status_code == 200
    assert node.seen == [("POST", "/db/execute", b'["INSERT INTO t VALUES(1)"]')]
    assert client.nodes == [node.addr, dead]  # the live node stays in use


@pytest.mark.parametrize("close", [True, False], ids=["connection-lost", "no-answer"])
def test_a_write_that_may_have_arrived_is_never_sent_again(
    serve: Callable[..., Recorder], silent: Callable[..., Silent], close: bool
) -> None:
    node = serve()
    first = silent(close=close)
    client = client_for(first.addr, node.addr, timeout_s=0.5)
    with pytest.raises(ClientError, match="may or may not have been applied, so it was not sent"):
        client.request("POST", "/db/execute", json=["INSERT INTO t VALUES(1)"])
    assert first.received and b"INSERT INTO t" in b"".join(first.received)
    assert node.seen == []
    assert client.current == first.addr


@pytest.mark.parametrize("close", [True, False], ids=["connection-lost", "no-answer"])
def test_a_read_that_may_have_arrived_is_sent_to_the_next_node(
    serve: Callable[..., Recorder], silent: Callable[..., Silent], close: bool
) -> None:
    node = serve()
    first = silent(close=close)
    client = client_for(first.addr, node.addr, timeout_s=0.5)
    assert client.request("GET", "/status").status_code == 200
    assert client.request("POST", "/db/query", json=["SELECT 1"], resend=True).status_code == 200
    assert [(m, p) for m, p, _ in node.seen] == [("GET", "/status"), ("POST", "/db/query")]
    assert client.current == node.addr


def test_no_node_left_is_one_line_naming_each(serve: Callable[..., Recorder]) -> None:
    a, b = refused(), refused()
    with pytest.raises(ClientError) as e:
        client_for(a, b).request("GET", "/status")
    assert str(e.value) == f"cannot reach {a}: connection refused; {b}: connection refused"


def test_checked_turns_statuses_into_errors(serve: Callable[..., Recorder]) -> None:
    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 401 if self.path == "/status" else 503
            body = b"" if code == 401 else b"leader not found\n"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = client_for(f"127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ClientError, match="^unauthorized: check -u user:password"):
            client.checked("GET", "/status")
        with pytest.raises(ClientError, match="^GET /nodes: HTTP 503: leader not found$"):
            client.checked("GET", "/nodes")
    finally:
        server.shutdown()
        server.server_close()


def test_discover_learns_the_cluster_leader_first(serve: Callable[..., Recorder]) -> None:
    nodes = {
        "nodes": [
            {"id": "n1", "api_addr": "http://127.0.0.1:4001", "leader": False, "reachable": True},
            {"id": "n2", "api_addr": "http://127.0.0.1:4011", "leader": False, "reachable": False},
            {"id": "n3", "api_addr": "https://127.0.0.1:4021/", "leader": True, "reachable": True},
        ]
    }
    node = serve(lambda path: nodes if path.startswith("/nodes") else {})
    client = client_for(node.addr, "10.0.0.9:4001")
    client.discover()
    assert node.seen[0][1] == "/nodes?nonvoters=&ver=2"
    # The node in use first; then the leader, the others reachable, the
    # alternatives given; n2 was unreachable.
    assert client.nodes == [node.addr, "127.0.0.1:4021", "127.0.0.1:4001", "10.0.0.9:4001"]


def test_discover_leaves_the_list_alone_when_nodes_is_refused(
    serve: Callable[..., Recorder],
) -> None:
    node = serve(lambda _path: ["not", "an", "object"])
    client = client_for(node.addr, "10.0.0.9:4001")
    client.discover()
    client_for(refused()).discover()  # unreachable: nothing raised either
    assert client.nodes == [node.addr, "10.0.0.9:4001"]


def parse(*argv: str) -> ConnectionOptions:
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    return options_from_args(parser.parse_args(list(argv)))


def test_flags_as_rqlite_cli_takes_them() -> None:
    opts = parse("-H", "db1", "-p", "4011", "-u", "bob:pw:with:colons", "-a", "db2:4001, db3:4001")
    assert (opts.host, opts.port, opts.user, opts.password) == (
        "db1",
        4011,
        "bob",
        "pw:with:colons",
    )
    assert opts.alternatives == ["db2:4001", "db3:4001"]
    assert Client(opts).nodes == ["db1:4011", "db2:4001", "db3:4001"]
    assert Client(parse("-H", "::1")).current == "[::1]:4001"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-u", "bob"], "-u/--user takes user:password"),
        (["-d", "cert.pem"], "--client-cert and --client-key go together"),
    ],
)
def test_bad_flags_are_one_line_errors(argv: list[str], message: str) -> None:
    with pytest.raises(ClientError, match=message):
        parse(*argv)
