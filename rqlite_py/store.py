"""What the HTTP layer calls: execute, query and request by consistency
level, plus the node's status. It owns the Raft driver, the log store and
the database, and it is where SQL is checked and rewritten before it enters
the log (rqlite rewrites non-determinism on the node that receives it).
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import TypeVar

from . import command, db, sql
from .command import Command, Kind, Statement
from .driver import Driver, RaftStatus, Timing
from .fsm import StateMachine, remove_database_files
from .logstore import LogStore
from .raft.core import NotLeaderError
from .raft.storage import bootstrap_entry
from .raft.types import ConfState, HardState, Index, NodeId, Role, Term
from .results import Response, Result

log = logging.getLogger(__name__)
T = TypeVar("T")

# VM steps per second of db_timeout for writes: a deterministic stand-in for
# wall-clock time, so every node interrupts a runaway write at the same step.
STEPS_PER_SECOND = 20_000_000


class StoreError(Exception):
    """A request-level error, reported as {"results":[],"error":...} (200)."""


class DisallowedPragmaError(StoreError):
    def __init__(self) -> None:
        super().__init__("disallowed pragma")


class StaleReadError(StoreError):
    def __init__(self) -> None:
        super().__init__("stale read")


class NotReadyError(StoreError):
    def __init__(self) -> None:
        super().__init__("store not ready")


class LeaderNotFoundError(Exception):
    """No leader is known: 503 `leader not found`."""

    def __init__(self) -> None:
        super().__init__("leader not found")


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


class Store:
    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        os.makedirs(cfg.data_dir, exist_ok=True)
        self.db_path = os.path.join(cfg.data_dir, "db.sqlite")
        self.logstore = LogStore(os.path.join(cfg.data_dir, "raft.db"))
        # The database is derived from the log: rebuilt on every start, so
        # whatever a crash left in it is never applied twice (fsm.py).
        remove_database_files(self.db_path)
        self.db = db.Database(
            self.db_path, foreign_keys=cfg.foreign_keys, max_readers=cfg.max_readers
        )
        self.fsm = StateMachine(self.db)
        if self.logstore.is_empty():
            self._bootstrap()
        timing = Timing.from_timeouts(cfg.heartbeat_timeout_s, cfg.election_timeout_s)
        self.driver = Driver(cfg.node_id, self.logstore, self.fsm, timing)
        self.started_at = time.time()
        # Not ready until the log committed before this start is re-applied,
        # so a freshly restarted node never serves a half-rebuilt database.
        self._startup_commit = self.logstore.hard_state().commit

    def _bootstrap(self) -> None:
        conf = ConfState.of([self.cfg.node_id])
        self.logstore.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
        log.info("bootstrapped a single-node cluster as %s", self.cfg.node_id)

    def open(self) -> None:
        self.driver.start()
        if self.driver.core.conf.voters == (self.cfg.node_id,):
            self.driver.campaign()  # alone: no need to wait for an election timeout

    def close(self) -> None:
        self.driver.stop()
        self.logstore.close()
        self.db.close()

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
            and raft.leader != ""
            and raft.applied_index >= self._startup_commit
        )

    def wait_for_leader(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.raft.leader:
                return True
            time.sleep(0.01)
        return False

    # -- writes -----------------------------------------------------------------
    def execute(self, statements: Sequence[Statement], opts: SqlOptions) -> Response:
        stmts = self._prepare(statements, opts, rewrite=True)
        if not stmts:
            return Response()
        return self._through_log(Kind.EXECUTE, stmts, opts)

    def _through_log(self, kind: Kind, stmts: list[Statement], opts: SqlOptions) -> Response:
        self._require_leader()
        cmd = Command(kind, tuple(stmts), opts.transaction, self._step_budget(opts))
        index, results = self._wait(self.driver.propose(command.encode(cmd)))
        return Response(results=results, raft_index=index)

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

    def _local_read(self, stmts: list[Statement], opts: SqlOptions) -> list[Result]:
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
            self._require_leader()
            timeout = read.linearizable_timeout_s or self.cfg.apply_timeout_s
            index = self._wait(self.driver.read_index(), timeout)
            if not self.driver.wait_applied(index, timeout):
                raise StoreError(f"index {index}: timeout waiting for fsm")

    def _check_freshness(self, read: ReadOptions) -> None:
        """`none` with `freshness`: refuse if this follower has not heard
        from a leader for longer than the bound (ignored on the leader)."""
        if read.freshness_s <= 0 or self.is_leader():
            return
        status = self.raft
        if not status.leader or time.monotonic() - status.last_contact > read.freshness_s:
            raise StaleReadError()
        if read.freshness_strict and status.applied_index < status.commit_index:
            raise StaleReadError()

    # -- helpers ----------------------------------------------------------------
    def _prepare(
        self, statements: Sequence[Statement], opts: SqlOptions, *, rewrite: bool
    ) -> list[Statement]:
        out = []
        for s in statements:
            if sql.is_empty(s.sql):
                continue
            if sql.is_disallowed_pragma(s.sql):
                raise DisallowedPragmaError()
            if opts.noparse:
                out.append(s)
                continue
            text = s.sql
            if rewrite:
                text = sql.rewrite(
                    text, rewrite_random=not opts.norwrandom, rewrite_time=not opts.norwtime
                )
            out.append(replace(s, sql=text, returning=sql.has_returning(text)))
        return out

    def _require_leader(self) -> None:
        status = self.raft
        if status.role is Role.LEADER:
            return
        if not status.leader:
            raise LeaderNotFoundError()
        raise NotLeaderHere(status.leader)

    def _wait(self, fut: Future[T], timeout_s: float | None = None) -> T:
        try:
            return fut.result(timeout=timeout_s or self.cfg.apply_timeout_s)
        except FutureTimeout as e:
            raise StoreError("timeout waiting for the Raft log to apply") from e
        except NotLeaderError as e:
            if e.leader:
                raise NotLeaderHere(e.leader) from e
            raise LeaderNotFoundError() from e
