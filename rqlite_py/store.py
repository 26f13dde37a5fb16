"""What the HTTP layer calls: execute, query and request by consistency
level, plus the node's status. It owns the Raft driver, the log store and
the database, and it is where SQL is checked and rewritten before it enters
the log (rqlite rewrites non-determinism on the node that receives it).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from . import command, db, sql
from .auth import CredentialStore
from .cluster import Cluster, HttpsClient, JoinError
from .command import Command, Kind, Run, Statement, Statements, add_statement
from .disk import DiskError, guarded
from .driver import Driver, LeadershipLostError, RaftStatus, ShutdownError, Timing
from .fsm import StateMachine, remove_database_files
from .logstore import LogStore
from .metrics import NodeMetrics, Reading
from .raft.core import (
    ConfChangeError,
    ConfChangePendingError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
)
from .raft.storage import bootstrap_entry
from .raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    HardState,
    Index,
    NodeId,
    Role,
    SnapshotMeta,
    Term,
)
from .results import Response, Result
from .snapshots import SnapshotStore
from .tls import NodeTls
from .transport import Transport, TransportError
from .write_queue import QueueClosedError, QueueConfig, WriteQueue

log = logging.getLogger(__name__)
T = TypeVar("T")


# VM steps per second of db_timeout for writes: a deterministic stand-in for
# wall-clock time, so every node interrupts a runaway write at the same step.
STEPS_PER_SECOND = 20_000_000

QUEUE_WAIT_TIMEOUT_S = 30.0
"""How long `queue&wait` waits when the request names no `timeout` (rqlite's)."""
QUEUE_FORWARD_TIMEOUT_S = 30.0
"""A follower's wait for the leader's answer to a forwarded batch (rqlite's)."""
QUEUE_DRAIN_S = 5.0
"""On a graceful stop, how long queued writes may take to be written."""


class StoreError(Exception):
    """A request-level error, reported as {"results":[],"error":...} (200)."""


class DisallowedPragmaError(StoreError):
    def __init__(self) -> None:
        super().__init__("disallowed pragma")


class StaleReadError(StoreError):
    def __init__(self) -> None:
        super().__init__("stale read")


class InvalidSQLiteError(ValueError):
    """POST /boot with something that is not a SQLite file: 400."""

    def __init__(self) -> None:
        super().__init__("invalid SQLite data")


class NotSingleNodeError(Exception):
    """POST /boot on a node of a cluster: 503."""

    def __init__(self) -> None:
        super().__init__("not single-node")


class LeaderNotFoundError(Exception):
    """No leader is known: 503 `leader not found`."""

    def __init__(self) -> None:
        super().__init__("leader not found")


class NoStatementsError(ValueError):
    """A queued write with no statements and no `wait`: 400."""

    def __init__(self) -> None:
        super().__init__("no statements")


class NotLeaderHere(Exception):  # noqa: N818 - a routing signal, not a failure
    """This node is not the leader; the HTTP layer forwards or redirects."""

    def __init__(self, leader: NodeId) -> None:
        super().__init__(f"not leader (leader {leader})")
        self.leader = leader


class Level(enum.Enum):
    NONE = "none"
    WEAK = "weak"
    LINEARIZABLE = "linearizable"
    STRONG = "strong"
    AUTO = "auto"

    @staticmethod
    def parse(text: str | None) -> Level:
        """Unknown or absent levels mean `weak` (rqlite's default)."""
        try:
            return Level((text or "weak").lower())
        except ValueError:
            return Level.WEAK


@dataclass(frozen=True, slots=True)
class SqlOptions:
    transaction: bool = False
    db_timeout_s: float = 0.0
    noparse: bool = False
    norwrandom: bool = False
    norwtime: bool = False
    qualify_columns: bool = False


@dataclass(frozen=True, slots=True)
class ReadOptions:
    level: Level = Level.WEAK
    freshness_s: float = 0.0
    freshness_strict: bool = False
    linearizable_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    data_dir: str
    node_id: NodeId
    raft_addr: str
    http_addr: str
    heartbeat_timeout_s: float = 1.0
    election_timeout_s: float = 1.0
    apply_timeout_s: float = 10.0
    foreign_keys: bool = False
    max_readers: int = 256
    raft_bind_addr: str = ""
    """Where to listen for peers (default: raft_addr, the advertised one)."""
    join: tuple[str, ...] = ()
    join_attempts: int = 5
    join_interval_s: float = 3.0
    non_voter: bool = False
    connect_timeout_s: float = 5.0
    bootstrap_expect: int = 0
    bootstrap_expect_timeout_s: float = 120.0
    snap_threshold: int = 8192
    """Snapshot after this many entries are applied since the last (-raft-snap)."""
    trailing_logs: int = 10240
    """Entries kept after a snapshot for followers that lag a little."""
    snap_interval_s: float = 10.0
    compress_snapshots: bool = False
    reap_voter_timeout_s: float = 0.0
    reap_learner_timeout_s: float = 0.0
    snap_wal_bytes: int = 4 << 20
    write_queue_capacity: int = 1024
    write_queue_batch_size: int = 128
    write_queue_timeout_s: float = 0.05
    write_queue_tx: bool = False
    sql_allow_external: bool = False
    """-sql-allow-external: ATTACH, VACUUM INTO, load_extension() (authorizer.py)."""
    auth: CredentialStore | None = None
    """-auth: peers' joins, notifications and removals need its permissions."""
    join_as: tuple[str, str] | None = None
    """-join-as: the (username, password) this node's own calls carry."""
    node_tls: NodeTls | None = None
    """-node-cert: TLS on every connection between nodes."""
    https: HttpsClient | None = None
    """-http-cert: the API is HTTPS, and forwarding goes to the leader's."""


class Store:
    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        os.makedirs(cfg.data_dir, exist_ok=True)
        self.db_path = os.path.join(cfg.data_dir, "db.sqlite")
        self.logstore = LogStore(os.path.join(cfg.data_dir, "raft.db"))
        self.snapshots = SnapshotStore(os.path.join(cfg.data_dir, "snapshots"))
        self.staging_dir = os.path.join(cfg.data_dir, "incoming")
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        os.makedirs(self.staging_dir)
        # The database is derived from the latest snapshot and the log after
        # it: rebuilt on every start, so whatever a crash left in the file is
        # never applied twice (fsm.py).
        snap = self.logstore.snapshot_meta()
        self.reused_at_start = self._reusable(snap.index)
        if self.reused_at_start:
            # The file holds exactly the snapshot's state: drop what came
            # after it (the WAL) and replay that from the log instead.
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.db_path + suffix)
        else:
            remove_database_files(self.db_path)
            if snap.index:
                snap_file = self.snapshots.find(snap)
                self.snapshots.verify(snap_file)
                shutil.copyfile(snap_file.path, self.db_path)
        self.db = db.Database(
            self.db_path,
            foreign_keys=cfg.foreign_keys,
            max_readers=cfg.max_readers,
            allow_external=cfg.sql_allow_external,
        )
        self.fsm = StateMachine(self.db)
        self.fsm.applied_index = snap.index
        self.fsm.conf = snap.conf
        self.restored_at_start = bool(snap.index) and not self.reused_at_start
        peers = os.path.join(cfg.data_dir, "raft", "peers.json")
        recovering = os.path.exists(peers)
        if recovering:
            self._recover(peers)
        fresh = self.logstore.is_empty()
        if fresh and not cfg.join:
            self._bootstrap()
        # A fresh node with -join starts empty and learns everything from the
        # leader; a restarted member needs no join at all.
        self._needs_join = fresh and bool(cfg.join)
        self.cluster = Cluster(
            cfg.node_id,
            cfg.raft_addr,
            cfg.http_addr,
            cfg.connect_timeout_s,
            cfg.join_as,
            cfg.node_tls,
            cfg.https,
        )
        self.transport = Transport(
            cfg.node_id,
            cfg.raft_addr,
            cfg.raft_bind_addr or cfg.raft_addr,
            on_message=lambda m, more: self.driver.deliver(m, more),
            on_call=self._on_call,
            on_unreachable=lambda n: self.driver.report_unreachable(n),
            on_snapshot=lambda m, path: self.driver.receive_snapshot(m, path),
            staging_dir=self.staging_dir,
            compress_snapshots=cfg.compress_snapshots,
            tls=cfg.node_tls,
            connect_timeout_s=cfg.connect_timeout_s,
        )
        self._closed = threading.Event()
        self._notified: dict[NodeId, str] = {}
        self._notified_lock = threading.Lock()
        self.metrics = NodeMetrics()
        self.metrics.read_at_scrape(self._readings)
        self.driver = self._make_driver()
        alone = self.driver.core.conf.voters == (cfg.node_id,)
        if cfg.join and not fresh and alone and not recovering:
            raise StoreError(
                "this node already runs its own single-node cluster; "
                "it cannot join another (remove its data directory to join)"
            )
        self.started_at = time.time()
        self.stats: Counter[str] = Counter()
        # Not ready until the log committed before this start is re-applied,
        # so a freshly restarted node never serves a half-rebuilt database.
        self._startup_commit = self.logstore.hard_state().commit
        self.write_queue = WriteQueue(
            self._submit_queued,
            QueueConfig(
                capacity=cfg.write_queue_capacity,
                batch_size=cfg.write_queue_batch_size,
                timeout_s=cfg.write_queue_timeout_s,
                transaction=cfg.write_queue_tx,
            ),
        )

    def _recover(self, peers_path: str) -> None:
        """Quorum loss: an operator wrote raft/peers.json with the members
        that remain. Apply everything in the log, write a snapshot there with
        that configuration and nothing after it, then rename the file to
        peers.info so that this happens once (as hashicorp/raft's
        RecoverCluster and rqlite do)."""
        try:
            with open(peers_path) as f:
                peers = json.load(f)
            voters = [p["id"] for p in peers if not p.get("non_voter", False)]
            learners = [p["id"] for p in peers if p.get("non_voter", False)]
            conf = ConfState.of(voters, learners, {p["id"]: p["address"] for p in peers})
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StoreError(f"cannot read {peers_path}: {e}") from e
        if not conf.voters:
            raise StoreError(f"{peers_path} names no voter")
        ls = self.logstore
        last = ls.last_index()
        if last > self.fsm.applied_index:
            self.fsm.apply(ls.entries(Index(self.fsm.applied_index + 1), Index(last + 1), 1 << 62))
        if not self.db.checkpoint(db.BUSY_TIMEOUT_MS):
            raise StoreError("recovery: cannot checkpoint the database")
        meta = SnapshotMeta(last, ls.term(last), conf)
        tmp = self.snapshots.tmp_path(meta)
        shutil.copyfile(self.db_path, tmp)
        self.snapshots.commit(meta, tmp)
        ls.set_snapshot(meta, self.db.fingerprint())
        ls.compact(last)
        hs = ls.hard_state()
        ls.save((), HardState(hs.term, hs.vote, last))
        self.fsm.conf = conf
        os.replace(peers_path, peers_path[: -len(".json")] + ".info")
        log.warning("recovered from peers.json: members now %s", ", ".join(conf.members()))

    def _reusable(self, snap_index: int) -> bool:
        """Is the database file exactly as the latest snapshot left it?"""
        fp = self.logstore.db_fingerprint()
        if not snap_index or fp is None or fp[0] != snap_index:
            return False
        try:
            st = os.stat(self.db_path)
        except OSError:
            return False
        return (st.st_size, st.st_mtime_ns) == fp[1:]

    def _make_driver(self) -> Driver:
        timing = Timing.from_timeouts(self.cfg.heartbeat_timeout_s, self.cfg.election_timeout_s)
        return Driver(
            self.cfg.node_id,
            self.logstore,
            self.fsm,
            timing,
            send=self.transport.send,
            on_conf_change=lambda conf: self.transport.set_peers(dict(conf.addrs)),
            snapshots=self.snapshots,
            send_snapshot=self.transport.send_snapshot,
            snap_threshold=self.cfg.snap_threshold,
            trailing_logs=self.cfg.trailing_logs,
            snap_interval_s=self.cfg.snap_interval_s,
            snap_wal_bytes=self.cfg.snap_wal_bytes,
            metrics=self.metrics,
        )

    def _bootstrap(self) -> None:
        conf = ConfState.of([self.cfg.node_id], addrs={self.cfg.node_id: self.cfg.raft_addr})
        self.logstore.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
        log.info("bootstrapped a single-node cluster as %s", self.cfg.node_id)

    def open(self) -> None:
        self.transport.listen()
        self.write_queue.start()
        if self._needs_join and self.cfg.bootstrap_expect:
            return  # join() starts Raft once the cluster exists (or is made here)
        self._start_raft()

    def _start_raft(self) -> None:
        if self.cfg.reap_voter_timeout_s or self.cfg.reap_learner_timeout_s:
            threading.Thread(target=self._reap_loop, name="reaper", daemon=True).start()
        self.driver.start()
        if self.driver.core.conf.voters == (self.cfg.node_id,):
            self.driver.campaign()  # alone: no need to wait for an election timeout

    def join(self) -> None:
        """Join the cluster named by -join, if this node is new to it."""
        if not self._needs_join:
            return
        cfg = self.cfg
        if cfg.bootstrap_expect:
            self._join_or_bootstrap()
        else:
            self.cluster.join(cfg.join, cfg.join_attempts, cfg.join_interval_s, not cfg.non_voter)
        self._needs_join = False

    def _join_or_bootstrap(self) -> None:
        """-bootstrap-expect N: join the cluster if one exists; otherwise tell
        every target we are here, and once N nodes have met, bootstrap a
        cluster of all of them. Nodes that bootstrap together write the
        same first entry, so it does not matter how many of them do."""
        cfg = self.cfg
        with self._notified_lock:
            self._notified[cfg.node_id] = cfg.raft_addr
        deadline = time.monotonic() + cfg.bootstrap_expect_timeout_s
        hello = {"op": "notify", "id": cfg.node_id, "addr": cfg.raft_addr}
        while time.monotonic() < deadline:
            try:
                self.cluster.join(cfg.join, 1, 0.0, not cfg.non_voter)
                self._start_raft()
                return
            except JoinError:
                pass
            for target in cfg.join:
                with contextlib.suppress(TransportError):
                    self.cluster.call(target, hello, cfg.connect_timeout_s)
            with self._notified_lock:
                known = dict(self._notified)
            if len(known) >= cfg.bootstrap_expect:
                conf = ConfState.of(list(known), addrs=known)
                self.logstore.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
                log.info("bootstrapped a cluster of %s", ", ".join(sorted(known)))
                self.driver = self._make_driver()
                self._start_raft()
                return
            time.sleep(cfg.join_interval_s)
        raise JoinError(
            f"bootstrap-expect {cfg.bootstrap_expect}: no cluster formed within "
            f"{cfg.bootstrap_expect_timeout_s:g}s"
        )

    # -- backup and load ------------------------------------------------------------
    def backup(
        self, path: str, *, fmt: str, vacuum: bool, tables: Sequence[str], noleader: bool
    ) -> None:
        if fmt not in ("binary", "sql", "delete"):
            raise StoreError(f"unknown backup format {fmt!r}")
        if vacuum and fmt != "binary":
            raise StoreError("vacuum is only supported with the binary format")
        if not noleader:
            self._require_leader()
        with guarded():
            self.db.backup(path, fmt=fmt, vacuum=vacuum, tables=tables)

    def load(self, data: bytes) -> Response:
        """A SQLite file replaces the database on every node, through the
        log; SQL text runs as one statement string, undone on error."""
        self._require_leader()
        if data.startswith(db.SQLITE_HEADER):
            # One piece at a time: each Ready then carries at most one piece,
            # so persisting it never stalls the Raft loop long enough to
            # cost the leader its lease. The last piece replaces the database.
            index, results = Index(0), []
            for chunk in command.encode_load_chunks(data, os.urandom(16)):
                index, results = self._wait(self.driver.propose(chunk))
            return Response(results=results, raft_index=index)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise StoreError("load: body is neither a SQLite file nor UTF-8 SQL") from e
        cmd = Command(Kind.LOAD_SQL, (Statement(text),))
        index, results = self._wait(self.driver.propose(command.encode(cmd), cmd))
        return Response(results=results, raft_index=index)

    def boot(self, data: bytes) -> None:
        """POST /boot: a single node takes the file as its database directly
        (no log entry), then snapshots so that the file is what it restarts from."""
        if not data.startswith(db.SQLITE_HEADER):
            raise InvalidSQLiteError()
        raft = self.raft
        if len(raft.voters) + len(raft.learners) != 1:
            raise NotSingleNodeError()
        self._require_leader()
        with guarded():
            fd, tmp = tempfile.mkstemp(suffix=".boot.sqlite", dir=self.cfg.data_dir)
        try:
            with guarded(), os.fdopen(fd, "wb") as f:
                f.write(data)
            self._wait(self.driver.boot(tmp))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)

    def snapshot(self, trailing_logs: int | None = None) -> int:
        """Snapshot now and compact the log; 0 when there is nothing new."""
        return self._wait(self.driver.snapshot(trailing_logs))

    def reap_snapshots(self) -> int:
        return self.snapshots.reap()

    def transfer_leadership(self, target: NodeId = NONE) -> NodeId:
        """Start a transfer on the leader (forwarded there otherwise)."""
        self._require_leader()
        try:
            return self._wait(self.driver.transfer_leader(target))
        except RaftError as e:
            raise StoreError(str(e)) from e

    def step_down(self, timeout_s: float) -> bool:
        """Hand leadership to another voter before stopping (-raft-shutdown-stepdown)."""
        if not self.is_leader() or len(self.raft.voters) < 2:
            return False
        try:
            self._wait(self.driver.transfer_leader(), timeout_s)
        except (StoreError, RaftError, LeaderNotFoundError, NotLeaderHere, DiskError) as e:
            # Leadership may have moved on its own meanwhile: nothing to hand over.
            log.warning("leadership transfer before shutdown failed: %s", e)
            return False
        deadline = time.monotonic() + timeout_s
        while self.is_leader() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.is_leader()

    def close(self) -> None:
        # Queued writes first, while Raft and the peers are still there.
        self.write_queue.stop(QUEUE_DRAIN_S)
        self._closed.set()
        self.transport.stop()
        self.driver.stop()
        self.logstore.close()
        self.db.close()

    # -- peers ------------------------------------------------------------------
    def leader_raft_addr(self) -> str:
        raft = self.raft
        return raft.conf.addr(raft.leader) if raft.leader else ""

    def leader_api_addr(self, timeout_s: float = 5.0) -> str:
        """The leader's HTTP API URL (e.g. http://host:4001), or "" if unknown."""
        raft = self.raft
        if not raft.leader:
            return ""
        if raft.leader == self.cfg.node_id:
            return self.cluster.api_addr
        addr = raft.conf.addr(raft.leader)
        if not addr:
            return ""
        try:
            return self.cluster.meta(addr, timeout_s).api_addr
        except TransportError:
            self.cluster.forget(addr)
            return ""

    def _on_call(self, request: dict[str, object]) -> dict[str, object]:
        """Control calls from peers on the Raft port."""
        op = request.get("op")
        if op == "meta":
            return self.cluster.own_meta()
        if not self._call_allowed(op, request):
            return {"error": "unauthorized"}
        if op == "notify":
            node, addr = request.get("id"), request.get("addr")
            if not isinstance(node, str) or not isinstance(addr, str) or not node:
                return {"error": "notify needs a node id and a Raft address"}
            with self._notified_lock:
                self._notified[NodeId(node)] = addr
            return {"ok": True}
        if op in ("join", "remove"):
            if not self.is_leader():
                return {"error": "not leader", "leader": self.leader_raft_addr()}
            node = request.get("id")
            if not isinstance(node, str) or not node:
                return {"error": "missing node id"}
            if op == "remove":
                self.remove(NodeId(node))
                return {"ok": True}
            addr, voter = request.get("addr"), request.get("voter", True)
            if not isinstance(addr, str) or not isinstance(voter, bool):
                return {"error": "join needs a Raft address and a voter flag"}
            self.add(NodeId(node), addr, voter)
            return {"ok": True}
        return {"error": f"unknown call {op!r}"}

    def _call_allowed(self, op: object, request: dict[str, object]) -> bool:
        """With -auth, a peer's call must carry the credentials of a user
        allowed to make it (its -join-as), as rqlite's cluster service checks:
        joins and notifications need `join`, or `join-read-only` (also
        spelt `join-read-replica`) for a non-voter's join; removals need
        `remove`."""
        auth = self.cfg.auth
        if auth is None:
            return True
        user, password = request.get("username"), request.get("password")
        if not isinstance(user, str) or not isinstance(password, str):
            user = password = None
        if op == "remove":
            return auth.allowed(user, password, "remove")
        if auth.allowed(user, password, "join"):
            return True
        return (
            op == "join"
            and request.get("voter") is False
            and (
                auth.allowed(user, password, "join-read-only")
                or auth.allowed(user, password, "join-read-replica")
            )
        )

    def add(self, node: NodeId, addr: str, voter: bool) -> None:
        """Add (or re-add) a node, idempotently: the same id and address is a
        no-op; the same id or the same address replaces the old member."""
        conf = self.raft.conf
        if conf.addr(node) == addr and (
            (voter and node in conf.voters) or (not voter and node in conf.learners)
        ):
            self.stats["num_ignored_joins"] += 1
            return
        stale = [n for n, a in conf.addrs if a == addr and n != node]
        if conf.is_member(node) and conf.addr(node) != addr:
            stale.append(node)
        for old in stale:
            self.stats["num_removed_before_joins"] += 1
            self.remove(old)
        kind = ConfChangeType.ADD_VOTER if voter else ConfChangeType.ADD_LEARNER
        self._change(ConfChange(kind, node, addr))

    def remove(self, node: NodeId) -> None:
        """Remove a member (on the leader; forwarded there otherwise). The
        leader may remove itself: it hands over once the change commits."""
        self._require_leader()
        if not self.raft.conf.is_member(node):
            raise StoreError(f"node {node} is not a member of the cluster")
        self._change(ConfChange(ConfChangeType.REMOVE, node))

    def _reap_loop(self) -> None:
        """On the leader: remove members silent for longer than their
        -raft-reap-*-timeout. The clock starts again with each new leader."""
        while self.driver.fatal is None and not self._closed.wait(1.0):
            raft = self.raft
            if raft.role is not Role.LEADER:
                continue
            now = time.monotonic()
            for node in raft.voters + raft.learners:
                if node == self.cfg.node_id:
                    continue
                limit = (
                    self.cfg.reap_voter_timeout_s
                    if node in raft.voters
                    else self.cfg.reap_learner_timeout_s
                )
                silent = now - max(self.driver.heard.get(node, 0.0), self.driver.leader_since)
                if limit and silent > limit:
                    log.warning("reaping node %s: silent for %.1fs", node, silent)
                    try:
                        self.remove(node)
                    except (StoreError, NotLeaderHere, LeaderNotFoundError, DiskError) as e:
                        log.warning("reaping %s failed: %s", node, e)

    def remove_self(self, timeout_s: float) -> None:
        """-raft-cluster-remove-shutdown: leave the cluster before stopping."""
        raft = self.raft
        if len(raft.voters) + len(raft.learners) < 2 or not raft.leader:
            return
        if self.is_leader():
            self.remove(self.cfg.node_id)
            return
        answer = self.cluster.call(
            self.leader_raft_addr(), {"op": "remove", "id": self.cfg.node_id}, timeout_s
        )
        if not answer.get("ok"):
            raise StoreError(f"the leader refused to remove this node: {answer.get('error')}")

    def _change(self, change: ConfChange) -> None:
        """One membership change, retried while another is still committing."""
        deadline = time.monotonic() + self.cfg.apply_timeout_s
        while True:
            try:
                self._wait(self.driver.propose_conf_change(change))
                return
            except ConfChangePendingError as e:
                if time.monotonic() > deadline:
                    raise StoreError(f"timed out changing membership: {e}") from e
                time.sleep(0.05)
            except ConfChangeError as e:
                raise StoreError(str(e)) from e

    # -- state ------------------------------------------------------------------
    @property
    def raft(self) -> RaftStatus:
        return self.driver.status

    def is_leader(self) -> bool:
        return self.raft.role is Role.LEADER

    def is_ready(self) -> bool:
        raft = self.raft
        return (
            self.driver.fatal is None
            and self.driver.disk_error is None
            and raft.leader != ""
            and raft.applied_index >= self._startup_commit
        )

    # -- writes -----------------------------------------------------------------
    def execute(self, statements: Sequence[Statement], opts: SqlOptions) -> Response:
        begun = self.begin_execute(statements, opts)
        return begun if isinstance(begun, Response) else begun.wait()

    def begin_execute(
        self, statements: Sequence[Statement], opts: SqlOptions
    ) -> Response | Proposal:
        """Propose a write and return without waiting for it (or its
        Response at once, when there is nothing to write)."""
        stmts = self._prepare(statements, opts, rewrite=True)
        if not stmts:
            return Response()
        return self._propose(Kind.EXECUTE, stmts, opts)

    def _through_log(self, kind: Kind, stmts: Sequence[Statement], opts: SqlOptions) -> Response:
        return self._propose(kind, stmts, opts).wait()

    def _propose(self, kind: Kind, stmts: Sequence[Statement], opts: SqlOptions) -> Proposal:
        self._require_leader()
        cmd = Command(kind, Statements.of(stmts), opts.transaction, self._step_budget(opts))
        return Proposal(self, self.driver.propose(command.encode(cmd), cmd))

    # -- queued writes ----------------------------------------------------------
    def queue_write(
        self,
        statements: Sequence[Statement] | None,
        opts: SqlOptions,
        *,
        wait: bool,
        timeout_s: float = 0.0,
        noleader: bool = False,
    ) -> int:
        """`/db/execute?queue`: queue the statements, written later in a batch
        (write_queue.py); returns the request's sequence number. `None` means
        the body held no statements, allowed only with `wait` (a flush
        barrier). With `wait`, returns once the batch holding the request is
        written, or raises QueueWaitTimeoutError after `timeout_s` (default
        30 s). `transaction` and `db_timeout` are the queue's, not the
        request's; the rewrite options apply, here, once."""
        # Leader check first, as rqlite: a node that cannot see a cluster
        # should not take writes it may never be able to pass on.
        if not noleader and not self.raft.leader:
            raise LeaderNotFoundError()
        if statements is None:
            if not wait:
                raise NoStatementsError()
            statements = ()
        stmts = self._prepare(statements, opts, rewrite=True)
        try:
            return self.write_queue.write(
                stmts, wait=wait, timeout_s=timeout_s or QUEUE_WAIT_TIMEOUT_S
            )
        except QueueClosedError as e:
            raise ShutdownError("node is shutting down") from e

    def db_size(self) -> int:
        """The database file's size in bytes (0 while it is being replaced)."""
        try:
            return os.path.getsize(self.db_path)
        except OSError:
            return 0

    def _readings(self) -> list[Reading]:
        """/metrics: what Raft, the files and the write queue say now."""
        raft = self.raft
        queue = self.write_queue.stats()
        return [
            Reading("rqlite_raft_term", "Current Raft term", raft.term),
            Reading(
                "rqlite_raft_commit_index", "Highest log index known committed", raft.commit_index
            ),
            Reading(
                "rqlite_raft_applied_index",
                "Highest log index applied to SQLite",
                raft.applied_index,
            ),
            Reading("rqlite_raft_last_log_index", "Last index in the log", raft.last_log_index),
            Reading(
                "rqlite_raft_last_snapshot_index",
                "Index of the latest snapshot",
                self.logstore.snapshot_meta().index,
            ),
            *(
                Reading(
                    "rqlite_raft_state",
                    "1 for this node's Raft role, 0 for the others",
                    float(raft.role is role),
                    {"state": role.value},
                )
                for role in Role
            ),
            Reading("rqlite_raft_has_leader", "1 when a leader is known", float(bool(raft.leader))),
            Reading("rqlite_raft_voters", "Voters in the configuration", len(raft.voters)),
            Reading("rqlite_raft_nonvoters", "Non-voters in the configuration", len(raft.learners)),
            Reading(
                "rqlite_snapshots_installed",
                "Snapshots received from a leader and installed",
                self.driver.num_restores,
                counter=True,
            ),
            Reading(
                "rqlite_disk_stalls",
                "Times a disk error stalled this node's Raft loop",
                self.driver.num_disk_stalls,
                counter=True,
            ),
            Reading("rqlite_db_size_bytes", "SQLite database file size", self.db_size()),
            Reading("rqlite_db_wal_size_bytes", "SQLite WAL size", self.db.wal_bytes()),
            Reading("rqlite_raft_log_size_bytes", "Raft log file size", self.logstore.size_bytes()),
            Reading("rqlite_write_queue_depth", "Queued writes not yet proposed", queue["depth"]),
            Reading(
                "rqlite_ready", "1 when this node would answer /readyz with 200", self.is_ready()
            ),
        ]

    def queue_status(self) -> dict[str, int]:
        """/status `http.queue._default`: `sequence_number` is the highest
        one written so far."""
        return self.write_queue.stats()

    def _submit_queued(self, stmts: tuple[Statement, ...], transaction: bool) -> list[str]:
        """One batch of queued writes as one log entry: proposed here on the
        leader, forwarded to the leader's /db/execute from a follower. Raises
        on any failure (the queue retries); returns the statements' errors."""
        try:
            resp = self._through_log(Kind.EXECUTE, list(stmts), SqlOptions(transaction=transaction))
        except NotLeaderHere:
            return self._forward_queued(stmts, transaction)
        return [r.error for r in resp.results if r.error]

    def _forward_queued(self, stmts: tuple[Statement, ...], transaction: bool) -> list[str]:
        api = self.leader_api_addr()
        if not api:
            raise LeaderNotFoundError()
        # Already rewritten on this node: `noparse` keeps the leader from
        # doing it again.
        path = "/db/execute?noparse" + ("&transaction" if transaction else "")
        headers = {"Content-Type": "application/json"}
        r = self.cluster.forward(
            api, "POST", path, request_body(stmts), headers, QUEUE_FORWARD_TIMEOUT_S, 0
        )
        if r.status_code != 200:
            raise StoreError(f"leader at {api} answered {r.status_code}: {r.text.strip()}")
        answer = r.json()
        if answer.get("error"):
            raise StoreError(f"leader at {api}: {answer['error']}")
        return [str(res["error"]) for res in answer.get("results", []) if res.get("error")]

    def _step_budget(self, opts: SqlOptions) -> int:
        return int(opts.db_timeout_s * STEPS_PER_SECOND) if opts.db_timeout_s > 0 else 0

    # -- reads ------------------------------------------------------------------
    def query(
        self, statements: Sequence[Statement], opts: SqlOptions, read: ReadOptions
    ) -> Response:
        level = self._effective_level(read.level)
        if level is Level.STRONG:
            stmts = self._prepare(statements, opts, rewrite=True)
            return self._through_log(Kind.QUERY, stmts, opts) if stmts else Response()
        stmts = self._prepare(statements, opts, rewrite=False)
        self._check_read_level(level, read)
        return Response(results=self._local_read(stmts, opts))

    def begin_query(
        self, statements: Sequence[Statement], opts: SqlOptions, read: ReadOptions
    ) -> BriefRead | None:
        """`query` for the HTTP event loop, which must not block: the level's
        checks are made and, for a linearizable read, the read index asked
        for; the read itself runs once BriefRead.future is done. None when
        the read is not for the loop (strong, or a `db_timeout`); errors
        raise, and the caller leaves the request to `query`."""
        level = self._effective_level(read.level)
        if level is Level.STRONG or opts.db_timeout_s > 0:
            return None
        stmts = self._prepare(statements, opts, rewrite=False)
        if not stmts:
            return None
        if level is Level.LINEARIZABLE:
            return BriefRead(self, stmts, opts, *self._ask_read_index(read))
        self._check_read_level(level, read)
        return BriefRead(self, stmts, opts)

    def _local_read(self, stmts: Sequence[Statement], opts: SqlOptions) -> list[Result]:
        return self.db.query(
            stmts,
            transaction=opts.transaction,
            timeout_s=opts.db_timeout_s,
            qualify_columns=opts.qualify_columns,
        )

    def request(
        self, statements: Sequence[Statement], opts: SqlOptions, read: ReadOptions
    ) -> Response:
        """/db/request: all reads and not strong -> a local read with the
        level's checks; any write (or strong) -> one log entry for all."""
        level = self._effective_level(read.level)
        raw = self._prepare(statements, opts, rewrite=False)
        if not raw:
            return Response()
        if level is not Level.STRONG and not self.db.has_write(raw):
            self._check_read_level(level, read)
            return Response(results=self._local_read(raw, opts))
        stmts = self._prepare(statements, opts, rewrite=True)
        return self._through_log(Kind.REQUEST, stmts, opts)

    def _effective_level(self, level: Level) -> Level:
        if level is Level.AUTO:
            return Level.WEAK if self.cfg.node_id in self.raft.voters else Level.NONE
        return level

    def _check_read_level(self, level: Level, read: ReadOptions) -> None:
        if level is Level.NONE:
            self._check_freshness(read)
        elif level is Level.WEAK:
            self._require_leader()
        elif level is Level.LINEARIZABLE:
            self._await_read_index(*self._ask_read_index(read))

    def _ask_read_index(self, read: ReadOptions) -> tuple[Future[Index], float]:
        """A linearizable read's request for a read index, and how long it
        may take."""
        self._require_leader()
        return self.driver.read_index(), read.linearizable_timeout_s or self.cfg.apply_timeout_s

    def _await_read_index(self, future: Future[Index], timeout_s: float) -> None:
        """Until the read index is confirmed and applied here."""
        index = self._wait(future, timeout_s)
        if not self.driver.wait_applied(index, timeout_s):
            raise StoreError(f"index {index}: timeout waiting for fsm")

    def _check_freshness(self, read: ReadOptions) -> None:
        """`none` with `freshness`: refuse if this follower has not heard
        from a leader for longer than the bound (ignored on the leader)."""
        if read.freshness_s <= 0 or self.is_leader():
            return
        status = self.raft
        if not status.leader or time.monotonic() - status.last_contact > read.freshness_s:
            raise StaleReadError()
        # Strict: the data itself must be fresh too. It is as old as the last
        # moment this node had applied everything it knew to be committed.
        if read.freshness_strict and time.monotonic() - status.caught_up_at > read.freshness_s:
            raise StaleReadError()

    # -- helpers ----------------------------------------------------------------
    def _prepare(
        self, statements: Sequence[Statement], opts: SqlOptions, *, rewrite: bool
    ) -> Statements:
        runs: list[Run] = []
        # A bulk request repeats one SQL text with different parameters:
        # check each distinct text once, a run of it at a time. Only a text
        # that rewriting leaves unchanged is remembered (RANDOM() must get a
        # new value each time).
        plain: dict[str, bool] = {}
        for run in Statements.of(statements).runs:
            text = run.sql
            returning = plain.get(text)
            if returning is None:
                if sql.is_empty(text):
                    continue
                if sql.is_disallowed_pragma(text):
                    raise DisallowedPragmaError()
                if opts.noparse:
                    runs.append(run)
                    continue
                if rewrite and self._rewrites(run, opts, runs):
                    continue
                returning = sql.has_returning(text)
                plain[text] = returning
            if returning == run.returning:
                runs.append(run)
            else:
                runs.append(Run(text, run.rows, run.named, returning))
        return Statements(runs)

    @staticmethod
    def _rewrites(run: Run, opts: SqlOptions, out: list[Run]) -> bool:
        """If rewriting changes the run's text, add each of its statements,
        rewritten on its own, to `out` and say so."""

        def rewritten(text: str) -> str:
            return sql.rewrite(
                text, rewrite_random=not opts.norwrandom, rewrite_time=not opts.norwtime
            )

        first = rewritten(run.sql)
        if first is run.sql:
            return False
        for j in range(len(run.rows)):
            s = run.statement(j)
            text = first if j == 0 else rewritten(s.sql)
            add_statement(out, text, s.params, s.named, sql.has_returning(text))
        return True

    def _require_leader(self) -> None:
        """Leader-only work goes on here, or is forwarded. A leader whose disk
        fails refuses it at once (DiskError): it cannot commit, and it may
        have been deposed without knowing it, so even a weak read could be
        stale for as long as the disk fails."""
        status = self.raft
        if status.role is Role.LEADER:
            error = self.driver.disk_error
            if error is not None:
                raise error
            return
        if not status.leader:
            raise LeaderNotFoundError()
        raise NotLeaderHere(status.leader)

    def _wait(self, fut: Future[T], timeout_s: float | None = None) -> T:
        try:
            return fut.result(timeout=self.cfg.apply_timeout_s if timeout_s is None else timeout_s)
        except FutureTimeout as e:
            raise StoreError("timeout waiting for the Raft log to apply") from e
        except LeadershipLostError as e:
            # hashicorp/raft's words, which rqlite passes on.
            raise StoreError("leadership lost while committing log") from e
        except ProposalDroppedError as e:
            raise StoreError("leadership transfer in progress") from e
        except NotLeaderError as e:
            if e.leader:
                raise NotLeaderHere(e.leader) from e
            raise LeaderNotFoundError() from e


