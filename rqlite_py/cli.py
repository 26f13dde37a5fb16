"""The composition root: rqlited-style flags -> NodeConfig -> a running node.

HTTP starts before the store opens, as in rqlited, so /readyz can say what
is going on. SIGTERM and SIGINT stop the node gracefully: the HTTP server
finishes in-flight requests, then the Raft loop and the files are closed.
"""

from __future__ import annotations

import gc
import logging
import signal
import ssl
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType

from . import __version__, config, memory, tls
from .auth import AuthFileError, CredentialStore
from .cluster import HttpsClient, JoinError
from .db import DatabaseError
from .disk import DiskError
from .http.app import create_app
from .http.server import HttpServer
from .logstore import LogStoreError
from .raft.types import NodeId
from .snapshots import SnapshotError
from .store import Store, StoreConfig, StoreError
from .tools import shell

log = logging.getLogger("rqlite_py")

HTTP_THREADS_MAX = 256
SHUTDOWN_GRACE_S = 10.0
SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the GIL while another waits for it (see run)."""
STOP_POLL_S = 0.2
"""How soon a stop signal delivered to another thread is acted on."""


def split_host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def setup_logging(node_id: str, raft_level: str) -> None:
    """Everything to stderr, tagged with the node id; -raft-log-level sets
    the Raft loop's own level (rqlited's default is WARN)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{node_id}] %(name)s: %(message)s",
    )
    level = {"TRACE": "DEBUG", "WARN": "WARNING", "OFF": "CRITICAL"}.get(raft_level, raft_level)
    logging.getLogger("rqlite_py.driver").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["shell"]:
        # `rqlite-py shell` is rqlite-py-shell, the interactive client.
        return shell.main(args[1:])
    try:
        cfg, warnings = config.parse_args(args)
    except config.HelpRequested as h:
        print(h.usage)
        return 0
    except config.FlagError as e:
        print(f"rqlite-py: {e}", file=sys.stderr)
        return 2
    if cfg.show_version:
        print(f"rqlite-py v{__version__}")
        return 0
    setup_logging(cfg.node_id, cfg.raft_log_level)
    for w in warnings:
        log.warning(w)
    return run(cfg)


