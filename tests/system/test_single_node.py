"""A real `python -m rqlite_py` process: start, serve, crash, restart."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from tests.system.conftest import NodeFactory
from tests.system.node import ROOT, Node, wait_for


def test_serves_sql_over_http(node: Node) -> None:
    node.execute("CREATE TABLE foo (id INTEGER NOT NULL PRIMARY KEY, name TEXT)")
    node.execute(["INSERT INTO foo(name) VALUES(?)", "fiona"])
    assert node.query("SELECT * FROM foo") == {
        "results": [
            {"columns": ["id", "name"], "types": ["integer", "text"], "values": [[1, "fiona"]]}
        ]
    }
    assert node.get("/status").json()["store"]["raft"]["state"] == "Leader"


def test_every_acknowledged_write_survives_kill_9_exactly_once(node_factory: NodeFactory) -> None:
    node = node_factory()
    node.execute("CREATE TABLE w (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    acked: list[int] = []
    stop = threading.Event()

    def writer(first: int) -> None:
        s = requests.Session()
        i = first
        while not stop.is_set():
            try:
                r = s.post(
                    node.url + "/db/execute", json=[["INSERT INTO w(n) VALUES(?)", i]], timeout=5
                )
            except requests.RequestException:
                return  # the node is gone; this write's fate is unknown
            if r.status_code == 200 and "error" not in r.json()["results"][0]:
                acked.append(i)
            i += 4

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    wait_for("200 acknowledged writes", lambda: len(acked) >= 200, timeout_s=60)
    node.kill()
    stop.set()
    for t in threads:
        t.join(10)
    node.start()
    rows = node.query("SELECT n, count(*) FROM w GROUP BY n HAVING count(*) > 1")["results"][0]
    assert "values" not in rows, f"applied twice: {rows['values'][:5]}"
    have = {v[0] for v in node.query("SELECT n FROM w")["results"][0]["values"]}
    missing = sorted(set(acked) - have)
    assert not missing, f"acknowledged but lost: {missing[:10]}"


def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(node_factory: NodeFactory) -> None:
    node = node_factory()
    node.execute("CREATE TABLE t (x)")
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 3000000) "
        "SELECT count(*) FROM c"
    )
    result: dict[str, object] = {}

    def long_query() -> None:
        result["r"] = requests.post(node.url + "/db/query", json=[slow], timeout=30).json()

    t = threading.Thread(target=long_query)
    t.start()
    wait_for("the long query to be in flight", lambda: t.is_alive())
    node.execute(["INSERT INTO t VALUES(?)", 1])
    assert node.terminate() == 0
    t.join(30)
    assert result["r"] == {
        "results": [{"columns": ["count(*)"], "types": ["integer"], "values": [[3000000]]}]
    }
    assert "stopped" in node.logs()
    node.start()
    assert node.query("SELECT x FROM t")["results"][0]["values"] == [[1]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill is Linux's")
def test_sigterm_delivered_to_any_thread_stops_the_node(node_factory: NodeFactory) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads, and
    Python runs the handler only in the main thread: a main thread asleep
    in an untimed wait never ran it (a node that did not stop)."""
    import ctypes
    import os

    node = node_factory()
    assert node.proc is not None
    pid = node.proc.pid
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert others
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, others[0], 15) == 0, os.strerror(ctypes.get_errno())
    assert node.proc.wait(20) == 0
    assert "received SIGTERM" in node.logs() and "stopped" in node.logs()


def test_garbage_on_the_http_port_does_not_stop_the_node(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=5) as s:
        s.sendall(b"\x00\xff GARBAGE \r\n\r\n" * 100)
        s.recv(1024)
    node.execute("CREATE TABLE ok (x)")
    assert node.get("/readyz").status_code == 200


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rqlite_py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_cli_rejects_unknown_flags_and_bad_values(tmp_path: Path) -> None:
    bad = run_cli("-no-such-flag", str(tmp_path))
    assert bad.returncode == 2 and "no-such-flag" in bad.stderr
    bad = run_cli("-raft-election-timeout", "soon", str(tmp_path))
    assert bad.returncode == 2 and "raft-election-timeout" in bad.stderr
    bad = run_cli("-http-addr", "localhost:4002", str(tmp_path))
    assert bad.returncode == 2


def test_cli_version_and_help() -> None:
    v = run_cli("-version")
    assert v.returncode == 0 and v.stdout.startswith("rqlite-py v")
    h = run_cli("-h")
    assert h.returncode == 0 and "-http-addr" in h.stdout


def test_unimplemented_flag_warns_and_node_still_serves(node_factory: NodeFactory) -> None:
    node = node_factory("-auto-vacuum-int", "1h")
    node.execute("CREATE TABLE t (x)")
    wait_for("the warning in the log", lambda: "-auto-vacuum-int" in node.logs())
    assert "not implemented" in node.logs()
