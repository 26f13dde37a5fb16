"""A real node against hostile clients and peers (issue 8): slow and idle
connections, oversized headers and bodies, huge and deeply nested requests,
invalid UTF-8, garbage on the Raft port. Each gets a clear error or a closed
connection; the node keeps serving, its memory stays bounded, and every
acknowledged write is still there."""

from __future__ import annotations

import json
import os
import random
import socket
import struct
from pathlib import Path

import requests
from hypothesis import given, settings

from rqlite_py import wire
from rqlite_py.http.server import HEADER_TIMEOUT_S
from tests import fuzz_targets as ft
from tests.system.node import Node, wait_for


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def closed_by_peer(s: socket.socket) -> bool:
    """Has the other side closed `s` (EOF or reset)? Never blocks."""
    s.setblocking(False)
    try:
        return s.recv(1 << 16) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


def test_a_node_survives_hostile_http_clients(tmp_path: Path) -> None:
    node = Node(tmp_path / "n1", "-http-max-body-bytes", str(8 << 20)).start()
    assert node.proc is not None
    host, port = "127.0.0.1", node.http_port
    acknowledged = 0
    slow: list[socket.socket] = []
    try:
        node.execute("CREATE TABLE t(x)")
        # Slowloris: headers that never end, and connections that say nothing.
        for i in range(60):
            s = socket.create_connection((host, port), 5)
            if i % 2:
                s.sendall(b"POST /db/execute HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(s)
        # Meanwhile the node serves everyone else.
        for i in range(20):
            node.execute(["INSERT INTO t VALUES(?)", i])
            acknowledged += 1
        assert node.query("SELECT count(*) FROM t")["results"][0]["values"] == [[acknowledged]]

        # Headers of 2 MB: refused, connection closed.
        with socket.create_connection((host, port), 10) as s:
            big = b"X-Big: " + b"a" * (2 << 20) + b"\r\n"
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
            s.settimeout(10)
            head = s.recv(100)
            assert head.startswith(b"HTTP/1.1 400"), head
        # A body over -http-max-body-bytes.
        r = node.post("/db/execute", data=b"[" + b'"SELECT 1",' * (1 << 20) + b'"SELECT 1"]')
        assert r.status_code == 413 and r.text.strip() == "request body too large"
        # Twenty thousand statements in one request.
        many = [["INSERT INTO t VALUES(?)", i] for i in range(20_000)]
        r = node.post("/db/execute", json=many)
        assert r.status_code == 200 and len(r.json()["results"]) == 20_000
        acknowledged += 20_000
        # Nesting 200,000 deep, invalid UTF-8, not JSON at all.
        for data, ctype in (
            (b"[" * 200_000 + b"]" * 200_000, "application/json"),
            (b'["SELECT \xff\xfe"]', "application/json"),
            (b"SELECT \xff", "text/plain"),
            (os.urandom(4096), "application/json"),
        ):
            r = node.post("/db/execute", data=data, headers={"Content-Type": ctype})
            assert r.status_code == 400, (r.status_code, r.text[:200])
        r = node.post("/db/execute", data=b'[["INSERT INTO t VALUES(?)", 1e999]]')
        assert r.status_code in (200, 400)
        if r.status_code == 200 and "error" not in r.json()["results"][0]:
            acknowledged += 1

        # The slow connections are closed once their headers are overdue.
        wait_for(
            "slow connections closed",
            lambda: all(closed_by_peer(s) for s in slow),
            HEADER_TIMEOUT_S + 10,
        )
        assert node.query("SELECT count(*) FROM t")["results"][0]["values"] == [[acknowledged]]
        assert rss_mb(node.proc.pid) < 200
    finally:
        for s in slow:
            s.close()
        node.stop()


def test_garbage_on_the_raft_port_is_dropped_and_the_node_keeps_serving(tmp_path: Path) -> None:
    node = Node(tmp_path / "n1").start()
    assert node.proc is not None
    rng = random.Random(8)
    addr = ("127.0.0.1", node.raft_port)
    try:
        node.execute("CREATE TABLE t(x)", ["INSERT INTO t VALUES(1)"])
        term = node.get("/status").json()["store"]["raft"]["term"]
        attacks = [
            os.urandom(1000),  # not even the preamble
            wire.PREAMBLE + os.urandom(1000),
            wire.PREAMBLE + struct.pack(">IB", wire.MAX_FRAME_BYTES, wire.KIND_RAFT) + b"x" * 10,
            wire.PREAMBLE + struct.pack(">IB", 0xFFFFFFFF, wire.KIND_RAFT),
            wire.PREAMBLE + wire.frame(wire.KIND_RAFT, b"\x00" * 3),  # truncated message
            wire.PREAMBLE + wire.frame(wire.KIND_CALL, b"[not an object"),
            wire.PREAMBLE + wire.frame(wire.KIND_HELLO, json.dumps({"id": 7}).encode()),
            wire.PREAMBLE + wire.frame(99, b"x"),
        ]
        for _ in range(20):
            attacks.append(wire.PREAMBLE + bytes(rng.getrandbits(8) for _ in range(200)))
        for data in attacks:
            with socket.create_connection(addr, 5) as s:
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)  # then EOF: a truncated frame must not hang it
                    s.settimeout(10)
                    while s.recv(1 << 16):
                        pass
                except (ConnectionError, OSError) as e:
                    # The node may drop the connection before all was sent:
                    # sending or shutting down then fails (ENOTCONN, EPIPE).
                    assert not isinstance(e, TimeoutError), "the node held the connection"
        assert node.query("SELECT count(*) FROM t")["results"][0]["values"] == [[1]]
        node.execute(["INSERT INTO t VALUES(2)"])
        status = node.get("/status").json()["store"]
        assert status["raft"]["state"] == "Leader" and status["raft"]["term"] == term
        assert "dropping a connection that sent a bad frame" in node.logs()
        assert rss_mb(node.proc.pid) < 200
        # The HTTP port was never confused with it.
        assert requests.get(node.url + "/readyz", timeout=5).status_code == 200
    finally:
        node.stop()


def test_random_bytes_to_the_http_port_never_break_the_node(tmp_path: Path) -> None:
    """tests/fuzz_targets.raw_http through the node's real HTTP parser."""
    node = Node(tmp_path / "n1").start()
    assert node.proc is not None
    try:
        node.execute("CREATE TABLE t(x)")
        addr = ("127.0.0.1", node.http_port)

        @settings(max_examples=150, derandomize=True, deadline=None, database=None)
        @given(ft.raw_http())
        def fuzz(data: bytes) -> None:
            ft.http_wire(addr, data)

        fuzz()
        [[before]] = node.query("SELECT count(*) FROM t")["results"][0]["values"]
        node.execute(["INSERT INTO t VALUES(1)"])
        assert node.query("SELECT count(*) FROM t")["results"][0]["values"] == [[before + 1]]
        assert "Traceback" not in node.logs()
    finally:
        node.stop()