def run(cfg: config.NodeConfig) -> int:
    try:
        credentials, join_as = load_auth(cfg)
        secure = load_tls(cfg)
    except (AuthFileError, tls.TlsError) as e:
        log.error("%s", e)
        return 1
    store_cfg = StoreConfig(
        data_dir=cfg.data_dir,
        node_id=NodeId(cfg.node_id),
        raft_addr=cfg.raft_adv_addr,
        http_addr=cfg.http_adv_addr,
        heartbeat_timeout_s=cfg.raft_heartbeat_timeout_s,
        election_timeout_s=cfg.raft_election_timeout_s,
        apply_timeout_s=cfg.raft_apply_timeout_s,
        foreign_keys=cfg.fk,
        max_readers=cfg.db_max_ro_conns,
        raft_bind_addr=cfg.raft_addr,
        join=cfg.join,
        join_attempts=cfg.join_attempts,
        join_interval_s=cfg.join_interval_s,
        non_voter=cfg.raft_non_voter,
        connect_timeout_s=min(cfg.cluster_connect_timeout_s, 5.0),
        bootstrap_expect=cfg.bootstrap_expect,
        bootstrap_expect_timeout_s=cfg.bootstrap_expect_timeout_s,
        snap_threshold=cfg.raft_snap,
        trailing_logs=cfg.raft_snap + cfg.raft_snap // 4,
        snap_interval_s=cfg.raft_snap_interval_s,
        snap_wal_bytes=cfg.raft_snap_wal_size_bytes,
        compress_snapshots=cfg.compress_snap_transport,
        reap_voter_timeout_s=cfg.raft_reap_node_timeout_s,
        reap_learner_timeout_s=cfg.raft_reap_read_only_node_timeout_s,
        write_queue_capacity=cfg.write_queue_capacity,
        write_queue_batch_size=cfg.write_queue_batch_size,
        write_queue_timeout_s=cfg.write_queue_timeout_s,
        write_queue_tx=cfg.write_queue_tx,
        sql_allow_external=cfg.sql_allow_external,
        auth=credentials,
        join_as=join_as,
        node_tls=secure.node,
        https=secure.https,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        store = Store(store_cfg)
    except StoreError as e:
        log.error("%s", e)
        return 1
    except (LogStoreError, SnapshotError, DatabaseError, DiskError, OSError) as e:
        # A full or failing disk at start: nothing is half-done that the next
        # start does not redo (the database is rebuilt from snapshot and log).
        log.error("cannot open the data directory %s: %s", cfg.data_dir, e)
        return 1
    app = create_app(
        store,
        max_body_bytes=cfg.http_max_body_bytes,
        allow_origin=cfg.http_allow_origin,
        auth=credentials,
    )
    try:
        server = HttpServer(
            split_host_port(cfg.http_addr),
            app,
            max_threads=HTTP_THREADS_MAX,
            shutdown_timeout_s=SHUTDOWN_GRACE_S,
            ssl_context=secure.http,
            client_common_name=cfg.http_verify_common_name,
        )
    except OSError as e:
        log.error("cannot listen on %s: %s", cfg.http_addr, e)
        store.close()
        return 1
    server.start()
    for reloader in secure.reloaders:
        reloader.start()
    try:
        store.open()
        store.join()
    except (OSError, JoinError) as e:
        log.error("cannot start: %s", e)
        server.stop(SHUTDOWN_GRACE_S)
        store.close()
        return 1
    # The objects of a started node live as long as it does: keep them out
    # of every later collection, and collect young objects less often. A
    # full collection walks every object in the heap while holding the GIL,
    # which showed as write tail latency (issue 7: A/B at 32 clients, p99
    # 22 -> 19 ms, +9% writes/s).
    gc.freeze()
    gc.set_threshold(20_000, 20, 100)
    # A thread that wants the GIL waits until the holder's switch interval
    # ends. At 5 ms (Python's default) that wait sat on the path of single
    # writes; at 1 ms, an A/B of two 3-node clusters (5 alternating rounds)
    # gave one client +13% writes/s with p99 32 -> 3.4 ms, and 32 clients
    # +9% with p99 31 -> 20 ms; bulk writes within noise (issue 7).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    trimmer = memory.start_trimming()
    log.info(
        "node %s serving HTTP on %s, Raft on %s, data in %s",
        cfg.node_id,
        cfg.http_addr,
        cfg.raft_addr,
        cfg.data_dir,
    )
    # Waited for in short slices: Python runs a signal's handler only in the
    # main thread, between bytecodes, and the kernel may deliver SIGTERM to
    # any thread; an untimed wait would then sleep through it (seen: a node
    # that never stopped; tested with a signal sent to another thread).
    while not stop.wait(STOP_POLL_S):
        pass
    try:
        leave_or_hand_over(store, cfg)
    finally:
        # Whatever happened above, stop serving and close the files: a node
        # that was asked to stop must stop.
        server.stop(SHUTDOWN_GRACE_S + 1)
        store.close()
        if trimmer is not None:
            trimmer.stop()
        for reloader in secure.reloaders:
            reloader.stop()
    log.info("node %s stopped", cfg.node_id)
    return 0


def load_auth(
    cfg: config.NodeConfig,
) -> tuple[CredentialStore | None, tuple[str, str] | None]:
    """-auth's users, and -join-as's credentials from them."""
    if not cfg.auth:
        return None, None
    credentials = CredentialStore.load(cfg.auth)
    for user, perm in credentials.unknown_perms:
        log.warning("auth file: user %s has unknown permission %r (it grants nothing)", user, perm)
    if not cfg.join_as:
        return credentials, None
    password = credentials.password_of(cfg.join_as)
    if password is None:
        raise AuthFileError(
            f"-join-as {cfg.join_as}: the auth file holds no clear password for that user "
            "(a node must send the password itself, so a password_hash cannot serve)"
        )
    return credentials, (cfg.join_as, password)


@dataclass
class Secure:
    """What -http-cert and -node-cert made: TLS contexts, and the threads
    that reload renewed certificates into them."""

    http: ssl.SSLContext | None = None
    https: HttpsClient | None = None
    node: tls.NodeTls | None = None
    reloaders: list[tls.Reloader] = field(default_factory=list)


def load_tls(cfg: config.NodeConfig) -> Secure:
    out = Secure()
    if cfg.http_cert:
        identity = tls.Identity(cfg.http_cert, cfg.http_key)
        out.http = tls.server_context(identity, cfg.http_ca_cert, cfg.http_verify_client)
        # Forwarding to the leader's HTTPS API: its certificate is checked
        # against the same CA, and ours shown if it verifies clients.
        out.https = HttpsClient(cfg.http_ca_cert, (cfg.http_cert, cfg.http_key))
        out.reloaders.append(tls.Reloader(identity, [out.http]))
    if cfg.node_cert:
        identity = tls.Identity(cfg.node_cert, cfg.node_key)
        out.node = tls.node_tls(
            identity,
            cfg.node_ca_cert,
            no_verify=cfg.node_no_verify,
            verify_client=cfg.node_verify_client,
            server_name=cfg.node_verify_server_name,
            common_name=cfg.node_verify_common_name,
        )
        out.reloaders.append(tls.Reloader(identity, [out.node.server, out.node.client]))
    return out


def leave_or_hand_over(store: Store, cfg: config.NodeConfig) -> None:
    """Before stopping: leave the cluster (-raft-cluster-remove-shutdown) or
    hand leadership over (-raft-shutdown-stepdown). Best effort: failures
    are logged and the node stops anyway."""
    try:
        if cfg.raft_cluster_remove_shutdown:
            store.remove_self(cfg.raft_apply_timeout_s)
            log.info("removed this node from the cluster before shutting down")
        elif cfg.raft_shutdown_stepdown and store.step_down(cfg.raft_election_timeout_s * 5):
            log.info("handed leadership over before shutting down")
    except Exception as e:  # never let a courtesy to the cluster block a stop
        log.warning("could not leave the cluster or hand over leadership: %s", e)


if __name__ == "__main__":
    sys.exit(main())