class Proposal:
    """A write in the log, not yet known to be applied. `wait` blocks for
    its Response; an event loop can instead wait for `future` and then call
    `response`, with no thread blocked meanwhile."""

    def __init__(self, store: Store, future: Future[tuple[int, list[Result]]]) -> None:
        self.store = store
        self.future = future
        self.timeout_s = store.cfg.apply_timeout_s

    def wait(self) -> Response:
        return self._response(self.timeout_s)

    def response(self) -> Response:
        """The outcome now: a timeout error if the entry is not applied yet."""
        return self._response(0.0)

    def _response(self, timeout_s: float) -> Response:
        index, results = self.store._wait(self.future, timeout_s)
        return Response(results=results, raft_index=index)


@dataclass
class BriefRead:
    """A read begun on the event loop (Store.begin_query). Once `future`
    (the read index of a linearizable read; None for the other levels) is
    done, `response` runs it there if it is brief; if not, `response_slow`
    runs it on a worker thread."""

    MAX_STEPS: ClassVar[int] = 5000
    """SQLite VM steps a read may take on the event loop: a point read takes
    tens. Serving reads there saves the hand-over to a worker thread and
    back, which at 32 clients cost more than the read itself (issue 7)."""

    store: Store
    stmts: Sequence[Statement]
    opts: SqlOptions
    future: Future[Index] | None = None
    timeout_s: float = 0.0

    def response(self) -> Response | None:
        """The read's Response, or None when it is not brief. Raises what a
        linearizable read failed with (a timeout if `future` is not done)."""
        if self.future is not None:
            self.store._await_read_index(self.future, 0.0)  # done: no waiting
        results = self.store.db.query_briefly(
            self.stmts,
            transaction=self.opts.transaction,
            qualify_columns=self.opts.qualify_columns,
            max_steps=self.MAX_STEPS,
        )
        return None if results is None else Response(results=results)

    def response_slow(self) -> Response:
        """The same read with no step limit (a worker thread). Its read
        index, if any, was confirmed already: reading a later state is
        still linearizable."""
        return Response(results=self.store._local_read(self.stmts, self.opts))


def request_body(stmts: Sequence[Statement]) -> bytes:
    """Statements as an rqlite JSON request body (API.md §a.3), the inverse of
    http/body.py: BLOB parameters as `x'..'` literals, named ones as one object."""

    def value(v: object) -> object:
        return f"x'{v.hex().upper()}'" if isinstance(v, bytes) else v

    items: list[object] = []
    for s in stmts:
        if not s.params and not s.named:
            items.append(s.sql)
            continue
        item: list[object] = [s.sql, *(value(v) for v in s.params)]
        if s.named:
            item.append({k: value(v) for k, v in s.named})
        items.append(item)
    return json.dumps(items, separators=(",", ":")).encode()
