"""TLS for the HTTP API and between nodes (API.md §f, issue 8): contexts made
from the flags, and certificates reloaded when their files change.

A context's certificate can be replaced in place (SSLContext.load_cert_chain
again): connections made afterwards present the new one, connections open
meanwhile keep theirs. The CA is read once, at start, as in rqlite.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

RELOAD_CHECK_S = 5.0
"""How often the certificate and key files are looked at."""


class TlsError(Exception):
    """A certificate, key or CA file cannot be used."""


@dataclass(frozen=True)
class Identity:
    """A certificate and its key, as files."""

    cert: str
    key: str

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """What changes when either file is replaced or rewritten."""
        out = []
        for path in (self.cert, self.key):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((0, 0))
        return tuple(out)


def server_context(
    identity: Identity, ca_cert: str = "", verify_client: bool = False
) -> ssl.SSLContext:
    """A context for accepting TLS connections; with `verify_client`, each
    client must present a certificate signed by `ca_cert` (mutual TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_identity(ctx, identity)
    if ca_cert:
        _load_ca(ctx, ca_cert)
    elif verify_client:
        ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED if verify_client else ssl.CERT_NONE
    return ctx


def client_context(
    identity: Identity | None, ca_cert: str = "", verify: bool = True
) -> ssl.SSLContext:
    """A context for connecting: the server's certificate is checked against
    `ca_cert` (or the system's CAs) unless `verify` is off; `identity` is
    presented to servers that ask for a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity is not None:
        _load_identity(ctx, identity)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_cert:
        _load_ca(ctx, ca_cert)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def common_name(peercert: dict[str, object] | None) -> str:
    """The subject's common name in a certificate as SSLSocket.getpeercert()
    gives it ("" if there is none)."""
    if not peercert:
        return ""
    for rdn in peercert.get("subject", ()):  # type: ignore[union-attr]
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def _load_identity(ctx: ssl.SSLContext, identity: Identity) -> None:
    try:
        ctx.load_cert_chain(identity.cert, identity.key)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(
            f"cannot load certificate {identity.cert} with key {identity.key}: {e}"
        ) from e


def _load_ca(ctx: ssl.SSLContext, ca_cert: str) -> None:
    try:
        ctx.load_verify_locations(cafile=ca_cert)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"cannot load CA certificate {ca_cert}: {e}") from e


class Reloader:
    """Loads an identity's files into its contexts again when they change
    (a renewed certificate), from a thread of its own."""

    def __init__(self, identity: Identity, contexts: list[ssl.SSLContext]) -> None:
        self.identity = identity
        self.contexts = contexts
        self._stamp = identity.stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-reload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> bool:
        """Reload if the files changed; True if the contexts now hold new ones.
        A pair that does not load (a half-written file, a key that does not
        match) is logged and tried again at the next change."""
        stamp = self.identity.stamp()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            for ctx in self.contexts:
                _load_identity(ctx, self.identity)
        except TlsError as e:
            log.warning("keeping the current certificate: %s", e)
            return False
        log.info("reloaded certificate %s", self.identity.cert)
        return True

    def _run(self) -> None:
        while not self._stop.wait(RELOAD_CHECK_S):
            self.check()


@dataclass(frozen=True)
class NodeTls:
    """TLS on the Raft port (-node-* flags): every connection between nodes,
    Raft messages, snapshots and control calls alike."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    server_name: str = ""
    """-node-verify-server-name: the name peers' certificates must carry,
    instead of the host of the address dialled."""
    common_name: str = ""
    """-node-verify-common-name: the common name peers' certificates must carry."""

    def wrap_client(self, sock: socket.socket, host: str) -> ssl.SSLSocket:
        """The handshake as the connecting side (raises ssl.SSLError or OSError)."""
        tls_sock = self.client.wrap_socket(sock, server_hostname=self.server_name or host)
        self._check_name(tls_sock)
        return tls_sock

    def wrap_server(self, sock: socket.socket) -> ssl.SSLSocket:
        """The handshake as the accepting side (raises ssl.SSLError or OSError)."""
        tls_sock = self.server.wrap_socket(sock, server_side=True)
        if self.server.verify_mode == ssl.CERT_REQUIRED:
            self._check_name(tls_sock)
        return tls_sock

    def _check_name(self, sock: ssl.SSLSocket) -> None:
        if not self.common_name:
            return
        name = common_name(sock.getpeercert())
        if name != self.common_name:
            sock.close()
            raise ssl.SSLError(f"peer certificate names {name!r}, not {self.common_name!r}")


def node_tls(
    identity: Identity,
    ca_cert: str = "",
    *,
    no_verify: bool = False,
    verify_client: bool = False,
    server_name: str = "",
    common_name: str = "",
) -> NodeTls:
    return NodeTls(
        server=server_context(identity, ca_cert, verify_client),
        client=client_context(identity, ca_cert, verify=not no_verify),
        server_name=server_name,
        common_name=common_name,
    )
