"""Queued writes (`/db/execute?queue`, API.md §c) on real processes: one node,
a cluster written through its followers, a cluster without quorum, and a
graceful stop that writes what is still queued."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from tests.system.conftest import NodeFactory
from tests.system.node import LocalCluster, Node, wait_for


def enqueue(node: Node, stmts: list[Any], params: str = "") -> int:
    r = node.post("/db/execute?queue" + params, json=stmts)
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    assert body["results"] == [] and set(body) == {"results", "sequence_number"}, body
    return body["sequence_number"]


def flushed(node: Node) -> int:
    return node.get("/status?key=http.queue._default.sequence_number").json()


def count(node: Node, table: str = "t") -> int | None:
    try:
        r = node.post("/db/query?level=none", json=[f"SELECT COUNT(*) FROM {table}"], timeout=2)
        return r.json()["results"][0]["values"][0][0]
    except (requests.RequestException, KeyError, IndexError, ValueError):
        return None


def test_single_node_queue_and_wait(node: Node) -> None:
    node.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER)")
    assert flushed(node) == 0
    seqs = [enqueue(node, [["INSERT INTO t(n) VALUES(?)", i]]) for i in range(20)]
    # Node-local, one per request, counting from the queue's creation in Unix ns.
    assert seqs == list(range(seqs[0], seqs[0] + 20))
    assert abs(seqs[0] - time.time_ns()) < 3600 * 10**9
    barrier = enqueue(node, [], "&wait")
    assert barrier == seqs[-1] + 1
    assert count(node) == 20
    assert flushed(node) == barrier
    # wait with statements: written when it returns.
    seq = enqueue(node, [["INSERT INTO t(n) VALUES(?)", 99]], "&wait&timeout=10s")
    assert count(node) == 21 and flushed(node) == seq


def test_queued_writes_through_every_node_reach_every_node(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    leader.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, node TEXT, i INTEGER)")
    per_node = 40
    failures: list[BaseException] = []

    def writer(n: Node) -> None:
        try:
            for i in range(per_node):
                enqueue(n, [["INSERT INTO t(node, i) VALUES(?, ?)", n.node_id, i]])
            enqueue(n, [], "&wait")  # everything this node queued is written
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in cluster3.nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    total = per_node * len(cluster3.nodes)
    assert count(leader) == total  # the barriers returned: already on the leader
    for n in cluster3.nodes:
        wait_for(f"{n.node_id} to hold every row", lambda n=n: count(n) == total)
        assert flushed(n) > 0


def test_without_quorum_wait_times_out_and_the_write_lands_later(
    cluster3: LocalCluster,
) -> None:
    leader = cluster3.leader()
    leader.execute("CREATE TABLE t (x INTEGER)")
    others = [n for n in cluster3.nodes if n is not leader]
    for n in others:
        n.kill()
    wait_for(
        "the lone node to lose its leader",
        lambda: leader.get("/status?key=store.leader.node_id").json() == "",
    )
    r = leader.post("/db/execute?queue", json=[["INSERT INTO t VALUES(?)", 1]])
    assert (r.status_code, r.text) == (503, "leader not found\n")
    seq = enqueue(leader, [["INSERT INTO t VALUES(?)", 1]], "&noleader")
    r = leader.post(
        "/db/execute?queue&wait&noleader&timeout=300ms", json=[["INSERT INTO t VALUES(?)", 2]]
    )
    assert (r.status_code, r.text) == (408, "queue wait timeout\n")
    assert r.headers["Content-Type"].startswith("text/plain")
    assert flushed(leader) < seq
    # The queue keeps retrying; once there is a quorum again, both land everywhere.
    for n in others:
        n.start(wait=False)
    cluster3.leader()
    for n in cluster3.nodes:
        wait_for(f"{n.node_id} to hold both rows", lambda n=n: count(n) == 2, 30)
    wait_for("the sequence number to move on", lambda: flushed(leader) >= seq + 1)


def test_graceful_stop_writes_what_is_queued(node_factory: NodeFactory) -> None:
    node = node_factory("-write-queue-timeout", "1h", "-write-queue-batch-size", "1000")
    status = node.get("/status?key=http.queue._default").json()
    assert (status["batch_size"], status["max_size"]) == (1000, 1024)
    node.execute("CREATE TABLE t (x INTEGER)")
    for i in range(5):
        enqueue(node, [["INSERT INTO t VALUES(?)", i]])
    assert count(node) == 0  # neither 1000 requests nor an hour yet
    assert node.terminate() == 0
    node.start()
    assert count(node) == 5
