"""A 3-node cluster with node-to-node TLS (mutual verification) and HTTPS
with client certificates, as real processes; a node whose certificate the
cluster's CA did not sign cannot join."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import requests

from rqlite_py import wire
from rqlite_py.raft.types import Message, MsgType, NodeId, Term
from tests.certs import Authority
from tests.system.node import FAST, LocalCluster, Node


def secure_node(tmp_path: Path, ca: Authority, name: str, *extra: str) -> Node:
    files = ca.issue(tmp_path / "certs" / name, name)
    node = Node(
        tmp_path / name,
        *FAST,
        "-node-cert",
        files.cert,
        "-node-key",
        files.key,
        "-node-ca-cert",
        ca.path,
        "-node-verify-client",
        *files.https_flags(ca, verify_client=True),
        *extra,
        node_id=name,
    )
    node.use_https(ca.path, files.pair)
    return node


def test_a_cluster_over_tls_replicates_forwards_and_refuses_strangers(tmp_path: Path) -> None:
    ca = Authority.create(tmp_path / "ca")
    first = secure_node(tmp_path, ca, "n1")
    others = [
        secure_node(tmp_path, ca, name, "-join", f"127.0.0.1:{first.raft_port}")
        for name in ("n2", "n3")
    ]
    cluster = LocalCluster.of([first, *others])
    rogue = Authority.create(tmp_path / "rogue", "rogue CA")
    stranger = secure_node(
        tmp_path, rogue, "n4", "-join", f"127.0.0.1:{first.raft_port}", "-join-attempts", "1"
    )
    try:
        cluster.start()
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        # Forwarded from the follower to the leader's HTTPS API, with its certificate.
        follower.execute("CREATE TABLE t(x)", ["INSERT INTO t VALUES(?)", 42])
        for n in cluster.nodes:
            got = n.query("SELECT x FROM t", "?level=strong")["results"][0]["values"]
            assert got == [[42]]
        nodes = leader.get("/nodes").json()
        assert all(v["api_addr"].startswith("https://") for v in nodes.values())
        assert all(v["reachable"] for v in nodes.values())
        # No client certificate: no answer.
        try:
            requests.get(leader.url + "/status", verify=ca.path, timeout=10)
            raise AssertionError("served a client without a certificate")
        except requests.exceptions.RequestException:
            pass

        stranger.start(wait=False)
        assert stranger.proc is not None
        assert stranger.proc.wait(60) != 0
        assert "failed to join" in stranger.logs()
        assert len(leader.get("/nodes").json()) == 3
        assert "TLS handshake failed" in first.logs()

        # A peer without credentials claiming a far higher term, in the clear.
        term = leader.get("/status").json()["store"]["raft"]["term"]
        forged = Message(MsgType.APPEND, NodeId("n2"), NodeId(leader.node_id), Term(term + 1000))
        with socket.create_connection(("127.0.0.1", leader.raft_port), 5) as s:
            s.sendall(wire.PREAMBLE + wire.frame(wire.KIND_RAFT, wire.encode_message(forged)))
            s.settimeout(10)
            with contextlib.suppress(ConnectionError):
                while s.recv(1 << 16):
                    pass
        follower.execute(["INSERT INTO t VALUES(?)", 43])
        raft = leader.get("/status").json()["store"]["raft"]
        assert raft["state"] == "Leader" and raft["term"] == term
    finally:
        stranger.stop()
        for n in cluster.nodes:
            n.stop()


def test_an_https_node_stops_at_once_though_a_client_keeps_a_connection_open(
    tmp_path: Path,
) -> None:
    ca = Authority.create(tmp_path)
    node = secure_node(tmp_path, ca, "n1").start()
    try:
        # The session keeps its connection in its pool, idle, as clients do.
        assert node.get("/status").status_code == 200
        started = time.monotonic()
        assert node.terminate(timeout_s=20) == 0
        # It waited for the client's TLS close_notify until uvicorn's grace
        # period (10 s) ran out.
        assert time.monotonic() - started < 5
    finally:
        node.stop()
