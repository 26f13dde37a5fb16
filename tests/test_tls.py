"""TLS between nodes (the Raft port) and on the HTTP API: who gets in, and
certificates renewed on disk (tls.py, transport.py, http/server.py)."""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rqlite_py import tls, transport, wire
from rqlite_py.raft.types import Message, MsgType, NodeId, Term
from tests.certs import Authority, Files
from tests.system.node import Node, free_port, wait_for


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "ca")


def node_tls(files: Files, ca: Authority, **kw: object) -> tls.NodeTls:
    return tls.node_tls(tls.Identity(files.cert, files.key), ca.path, **kw)  # type: ignore[arg-type]


class Peer:
    """A Transport listening on loopback, recording what it receives."""

    def __init__(self, node: str, node_tls_: tls.NodeTls | None) -> None:
        self.addr = f"127.0.0.1:{free_port()}"
        self.got: queue.Queue[Message] = queue.Queue()
        self.t = transport.Transport(
            NodeId(node),
            self.addr,
            self.addr,
            on_message=lambda m, more: self.got.put(m),
            on_call=lambda r: {"ok": True, "echo": r.get("x")},
            on_unreachable=lambda n: None,
            connect_timeout_s=2.0,
            tls=node_tls_,
        )
        self.t.listen()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for p in made:
        p.t.stop()


def heartbeat(to: str) -> Message:
    return Message(MsgType.HEARTBEAT, NodeId("a"), NodeId(to), Term(3))


def test_nodes_talk_over_mutual_tls(tmp_path: Path, ca: Authority, peers: list[Peer]) -> None:
    a_tls = node_tls(ca.issue(tmp_path, "node-a"), ca, verify_client=True)
    b_tls = node_tls(ca.issue(tmp_path, "node-b"), ca, verify_client=True)
    a, b = Peer("a", a_tls), Peer("b", b_tls)
    peers += [a, b]
    a.t.set_peers({NodeId("b"): b.addr})
    a.t.send(heartbeat("b"))
    assert b.got.get(timeout=10).term == 3
    assert transport.call(b.addr, {"op": "x", "x": 7}, 5, a_tls) == {"ok": True, "echo": 7}


@pytest.mark.parametrize("who", ["plain", "other CA", "no certificate"])
def test_a_peer_without_a_valid_certificate_cannot_call_or_inject(
    tmp_path: Path, ca: Authority, peers: list[Peer], who: str
) -> None:
    b = Peer("b", node_tls(ca.issue(tmp_path, "node-b"), ca, verify_client=True))
    peers.append(b)
    if who == "plain":
        # Raw frames, as an attacker without TLS would send them: the
        # handshake fails, and the connection closes (after a TLS alert).
        host, port = b.addr.split(":")
        with socket.create_connection((host, int(port)), 5) as s:
            frame = wire.frame(wire.KIND_RAFT, wire.encode_message(heartbeat("b")))
            s.sendall(wire.PREAMBLE + frame)
            s.settimeout(5)
            with contextlib.suppress(ConnectionError):
                while s.recv(1 << 16):
                    pass
    else:
        if who == "other CA":
            rogue = Authority.create(tmp_path / "rogue", "rogue CA")
            files = rogue.issue(tmp_path / "r", "x")
            client = tls.client_context(tls.Identity(files.cert, files.key), ca.path)
        else:
            client = tls.client_context(None, ca.path)
        with pytest.raises(transport.TransportError):
            transport.call(b.addr, {"op": "x"}, 5, tls.NodeTls(client, client))
    wait_for("the refusal counted", lambda: b.t.bad_handshakes >= 1, 5)
    assert b.got.empty()


def test_a_server_with_a_certificate_from_another_ca_is_not_trusted(
    tmp_path: Path, ca: Authority, peers: list[Peer]
) -> None:
    rogue = Authority.create(tmp_path / "rogue", "rogue CA")
    b = Peer("b", node_tls(rogue.issue(tmp_path / "r", "node-b"), rogue))
    peers.append(b)
    with pytest.raises(transport.TransportError, match="CERTIFICATE_VERIFY_FAILED"):
        transport.call(b.addr, {"op": "x"}, 5, node_tls(ca.issue(tmp_path, "node-a"), ca))
    # -node-no-verify: encrypted, not authenticated.
    insecure = node_tls(ca.issue(tmp_path, "node-a2"), ca, no_verify=True)
    assert transport.call(b.addr, {"op": "x", "x": 1}, 5, insecure)["ok"] is True


def test_common_name_and_server_name_checks(
    tmp_path: Path, ca: Authority, peers: list[Peer]
) -> None:
    b = Peer(
        "b",
        node_tls(ca.issue(tmp_path, "node-b"), ca, verify_client=True, common_name="cluster-1"),
    )
    peers.append(b)
    wrong = node_tls(ca.issue(tmp_path, "node-a"), ca)  # CN node-a
    with pytest.raises(transport.TransportError):
        transport.call(b.addr, {"op": "x"}, 5, wrong)
    assert transport.call(b.addr, {"op": "x"}, 5, node_tls(ca.issue(tmp_path, "cluster-1"), ca))[
        "ok"
    ]
    # The server's certificate must name what -node-verify-server-name says.
    c = Peer("c", node_tls(ca.issue(tmp_path / "c", "node-c", hosts=("db.internal",)), ca))
    peers.append(c)
    with pytest.raises(transport.TransportError, match="IP address mismatch|match"):
        transport.call(c.addr, {"op": "x"}, 5, wrong)
    named = node_tls(ca.issue(tmp_path / "d", "node-d"), ca, server_name="db.internal")
    assert transport.call(c.addr, {"op": "x"}, 5, named)["ok"]


