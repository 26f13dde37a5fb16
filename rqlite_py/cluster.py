"""What a node does with its peers beyond Raft messages: joining a cluster,
learning a peer's HTTP address, and forwarding requests to the leader.

Forwarding uses `requests` with one Session per leader, a (connect, read)
timeout on every call, and retries only when the request provably never
left (a connection error): a read timeout on a forwarded write is an error,
never a resend, because the write may have been applied.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import requests
import urllib3

from . import __version__
from .raft.types import NodeId
from .tls import NodeTls
from .transport import TransportError, call

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Rqlite-Py-Forwarded"
"""Set on forwarded requests: a node never forwards one a second time, so a
request cannot bounce between nodes that disagree about the leader."""


class JoinError(Exception):
    """The node could not join any of the -join targets."""


@dataclass(frozen=True, slots=True)
class HttpsClient:
    """How a node forwarding to the leader's HTTPS API checks it, and what it
    presents when the leader verifies clients (its own -http-cert)."""

    ca_cert: str = ""
    """-http-ca-cert; the system's CAs when empty."""
    client_cert: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class NodeMeta:
    node_id: str
    api_addr: str
    raft_addr: str
    version: str


class Cluster:
    def __init__(
        self,
        node_id: NodeId,
        raft_addr: str,
        http_addr: str,
        connect_timeout_s: float,
        credentials: tuple[str, str] | None = None,
        node_tls: NodeTls | None = None,
        https: HttpsClient | None = None,
    ):
        self.node_id = node_id
        self.raft_addr = raft_addr
        self.http_addr = http_addr
        self.connect_timeout_s = connect_timeout_s
        self.node_tls = node_tls
        self.https = https
        """This node serves HTTPS; forwarded requests go to the leader's HTTPS
        API, with these settings."""
        self._credentials: dict[str, object] = (
            {} if credentials is None else {"username": credentials[0], "password": credentials[1]}
        )
        """-join-as: carried by this node's control calls, checked by the peer's -auth."""
        self._meta: dict[str, NodeMeta] = {}
        self._sessions: dict[str, requests.Session] = {}
        self._lock = threading.Lock()

    @property
    def api_addr(self) -> str:
        """This node's HTTP API as a URL (https:// with -http-cert)."""
        return f"{'https' if self.https is not None else 'http'}://{self.http_addr}"

    def own_meta(self) -> dict[str, object]:
        return {
            "id": self.node_id,
            "api_addr": self.api_addr,
            "addr": self.raft_addr,
            "version": f"v{__version__}",
        }

    def call(self, addr: str, request: dict[str, object], timeout_s: float) -> dict[str, object]:
        """A control call to a peer's Raft port, with this node's credentials."""
        return call(addr, {**request, **self._credentials}, timeout_s, self.node_tls)

    # -- metadata -------------------------------------------------------------
    def meta(self, raft_addr: str, timeout_s: float, fresh: bool = False) -> NodeMeta:
        """A peer's metadata, asked over its Raft port (cached)."""
        if not fresh:
            with self._lock:
                cached = self._meta.get(raft_addr)
            if cached is not None:
                return cached
        # Metadata needs no permission: no password on these frequent calls.
        answer = call(raft_addr, {"op": "meta"}, timeout_s, self.node_tls)
        if "error" in answer:
            raise TransportError(str(answer["error"]))
        m = NodeMeta(
            str(answer["id"]), str(answer["api_addr"]), str(answer["addr"]), str(answer["version"])
        )
        with self._lock:
            self._meta[raft_addr] = m
        return m

    def forget(self, raft_addr: str) -> None:
        with self._lock:
            self._meta.pop(raft_addr, None)

    # -- joining ----------------------------------------------------------------
    def join(self, targets: tuple[str, ...], attempts: int, interval_s: float, voter: bool) -> str:
        """Ask each target in turn to add this node, following "not leader"
        hints; returns the address that accepted."""
        request = {"op": "join", "id": self.node_id, "addr": self.raft_addr, "voter": voter}
        last_error = "no join targets"
        for attempt in range(max(1, attempts)):
            for target in targets:
                addr = target
                for _ in range(5):  # follow at most a few leader hints
                    try:
                        answer = self.call(addr, request, self.connect_timeout_s)
                    except TransportError as e:
                        last_error = str(e)
                        break
                    if answer.get("ok"):
                        log.info("joined the cluster via %s", addr)
                        return addr
                    last_error = f"{addr}: {answer.get('error', 'refused')}"
                    leader = answer.get("leader")
                    if not leader or leader == addr:
                        break
                    addr = str(leader)
            if attempt + 1 < attempts:
                log.warning("join attempt %d failed (%s); retrying", attempt + 1, last_error)
                time.sleep(interval_s)
        raise JoinError(f"failed to join cluster at {','.join(targets)}: {last_error}")

    # -- forwarding -------------------------------------------------------------
    def forward(
        self,
        api_addr: str,
        method: str,
        path_and_query: str,
        body: bytes,
        headers: dict[str, str],
        timeout_s: float,
        retries: int,
        *,
        stream: bool = False,
    ) -> requests.Response:
        """The leader's answer; with `stream`, its body is still to be read
        (from `raw`, and the response closed after)."""
        with self._lock:
            session = self._sessions.get(api_addr)
            if session is None:
                session = self._sessions[api_addr] = requests.Session()
                # Straight to the peer: no proxy from the environment, and no
                # REQUESTS_CA_BUNDLE overriding the CA set below (requests
                # lets that variable win over a session's own `verify`).
                session.trust_env = False
                if self.https is not None:
                    session.verify = self.https.ca_cert or True
                    session.cert = self.https.client_cert
        headers = {**headers, FORWARDED_HEADER: "1"}
        for attempt in range(retries + 1):
            try:
                return session.request(
                    method,
                    api_addr + path_and_query,
                    data=body,
                    headers=headers,
                    timeout=(self.connect_timeout_s, timeout_s),
                    allow_redirects=False,
                    stream=stream,
                )
            except requests.ConnectionError as e:
                if attempt == retries or not never_sent(e):
                    raise
        raise AssertionError("unreachable")


def never_sent(e: requests.RequestException) -> bool:
    """True only when no byte of the request can have reached the node: no
    connection was made (refused, not resolved, or timed out connecting)."""
    if isinstance(e, requests.ConnectTimeout):
        return True
    reason = getattr(e.args[0], "reason", None) if e.args else None
    # urllib3 2 derives NewConnectionError (refused, unreachable) and
    # NameResolutionError from ConnectTimeoutError.
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
