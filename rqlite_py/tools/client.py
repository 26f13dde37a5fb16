"""The HTTP client the shell, backup and restore tools share: one set of
connection options (rqlite's CLI flags: host, port, scheme, user, TLS),
one error type, and moving to another node when the one in use is lost.

A follower forwards writes and reads to the leader, so any live node
serves; the client still prefers the leader (one hop less) and, when its
node stops answering, tries the others it knows of: those given with
--alternatives and those the cluster reported in /nodes.

Only what is safe to send twice is sent again after it may have reached a
node (requests' rule: retry only what never left). A write whose
connection broke after it was sent may have been applied, even committed
by the cluster after its node died, so it is never resent elsewhere.
"""

from __future__ import annotations

import argparse
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, InsecureRequestWarning, NameResolutionError

from ..cluster import never_sent

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a connection before trying the next node: a host
that is down answers nothing, and the whole request timeout (30 s) per
dead node would stall a failover."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods resent to another node by default after a failure that may have
reached the node; a caller says when another method is safe too."""


class ClientError(Exception):
    """A failure to show the operator as it is: no traceback, one line."""


@dataclass
class ConnectionOptions:
    host: str = "127.0.0.1"
    port: int = 4001
    scheme: str = "http"
    user: str | None = None
    password: str | None = None
    ca_cert: str | None = None
    insecure: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    alternatives: list[str] = field(default_factory=list)
    """Other nodes' host:port, tried when the first is lost."""
    timeout_s: float = 30.0


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """rqlite's CLI flags for reaching a node."""
    parser.add_argument("-H", "--host", default="127.0.0.1", help="node host (127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=4001, help="node HTTP port (4001)")
    parser.add_argument("-s", "--scheme", choices=("http", "https"), default="http")
    parser.add_argument("-u", "--user", help="basic auth as user:password")
    parser.add_argument("-c", "--ca-cert", help="CA certificate that signs the node's")
    parser.add_argument("-i", "--insecure", action="store_true", help="skip TLS verification")
    parser.add_argument("-d", "--client-cert", help="client certificate for mutual TLS")
    parser.add_argument("-k", "--client-key", help="client key for mutual TLS")
    parser.add_argument(
        "-a", "--alternatives", default="", help="other nodes to try, host:port,host:port"
    )
    parser.add_argument(
        "-t", "--http-timeout", type=float, default=30.0, help="seconds per request (30)"
    )


def options_from_args(args: argparse.Namespace) -> ConnectionOptions:
    user = password = None
    if args.user:
        user, sep, password = args.user.partition(":")
        if not sep:
            raise ClientError("-u/--user takes user:password")
    if bool(args.client_cert) != bool(args.client_key):
        raise ClientError("--client-cert and --client-key go together")
    return ConnectionOptions(
        host=args.host,
        port=args.port,
        scheme=args.scheme,
        user=user,
        password=password,
        ca_cert=args.ca_cert,
        insecure=args.insecure,
        client_cert=args.client_cert,
        client_key=args.client_key,
        alternatives=[a.strip() for a in args.alternatives.split(",") if a.strip()],
        timeout_s=args.http_timeout,
    )


def host_port(host: str, port: int) -> str:
    """host:port as a URL holds it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class Client:
    def __init__(self, opts: ConnectionOptions) -> None:
        self.opts = opts
        self.nodes: list[str] = [host_port(opts.host, opts.port), *opts.alternatives]
        """Every node known, host:port; the first is the one in use."""
        self.session = requests.Session()
        if opts.user is not None:
            self.session.auth = (opts.user, opts.password or "")
        if opts.client_cert:
            self.session.cert = (opts.client_cert, opts.client_key or "")
        # Passed with every request: requests lets REQUESTS_CA_BUNDLE win
        # over a session's own setting.
        self.verify: bool | str = False if opts.insecure else (opts.ca_cert or True)
        if opts.insecure:
            # Asked for with -i: urllib3 would otherwise warn on every request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)

    @property
    def current(self) -> str:
        return self.nodes[0]

    def url(self, path: str, node: str | None = None) -> str:
        return f"{self.opts.scheme}://{node or self.current}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        resend: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One request, to the node in use or, if it cannot be reached, to
        the next that can (which then stays in use). Any answer, error
        statuses included, is returned; only unreachability raises.

        A request that failed before a connection was made never left, so
        it goes to the next node whatever it is. One that may have reached
        its node (the connection broke, or no answer came in time) goes on
        only if `resend` (default: for GET, HEAD and OPTIONS); otherwise
        the failure is raised as it is, since a write sent twice would be
        applied twice."""
        if resend is None:
            resend = method.upper() in SAFE_METHODS
        read_timeout_s = timeout_s or self.opts.timeout_s
        errors: list[str] = []
        for node in list(self.nodes):
            try:
                resp = self.session.request(
                    method,
                    self.url(path, node),
                    params=params,
                    timeout=(min(CONNECT_TIMEOUT_S, read_timeout_s), read_timeout_s),
                    verify=self.verify,
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.exceptions.SSLError as e:
                raise ClientError(f"TLS failed with {node}: {describe_tls(e)}") from e
            except (requests.ConnectionError, requests.Timeout) as e:
                if not resend and not never_sent(e):
                    raise ClientError(
                        f"{method} {path}: lost {node} after sending the request "
                        f"({describe(e)}); it may or may not have been applied, "
                        "so it was not sent again"
                    ) from e
                errors.append(f"{node}: {describe(e)}")
                continue
            if node != self.current:
                self.nodes.remove(node)
                self.nodes.insert(0, node)
            return resp
        hint = ""
        if self.opts.scheme == "https" and not self.opts.client_cert:
            # A node that requires client certificates just closes the
            # connection of a client that shows none.
            hint = " (if the nodes require a client certificate, give -d and -k)"
        raise ClientError("cannot reach " + "; ".join(errors) + hint)

    def checked(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A request whose non-2xx answer is an error."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code == 401:
            raise ClientError("unauthorized: check -u user:password and its permissions")
        if resp.status_code >= 300:
            body = resp.text.strip() or resp.reason
            raise ClientError(f"{method} {path}: HTTP {resp.status_code}: {body}")
        return resp

    def discover(self) -> None:
        """Learn the cluster's other nodes from /nodes, so that a lost
        node has somewhere to fail over to (the leader first). Best effort: a
        node that refuses (permissions) or an old server leaves the list
        as it was."""
        try:
            resp = self.request("GET", "/nodes", params={"nonvoters": "", "ver": "2"})
        except ClientError:
            return
        if resp.status_code != 200:
            return
        try:
            doc = resp.json()
        except ValueError:
            return
        found = doc.get("nodes") if isinstance(doc, dict) else None
        if not isinstance(found, list):
            return
        addrs = []
        nodes = [n for n in found if isinstance(n, dict)]
        for node in sorted(nodes, key=lambda n: not n.get("leader")):
            api = str(node.get("api_addr") or "")
            hostport = api.split("://", 1)[-1].rstrip("/")
            if hostport and node.get("reachable", True):
                addrs.append(hostport)
        # The node in use stays in use; the others follow, leader first.
        rest = [a for a in addrs + self.nodes[1:] if a != self.current]
        self.nodes = [self.current, *dict.fromkeys(rest)]


def describe(e: requests.RequestException) -> str:
    """A few words for a transport failure, instead of urllib3's paragraph."""
    reason = getattr(e.args[0], "reason", None) if e.args else None
    if isinstance(reason, NameResolutionError):
        return "host not found"
    if isinstance(e, requests.ConnectTimeout):
        return "timed out connecting"
    if isinstance(e, requests.ReadTimeout):
        return "no answer in time"
    if isinstance(reason, ConnectTimeoutError):
        return "connection refused" if "refused" in str(reason).lower() else "cannot connect"
    return "connection lost"


def describe_tls(e: requests.exceptions.SSLError) -> str:
    """OpenSSL's reason ("certificate verify failed: self-signed
    certificate"), without urllib3's wrapping and the C source location."""
    reason = getattr(e.args[0], "reason", None) if e.args else None
    inner = reason.args[0] if reason is not None and reason.args else e
    text = re.sub(r"^\[SSL: [A-Z_]+\] ", "", str(inner))
    return re.sub(r" \(_ssl\.c:\d+\)$", "", text)