def test_a_renewed_certificate_is_served_to_new_connections(
    tmp_path: Path, ca: Authority, peers: list[Peer]
) -> None:
    first = ca.issue(tmp_path / "v1", "node-b", serial=1001)
    live = Files(str(tmp_path / "live.crt"), str(tmp_path / "live.key"))
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    b_tls = node_tls(live, ca)
    b = Peer("b", b_tls)
    peers.append(b)
    reloader = tls.Reloader(tls.Identity(live.cert, live.key), [b_tls.server, b_tls.client])
    assert _served_serial(b.addr, ca) == 1001
    assert not reloader.check()  # nothing changed
    second = ca.issue(tmp_path / "v2", "node-b", serial=2002)
    shutil.copy(second.cert, live.cert)
    shutil.copy(second.key, live.key)
    assert reloader.check()
    assert _served_serial(b.addr, ca) == 2002
    # A broken pair is refused and the current one kept.
    Path(live.key).write_text("not a key")
    assert not reloader.check()
    assert _served_serial(b.addr, ca) == 2002


def _served_serial(addr: str, ca: Authority) -> int:
    from cryptography import x509

    ctx = tls.client_context(None, ca.path)
    host, port = addr.split(":")
    with (
        socket.create_connection((host, int(port)), 5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as s,
    ):
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


# --- HTTPS (a real node) ------------------------------------------------------------


def https_node(tmp_path: Path, ca: Authority, *extra: str) -> Node:
    files = ca.issue(tmp_path / "srv", "api")
    node = Node(tmp_path / "n1", *files.https_flags(ca), *extra)
    node.use_https(ca.path, ca.issue(tmp_path / "admin", "alice").pair)
    return node.start()


def test_https_with_client_certificates(tmp_path: Path, ca: Authority) -> None:
    node = https_node(tmp_path, ca, "-http-verify-client")
    try:
        client = ca.issue(tmp_path / "cli", "carol").pair
        r = requests.get(node.url + "/status", verify=ca.path, cert=client, timeout=10)
        assert r.status_code == 200
        assert r.json()["store"]["nodes"][0]["api_addr"].startswith("https://")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(node.url + "/status", timeout=10)  # not trusting our CA
        with pytest.raises(requests.exceptions.RequestException):
            requests.get(node.url + "/status", verify=ca.path, timeout=10)  # no client cert
        with pytest.raises(requests.ConnectionError):
            requests.get(node.url.replace("https", "http") + "/status", timeout=10)
    finally:
        node.stop()


def test_https_checks_the_clients_common_name(tmp_path: Path, ca: Authority) -> None:
    node = https_node(tmp_path, ca, "-http-verify-client", "-http-verify-common-name", "alice")
    try:
        ok = node.get("/status")  # the session's certificate names alice
        assert ok.status_code == 200
        bob = ca.issue(tmp_path / "b", "bob").pair
        with pytest.raises(requests.ConnectionError):
            requests.get(node.url + "/status", verify=ca.path, cert=bob, timeout=10)
        assert "refusing an HTTPS client whose certificate names 'bob'" in node.logs()
    finally:
        node.stop()


def test_a_bad_certificate_file_is_a_clear_error(tmp_path: Path, ca: Authority) -> None:
    (tmp_path / "bad.crt").write_text("nonsense")
    with pytest.raises(tls.TlsError, match="cannot load certificate"):
        tls.server_context(tls.Identity(str(tmp_path / "bad.crt"), str(tmp_path / "bad.crt")))
    files = ca.issue(tmp_path, "n")
    with pytest.raises(tls.TlsError, match="cannot load CA certificate"):
        tls.server_context(tls.Identity(*files.pair), str(tmp_path / "missing-ca.pem"))
    assert isinstance(tls.client_context(None), ssl.SSLContext)


def test_a_node_serves_a_renewed_https_certificate_without_restarting(
    tmp_path: Path, ca: Authority
) -> None:
    live = Files(str(tmp_path / "live.crt"), str(tmp_path / "live.key"))
    first = ca.issue(tmp_path / "v1", "api", serial=1001)
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    node = Node(tmp_path / "n1", "-http-cert", live.cert, "-http-key", live.key)
    node.use_https(ca.path)
    node.start()
    try:
        addr = f"127.0.0.1:{node.http_port}"
        assert _served_serial(addr, ca) == 1001
        second = ca.issue(tmp_path / "v2", "api", serial=2002)
        shutil.copy(second.key, live.key)
        shutil.copy(second.cert, live.cert)
        wait_for("the renewed certificate", lambda: _served_serial(addr, ca) == 2002, 20)
        assert node.get("/readyz").status_code == 200
        assert "reloaded certificate" in node.logs()
    finally:
        node.stop()
