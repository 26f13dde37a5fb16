"""The IO loop around the pure Raft core.

One turn at a time owns the core (the `_turn` lock). The loop's thread ticks
it on a clock, feeds it proposals, read requests and peer messages from an
inbox, and carries out each Ready in the order of the contract (types.Ready):
send, persist and fsync, send what needed persistence, apply, advance. A
peer's message that finds the loop idle is carried out the same way by the
thread that read it (deliver), which saves a thread wake-up on the path of
every write. A proposal that finds the loop idle is stepped by the
proposing thread, which sends the appends and leaves the rest of that Ready
to the loop's thread (_propose_here). Callers on other threads get futures,
completed once their entry is applied (or their read may be served).

When the disk fails (full, I/O error), the Ready at hand is kept, never
skipped: the step that failed is tried again with a back-off, and nothing
after it happens until it succeeds. Meanwhile the core is not touched (no
call may be made between ready() and advance()): peer messages are dropped,
as a lossy network would, requests are refused at once with the DiskError,
and a stop request still stops the loop.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .command import Command
from .disk import DiskError, copy_paced, environmental, guarded
from .fsm import StateMachine
from .logstore import LogStore
from .metrics import NodeMetrics
from .raft.core import Config, NotLeaderError, RaftCore, RaftError
from .raft.types import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    Index,
    Message,
    MsgType,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
    Term,
)
from .results import Result
from .snapshots import SnapshotError, SnapshotStore

log = logging.getLogger(__name__)

BUSY_READERS_MS = 5000
"""How long a requested snapshot waits for readers to leave the WAL."""
PRECHECKPOINT_WALS = 8
"""A snapshot whose WAL has passed this many -raft-snap-wal-size is
preceded by a checkpoint beside writes (see _begin_precheckpoint)."""
PRECHECKPOINT_DEFAULT_BYTES = 32 << 20
"""The same when -raft-snap-wal-size is 0."""
COMMIT_DELAY_S = 0.01
"""How long a COMMIT message is held back for the next append or heartbeat
to the same peer, which carries the same news (see _send)."""
OVERLAP_BYTES = 4096
"""A single committed entry smaller than this is applied after a save, not
beside it (see _worth_overlapping)."""
RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
"""Back-off between attempts while the disk fails."""


class LeadershipLostError(RaftError):
    """The entry was overwritten by another leader's: it was never applied."""


class ShutdownError(RaftError):
    """The node is shutting down."""


@dataclass(frozen=True, slots=True)
class Timing:
    tick_s: float = 0.1
    election_ticks: int = 10
    heartbeat_ticks: int = 1

    @staticmethod
    def from_timeouts(heartbeat_timeout_s: float, election_timeout_s: float) -> Timing:
        """rqlite's timeouts are how long a follower waits for its leader
        (heartbeat) and a candidate for its votes (election). One tick is a
        tenth of the longer; the leader heartbeats every tick."""
        longest = max(heartbeat_timeout_s, election_timeout_s, 0.01)
        return Timing(tick_s=longest / 10, election_ticks=10, heartbeat_ticks=1)


@dataclass(frozen=True, slots=True)
class RaftStatus:
    """What other threads may read about Raft, published after each Ready."""

    node_id: NodeId
    role: Role
    term: Term
    leader: NodeId
    commit_index: Index
    applied_index: Index
    last_log_index: Index
    last_log_term: Term
    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...]
    conf: ConfState
    last_contact: float
    """time.monotonic() when this node last heard from (or was) the leader."""
    caught_up_at: float
    """time.monotonic() when this node last had applied all it knew committed."""


@dataclass(slots=True)
class _Proposal:
    term: Term
    future: Future[tuple[Index, list[Result]]]
    decoded: Command | None = None
    """The command the entry's data encodes, so that the proposer need not
    decode its own entry again (a bulk request takes ~0.7 ms to decode)."""


class _Stage(enum.IntEnum):
    INSTALL = 0
    PERSIST = 1
    APPLY = 2


@dataclass(slots=True)
class _Pending:
    """A Ready being carried out, kept across failures of the disk."""

    rd: Ready
    was_leader: bool
    stage: _Stage = _Stage.INSTALL
    restored: bool = False
    """The snapshot to install is in the state machine already."""
    applied: int = 0
    """How many of rd.committed_entries are applied."""
    answered: bool = False
    """rd.messages_after_persist went out (see _persist)."""
    handed: bool = False
    """Begun by a proposing thread, left for the loop's to carry out (see
    _propose_here); not a stall."""
    early: bool = False
    """rd.messages went out before the Ready's persistence (see _handle)."""
    since: float = 0.0
    backoff: float = RETRY_MIN_S


class _While(enum.Enum):
    """What becomes of inbox work that arrives while the disk fails."""

    DROP = "drop"
    DEFER = "defer"
    """Run once the disk works again (reports the core must not miss)."""
    RUN = "run"
    """Run at once: it does not touch the core (stop)."""


@dataclass(slots=True)
class _Work:
    run: Callable[[], None]
    future: Future | None = None  # type: ignore[type-arg]
    """Failed at once with the DiskError while the disk fails."""
    stalled: _While = _While.DROP
    on_drop: Callable[[], None] | None = None


class Driver:
    def __init__(
        self,
        node_id: NodeId,
        storage: LogStore,
        fsm: StateMachine,
        timing: Timing,
        send: Callable[[Message], None] | None = None,
        on_conf_change: Callable[[ConfState], None] | None = None,
        snapshots: SnapshotStore | None = None,
        send_snapshot: Callable[[Message, str, Callable[[bool], None]], None] | None = None,
        snap_threshold: int = 0,
        trailing_logs: int = 0,
        snap_interval_s: float = 1.0,
        snap_wal_bytes: int = 0,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.node_id = node_id
        self.metrics = metrics or NodeMetrics()
        self.storage = storage
        self.fsm = fsm
        self.timing = timing
        self._send_fn = send
        self._on_conf_change = on_conf_change
        self.snapshots = snapshots
        self._send_snapshot = send_snapshot
        self.snap_threshold = snap_threshold
        self.trailing_logs = trailing_logs
        self.snap_interval_s = snap_interval_s
        self.snap_wal_bytes = snap_wal_bytes
        self._copying: threading.Thread | None = None
        self._copy_done: Callable[[], None] | None = None
        self.last_snapshot_stall_s = 0.0
        self._incoming: dict[int, str] = {}
        self.heard: dict[NodeId, float] = {}
        """When each peer was last heard from (monotonic): for reaping."""
        self.leader_since = 0.0
        self.num_snapshots = 0
        self.num_restores = 0
        cfg = Config(
            node_id, election_ticks=timing.election_ticks, heartbeat_ticks=timing.heartbeat_ticks
        )
        self.core = RaftCore(cfg, storage, random.Random())
        self._inbox: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._proposals: dict[int, _Proposal] = {}
        self._reads: dict[int, Future[Index]] = {}
        self._reads_waiting_apply: list[tuple[Index, Future[Index]]] = []
        self._read_ids = itertools.count(1)
        self._read_lock = threading.Lock()
        self._next_read: Future[Index] | None = None
        """A read-index request not yet taken by the loop (see read_index)."""
        self._running = False
        self._turn = threading.Lock()
        """Held by whichever thread carries out a turn of the loop (_turn_once):
        the loop's own, or one delivering a peer message (deliver)."""
        self._loop_awake = False
        """The loop's thread has work in hand or about to be: deliver then
        queues, instead of making it wait for the turn."""
        self._next_tick = 0.0
        self._held: dict[NodeId, Message] = {}
        """COMMIT messages held back, by peer (see _send)."""
        self._held_until = 0.0
        self._held_at = -1.0
        """When a COMMIT was last held (see _run)."""
        self._next_snapshot_check = 0.0
        self._conf_seen = ConfState()
        self._thread = threading.Thread(target=self._loop, name=f"raft-{node_id}", daemon=True)
        self._saver = ThreadPoolExecutor(1, thread_name_prefix=f"save-{node_id}")
        """Saves a Ready while the Raft loop applies (see _persist)."""
        self._last_contact = time.monotonic()
        self._caught_up_at = self._last_contact
        self._applied_cv = threading.Condition()
        self.status = self._snapshot_status()
        self.fatal: BaseException | None = None
        self._pending: _Pending | None = None
        self._deferred: list[Callable[[], None]] = []
        self.disk_error: DiskError | None = None
        """Set while a Ready cannot be carried out because the disk fails:
        writes are refused with it until the retry succeeds."""
        self.num_disk_stalls = 0

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if not self._running:
            return
        self._inbox.put(_Work(self._halt, stalled=_While.RUN))
        self._thread.join(timeout_s)
        self._saver.shutdown(wait=False)

    def _halt(self) -> None:
        self._running = False

    # -- what other threads call ------------------------------------------------
    def campaign(self) -> None:
        self._inbox.put(_Work(self.core.campaign, stalled=_While.DEFER))

    def propose(
        self, data: bytes, decoded: Command | None = None
    ) -> Future[tuple[Index, list[Result]]]:
        """Completes with (index, results) once the entry is applied here.
        `decoded`: the command `data` encodes (command.decode(data) must
        equal it), applied here instead of decoding the entry."""
        return self._append(lambda: self.core.propose(data), decoded)

    def propose_conf_change(self, change: ConfChange) -> Future[tuple[Index, list[Result]]]:
        """Completes once the configuration entry is applied here."""
        return self._append(lambda: self.core.propose_conf_change(change))

    def _append(
        self, append: Callable[[], Index], decoded: Command | None = None
    ) -> Future[tuple[Index, list[Result]]]:
        fut: Future[tuple[Index, list[Result]]] = Future()

        def do() -> None:
            try:
                index = append()
            except RaftError as e:
                self.metrics.proposals_refused.inc()
                fut.set_exception(e)
                return
            self.metrics.proposals.inc()
            self._proposals[index] = _Proposal(self.core.term, fut, decoded)

        self._submit(do, fut, here=True)
        return fut

    def read_index(self) -> Future[Index]:
        """Completes with a read index once leadership is confirmed by a
        quorum and this node has applied up to it (dissertation §6.4).

        Reads that ask before the Raft loop has taken the previous request
        share it: one future, one read index taken when the loop gets to it,
        which is after each of them arrived, so it is recent enough for all
        (and the leadership check comes later still)."""
        with self._read_lock:
            pending = self._next_read
            if pending is not None and not pending.done():  # done: dropped or refused
                return pending
            fut: Future[Index] = Future()
            self._next_read = fut
        rid = next(self._read_ids)

        def do() -> None:
            with self._read_lock:
                self._next_read = None
            try:
                self.core.read_index(rid)
            except RaftError as e:
                fut.set_exception(e)
                return
            self._reads[rid] = fut

        self._submit(do, fut)
        return fut

    def step(self, m: Message) -> None:
        self._inbox.put(self._stepping(m))

    def deliver(self, m: Message, more: bool = False) -> None:
        """Step a peer's message, on the calling thread if the loop's is
        idle (the transport's reader of that peer): the message, its Ready,
        its acknowledgement or commit, are carried out without waking the
        loop's thread. That wake-up cost 60-150 us on the path of every
        write, twice (issue 7, traced). Otherwise the message is queued
        behind what the loop is doing, as step does; so is one with `more`
        of that peer's behind it, so that the loop takes them into one
        Ready (on a follower, one fsync for several appends). The caller
        may block while the turn is carried out (saving, applying)."""
        work = self._stepping(m)
        if more or not self._take_idle_turn():
            self._inbox.put(work)  # a stalled disk is the loop's to retry
            return
        try:
            try:
                self._turn_once(work)
            except BaseException as e:  # as in _loop: stop loudly
                self._die(e)
        finally:
            self._turn.release()
        if self._pending is not None or not self._running:
            self._wake()  # the loop's thread takes over: retries, or stops

    def _stepping(self, m: Message) -> _Work:
        def do() -> None:
            self.heard[m.from_] = time.monotonic()
            self.core.step(m)

        return _Work(do)

    def receive_snapshot(self, m: Message, path: str) -> None:
        """A snapshot file arrived with its SNAPSHOT message."""

        def do() -> None:
            assert m.snapshot is not None
            old = self._incoming.pop(m.snapshot.index, None)
            if old is not None and old != path:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(old)
            self._incoming[m.snapshot.index] = path
            self.core.step(m)

        def drop() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

        self._inbox.put(_Work(do, on_drop=drop))

    def boot(self, path: str) -> Future[int]:
        """Replace the database with the file at `path` outside the log, then
        snapshot it with no trailing entries (POST /boot, single node only)."""
        fut: Future[int] = Future()

        def do() -> None:
            self._wait_for_snapshot_copy()
            self.fsm.load_database(path)
            if not self._begin_snapshot(0, fut, force=True, wait_readers_ms=BUSY_READERS_MS):
                fut.set_exception(RaftError("readers kept the database busy; boot not saved"))
            self._wait_for_snapshot_copy()

        self._submit(do, fut)
        return fut

    def snapshot(self, trailing_logs: int | None = None) -> Future[int]:
        """Snapshot now (POST /snapshot); completes with the snapshot's index,
        or 0 when nothing was applied since the last one."""
        fut: Future[int] = Future()
        keep = max(0, self.trailing_logs if trailing_logs is None else trailing_logs)

        def do() -> None:
            self._wait_for_snapshot_copy()
            if self.fsm.is_staging:
                fut.set_exception(RaftError("a load is in progress; try again when it is done"))
                return
            if self._begin_snapshot(keep, fut, wait_readers_ms=BUSY_READERS_MS):
                return
            if not fut.done():
                fut.set_exception(RaftError("readers kept the database busy; try again"))

        self._submit(do, fut)
        return fut

    def report_unreachable(self, node: NodeId) -> None:
        self._inbox.put(_Work(lambda: self.core.report_unreachable(node)))

    def transfer_leader(self, target: NodeId = NONE) -> Future[NodeId]:
        fut: Future[NodeId] = Future()

        def do() -> None:
            try:
                fut.set_result(self.core.transfer_leader(target))
            except RaftError as e:
                fut.set_exception(e)

        self._submit(do, fut)
        return fut

    def wait_applied(self, index: int, timeout_s: float) -> bool:
        with self._applied_cv:
            return self._applied_cv.wait_for(
                lambda: self.fsm.applied_index >= index, timeout=timeout_s
            )

    def _submit(
        self,
        do: Callable[[], None],
        fut: Future[object],  # type: ignore[type-arg]
        here: bool = False,
    ) -> None:
        if not self._running or self.fatal is not None:
            fut.set_exception(ShutdownError("node is shutting down"))
            return
        error = self.disk_error
        if error is not None:
            fut.set_exception(error)
            return
        work = _Work(do, fut)
        if not (here and self._propose_here(work)):
            self._inbox.put(work)

    def _propose_here(self, work: _Work) -> bool:
        """Step a proposal on the calling thread if the loop's is idle, send
        the Ready's appends from here, and leave the rest of it (persist,
        apply, advance) to the loop's thread. On a leader the followers'
        save is the write's path and the leader's own runs beside it: the
        wake-up of the loop's thread (111 µs traced at one client, issue 7)
        now comes after the appends are sent, not before. Only a proposal
        with none other in flight: with others waiting (many clients), it
        joins the loop's next batch, one Ready and one fsync for many, and
        the HTTP event loop keeps its time for requests (an A/B at 32
        clients read x0.94 when every proposal could take this path).
        False: the proposal is left to the loop, queued."""
        if not self._take_idle_turn():
            return False
        try:
            if self._proposals:
                return False
            try:
                self._do(work)
                if self.core.has_ready():
                    rd = self.core.ready()
                    self._notice_conf()
                    early = self._early(rd)
                    if early:
                        self._send_all(rd.messages)
                    self._pending = _Pending(
                        rd, was_leader=self.status.role is Role.LEADER, handed=True, early=early
                    )
            except BaseException as e:  # as in _loop: stop loudly
                self._die(e)
        finally:
            self._turn.release()
        if self._pending is not None or not self._running:
            self._wake()  # the loop's thread carries on (or stops)
        return True

    def _take_idle_turn(self) -> bool:
        """Take the turn if the loop's thread is idle (not awake, nothing
        queued) and no Ready is pending: for another thread to carry out a
        turn itself (deliver, _propose_here). True: the turn is held."""
        if self._loop_awake or not self._inbox.empty():
            return False
        if not self._turn.acquire(blocking=False):
            return False
        if self._pending is not None or not self._running:
            self._turn.release()
            return False
        return True

    def _wake(self) -> None:
        self._inbox.put(_Work(lambda: None))

    def _report_snapshot(self, to: NodeId, ok: bool) -> None:
        self._inbox.put(_Work(lambda: self.core.report_snapshot(to, ok), stalled=_While.DEFER))

    # -- the loop ----------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run()
        except BaseException as e:  # a broken invariant: stop loudly, serve nothing stale
            self._die(e)
        finally:
            with self._turn:
                self._fail_all(ShutdownError("node is shutting down"))

    def _die(self, e: BaseException) -> None:
        self.fatal = e
        self._running = False
        log.critical("Raft loop stopped: %s", e, exc_info=True)

    def _run(self) -> None:
        with self._turn:
            self._conf_seen = self.core.conf
            if self._on_conf_change is not None:
                self._on_conf_change(self._conf_seen)
            self._next_tick = time.monotonic() + self.timing.tick_s
            self._next_snapshot_check = self._next_tick
        while self._running:
            p = self._pending
            if p is not None and not p.handed and self._retry_stalled():
                continue
            wake_at = self._next_tick
            now = time.monotonic()
            if now - self._held_at < 1.0:
                # A COMMIT held by another thread's turn must not wait for a
                # whole tick: while commits come, look every COMMIT_DELAY_S
                # (not when idle: a leader's idle CPU went 0.4% -> 1.7%).
                wake_at = min(wake_at, now + COMMIT_DELAY_S)
            timeout = max(0.0, wake_at - now)
            try:
                work: _Work | None = self._inbox.get(timeout=timeout)
            except queue.Empty:
                work = None
            self._loop_awake = True
            with self._turn:
                if self._pending is not None and self._pending.handed:
                    self._pending.handed = False
                    self._carry_out(self._pending)
                if self._pending is not None:
                    if work is not None:
                        self._refuse(work)
                elif self._running:
                    self._turn_once(work)
            self._loop_awake = False

    def _turn_once(self, work: _Work | None) -> None:
        """One turn of the loop, with `_turn` held: the work at hand and
        everything queued go into one Ready; tick when due; carry out the
        Readies; snapshot bookkeeping. Run by the loop's thread, or by a
        thread delivering a peer message while the loop's is idle (deliver)."""
        try:
            if work is not None:
                self._do(work)
            while self._pending is None:  # drain: everything queued goes into one Ready
                self._do(self._inbox.get_nowait())
        except queue.Empty:
            pass
        if self._pending is not None:
            return
        now = time.monotonic()
        if now >= self._next_tick:
            self.core.tick()
            self._next_tick = max(self._next_tick + self.timing.tick_s, now)
        while self.core.has_ready() and self._pending is None:
            self._handle(self.core.ready())
        if self._pending is not None:
            return
        if self._held and now >= self._held_until:
            self._send_held()
        self._complete_snapshot_copy()
        if now >= self._next_snapshot_check:
            self._next_snapshot_check = now + self.snap_interval_s
            if self._snapshot_due():
                if self.fsm.db.wal_bytes() >= self._precheckpoint_bytes():
                    self._begin_precheckpoint()
                else:
                    self._snapshot_now()
        self._notice_conf()

    def _notice_conf(self) -> None:
        """Tell the transport of a new configuration, before any message
        of the Ready that holds it goes out: a node re-added with a new
        address must get its messages there, not at the old address, where
        the old process, still running, would answer for it (seen: the
        leader counted the old process's acknowledgement as the new one's,
        and never sent the new one the log)."""
        if self.core.conf is not self._conf_seen:
            self._conf_seen = self.core.conf
            if self._on_conf_change is not None:
                self._on_conf_change(self._conf_seen)

    def _do(self, work: _Work) -> None:
        try:
            work.run()
        except DiskError as e:  # work outside a Ready (a snapshot, a boot)
            if work.future is None:
                raise
            if not work.future.done():
                work.future.set_exception(e)

    @staticmethod
    def _early(rd: Ready) -> bool:
        """Do the Ready's messages go out before it is carried out?
        Messages go out before the fsync, so that followers persist in
        parallel with the leader (dissertation §10.2.1). A leader's Ready
        with nothing to persist but entries to apply (a commit) applies
        first: the client waiting for that entry is answered before the
        leader spends time telling followers the new commit index."""
        return (
            rd.soft_state.role is not Role.LEADER
            or bool(rd.entries)
            or rd.snapshot is not None
            or not rd.committed_entries
        )

    def _handle(self, rd: Ready) -> None:
        self._notice_conf()
        early = self._early(rd)
        if early:
            self._send_all(rd.messages)
        p = _Pending(rd, was_leader=self.status.role is Role.LEADER, early=early)
        self._pending = p
        self._carry_out(p)

    def _carry_out(self, p: _Pending) -> None:
        try:
            self._proceed()
        except DiskError as e:
            self._stall(e)
        finally:
            if not p.early:
                self._send_all(p.rd.messages)

    def _proceed(self) -> None:
        """Carry out the pending Ready from where it stopped. Raises
        DiskError, leaving it pending: nothing after the failed step has
        happened, so nothing claims durability it does not have."""
        p = self._pending
        assert p is not None
        rd = p.rd
        if p.stage is _Stage.INSTALL:
            if rd.snapshot is not None:
                self._install_snapshot(rd.snapshot, p)
            p.stage = _Stage.PERSIST
        if p.stage is _Stage.PERSIST:
            self._persist(p)
            p.stage = _Stage.APPLY
        if self.fsm.needs_rebuild:
            self._rebuild_state_machine()
        self._apply(p, len(rd.committed_entries))
        self._pending = None
        self._finish(rd, p.was_leader)

    def _persist(self, p: _Pending) -> None:
        """Save the Ready's entries and hard state. Meanwhile, this thread
        applies the committed entries that were durable here before the
        Ready: SQLite's fsync and the state machine's work overlap instead
        of taking turns (a bulk write's Raft loop spent 52% applying and 21%
        saving; issue 7). An entry this save holds is applied only after it.
        If either fails, the Ready is retried from the save, which writes
        the same entries again; what was applied stays applied.

        The saver sends the Ready's acknowledgements as soon as the save is
        durable, without waiting for the apply: a follower applying the
        previous bulk entry (1000 rows) held back its acknowledgement of
        the next one by a millisecond or more, and with it the leader's
        commit. They are replies, never snapshots (the core's
        _AFTER_PERSIST), and the transport takes sends from any thread."""
        rd = p.rd
        durable = p.applied
        if rd.entries and not self.fsm.needs_rebuild:
            # Stored before, and not about to be replaced by this save.
            upto = min(self.storage.last_index(), rd.entries[0].index - 1)
            committed = rd.committed_entries
            while durable < len(committed) and committed[durable].index <= upto:
                durable += 1
        if not self._worth_overlapping(rd.committed_entries[p.applied : durable]):
            self._save_and_answer(p)  # then _proceed applies them all
            return
        saving = self._saver.submit(self._save_and_answer, p)
        try:
            self._apply(p, durable)
        finally:
            saving.result()  # a failed save raises its DiskError here

    @staticmethod
    def _worth_overlapping(entries: tuple[Entry, ...]) -> bool:
        """Is applying `entries` worth the saver's thread hand-over (50-150
        µs, its wake-up and the GIL)? Not for one small entry: a follower at
        one client gets each commit index with the next append (see _send),
        so every save came with one INSERT to apply, and the hand-over was
        on the path of the acknowledgement. Saving first, then applying,
        sends that acknowledgement sooner."""
        return len(entries) > 1 or (len(entries) == 1 and len(entries[0].data) > OVERLAP_BYTES)

    def _save_and_answer(self, p: _Pending) -> None:
        """Save, then send what needed the save (once, however often a
        failing Ready is retried)."""
        rd = p.rd
        start = time.perf_counter()
        if self.storage.save(rd.entries, rd.hard_state):
            self.metrics.log_fsync_seconds.observe(time.perf_counter() - start)
        if not p.answered:
            self._send_all(rd.messages_after_persist)
            p.answered = True

    def _apply(self, p: _Pending, upto: int) -> None:
        """Apply the Ready's committed entries before position `upto`, then
        answer their proposals. Answering each entry as soon as it was
        applied woke the HTTP event loop between entries, and each SQLite
        call that released the GIL then let it in: at 32 clients the
        leader's apply of a one-INSERT entry took 199 µs of wall time (89 of
        them its own CPU), 78 µs once the batch was answered at its end, and
        writes/s rose x1.27 (A/B, 8 rounds; issue 7). A batch is a few
        dozen entries at most: its first client waits well under a
        millisecond more. What was applied before a failure is answered."""
        rd = p.rd
        applied: list[tuple[Index, Term, list[Result]]] = []
        try:
            while p.applied < upto:
                e = rd.committed_entries[p.applied]
                mine = self._proposals.get(e.index)
                start = time.perf_counter()
                if mine is not None and mine.term == e.term:  # the very entry proposed here
                    results = self.fsm.apply_entry(e, mine.decoded)
                else:
                    results = self.fsm.apply_entry(e, counted=False)  # nobody waits for them
                self.metrics.apply_seconds.observe(time.perf_counter() - start)
                p.applied += 1
                applied.append((e.index, e.term, results))
        finally:
            for index, term, results in applied:
                self._complete(index, term, results)

    def _stall(self, error: DiskError) -> None:
        """The disk failed while carrying out a Ready: refuse what waits on
        this node (its outcome is unknown to the client: the entry may still
        commit through the other nodes) and retry until the disk works."""
        p = self._pending
        assert p is not None
        p.since = time.monotonic()
        self.disk_error = error
        self.num_disk_stalls += 1
        step = {
            _Stage.INSTALL: "install a snapshot",
            _Stage.PERSIST: "persist the Raft log",
            _Stage.APPLY: "apply a committed entry",
        }[p.stage]
        log.error(
            "cannot %s: %s; writes to this node are refused until a retry succeeds", step, error
        )
        self._fail_all(error)
        self.status = self._snapshot_status()
        with self._applied_cv:
            self._applied_cv.notify_all()

    def _retry_stalled(self) -> bool:
        """Retry the Ready stalled on the disk, if one still is once the turn
        is ours. Another thread's turn (deliver, _propose_here) sets _pending
        while it runs: the loop's thread may see it set and find it done
        when it has the turn (a follower of a 5-node benchmark stopped its
        Raft loop on this)."""
        with self._turn:
            p = self._pending
            if p is None or p.handed:
                return False
            self._retry_pending()
            return True

    def _retry_pending(self) -> None:
        """Wait out the back-off, refusing what arrives, then try again."""
        p = self._pending
        assert p is not None
        deadline = time.monotonic() + p.backoff
        while self._running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                work = self._inbox.get(timeout=remaining)
            except queue.Empty:
                break
            self._refuse(work)
        if not self._running:
            return
        try:
            self._proceed()
        except DiskError as e:
            self.disk_error = e
            p.backoff = min(p.backoff * 2, RETRY_MAX_S)
            log.debug("disk still failing: %s", e)
            return
        self.disk_error = None
        log.warning("the disk works again: resumed after %.1fs", time.monotonic() - p.since)
        deferred, self._deferred = self._deferred, []
        for run in deferred:
            run()

    def _refuse(self, work: _Work) -> None:
        if work.stalled is _While.RUN:
            work.run()
        elif work.future is not None:
            if not work.future.done():
                work.future.set_exception(self.disk_error or DiskError("disk error"))
        elif work.stalled is _While.DEFER:
            self._deferred.append(work.run)
        elif work.on_drop is not None:
            work.on_drop()

    def _rebuild_state_machine(self) -> None:
        """An unwrapped entry failed halfway (fsm.rebuild)."""
        snap = self.storage.snapshot_meta()
        path = None
        if snap.index:
            if self.snapshots is None:
                raise RaftError("the database must be rebuilt and there is no snapshot store")
            path = self.snapshots.find(snap).path
        target = self.fsm.applied_index

        def entries() -> Iterator[Entry]:
            i = snap.index + 1
            while i <= target:
                batch = self.storage.entries(Index(i), Index(target + 1), 8 << 20)
                yield from batch
                i = batch[-1].index + 1

        self.fsm.rebuild(path, snap.index, snap.conf, entries())

    def _finish(self, rd: Ready, was_leader: bool) -> None:
        for rs in rd.read_states:
            fut = self._reads.pop(rs.request_id, None)
            if fut is not None:
                self._reads_waiting_apply.append((rs.index, fut))
        self.core.advance(rd)
        now = time.monotonic()
        if rd.soft_state.leader != NONE:
            self._last_contact = now
            if self.status.leader != rd.soft_state.leader or self.status.term != self.core.term:
                self.metrics.leader_changes.inc()
        if self.fsm.applied_index >= self.core.log.committed:
            self._caught_up_at = now
        self.status = self._snapshot_status()
        self._serve_reads()
        if not was_leader and rd.soft_state.role is Role.LEADER:
            self.leader_since = now  # reaping clocks start again with a new leader
        if was_leader and rd.soft_state.role is not Role.LEADER:
            err = NotLeaderError(rd.soft_state.leader)
            for fut in self._reads.values():
                fut.set_exception(err)
            self._reads.clear()
        with self._applied_cv:
            self._applied_cv.notify_all()

    def _complete(self, index: Index, term: Term, results: list[Result]) -> None:
        p = self._proposals.pop(index, None)
        if p is None:
            return
        if p.term == term:
            p.future.set_result((index, results))
        else:
            p.future.set_exception(LeadershipLostError(f"entry {index} was overwritten"))

    def _serve_reads(self) -> None:
        applied = self.fsm.applied_index
        still = []
        for index, fut in self._reads_waiting_apply:
            if applied >= index:
                fut.set_result(index)
            else:
                still.append((index, fut))
        self._reads_waiting_apply = still

    def _send_all(self, messages: tuple[Message, ...]) -> None:
        for m in messages:
            self._send(m)

    def _send(self, m: Message) -> None:
        """Send `m`, except a COMMIT: it is held back COMMIT_DELAY_S for the
        next append or heartbeat to that peer, which carries the commit
        index too. At one client a COMMIT to each follower right after
        every write made both followers apply it while the leader answered
        and the client sent its next write, on a machine with two cores;
        held back, a follower applies the entry with the next append, while
        that one is being saved (issue 7). When writes stop, followers
        learn the last commit index within COMMIT_DELAY_S (hashicorp/raft,
        under rqlite, waits its CommitTimeout, 50 ms by default)."""
        if m.type is MsgType.COMMIT:
            self._held_at = time.monotonic()
            if not self._held:
                self._held_until = self._held_at + COMMIT_DELAY_S
            self._held[m.to] = m
            return
        if m.type is MsgType.APPEND or m.type is MsgType.HEARTBEAT:
            held = self._held.get(m.to)
            if held is not None and held.term == m.term and held.commit <= m.commit:
                del self._held[m.to]
        if m.type is MsgType.SNAPSHOT:
            self._ship_snapshot(m)
        elif self._send_fn is not None:
            self._send_fn(m)

    def _send_held(self) -> None:
        held, self._held = self._held, {}
        if self.core.role is not Role.LEADER:
            return  # a deposed leader's news is stale
        for m in held.values():
            if m.term == self.core.term and self._send_fn is not None:
                self._send_fn(m)

    # -- snapshots ----------------------------------------------------------------
    def _snapshot_due(self) -> bool:
        if self.snapshots is None or self._copying is not None or self.fsm.is_staging:
            return False
        since = self.fsm.applied_index - self.storage.snapshot_meta().index
        if since <= 0:
            return False
        by_entries = self.snap_threshold and since >= self.snap_threshold
        by_wal = self.snap_wal_bytes and self.fsm.db.wal_bytes() >= self.snap_wal_bytes
        return bool(by_entries or by_wal)

    def _snapshot_now(self) -> None:
        try:
            self._begin_snapshot(self.trailing_logs, None, wait_readers_ms=100)
        except DiskError as e:
            log.warning("snapshot postponed: %s", e)

    def _precheckpoint_bytes(self) -> int:
        return PRECHECKPOINT_WALS * self.snap_wal_bytes or PRECHECKPOINT_DEFAULT_BYTES

    def _begin_precheckpoint(self) -> None:
        """Before snapshotting with a large WAL, copy it into the main file
        on another thread while writes go on (Database.checkpoint_passive),
        then snapshot: the snapshot's own checkpoint pauses the Raft loop
        only for what came meanwhile. Filling a 1 GB database, that pause
        had grown to seconds (issue 7)."""
        database = self.fsm.db

        def run() -> None:
            start = time.monotonic()
            try:
                database.checkpoint_passive()
                log.info("WAL checkpointed beside writes in %.3fs", time.monotonic() - start)
            except (DiskError, OSError) as e:  # the snapshot's checkpoint meets it too
                log.warning("background checkpoint failed: %s", e)
            self._copy_done = self._snapshot_after_precheckpoint
            self._wake()

        self._copying = threading.Thread(target=run, name="snapshot-checkpoint", daemon=True)
        self._copying.start()

    def _snapshot_after_precheckpoint(self) -> None:
        if self._snapshot_due() and not self.fsm.needs_rebuild:
            self._snapshot_now()

    def _begin_snapshot(
        self,
        trailing_logs: int,
        fut: Future[int] | None,
        *,
        force: bool = False,
        wait_readers_ms: int,
    ) -> bool:
        """Snapshot the state machine at its applied index, rqlite's way:
        checkpoint the WAL into the main file (the only pause for writes),
        then copy that file on another thread while writes go on into the
        WAL; once the copy is safe, record it and compact the log, keeping
        `trailing_logs` entries for followers that lag a little. Returns
        False when readers held the WAL too long (try again later)."""
        index = Index(self.fsm.applied_index)
        last = self.storage.snapshot_meta()
        if self.fsm.is_staging:
            return False  # a load is half-applied: its pieces are not in the database yet
        if self.snapshots is None or index < last.index or (index == last.index and not force):
            if fut is not None:
                fut.set_result(0)
            return True
        start = time.monotonic()
        if not self.fsm.db.checkpoint(wait_readers_ms):
            log.info("snapshot at %d postponed: readers are holding the WAL", index)
            return False
        stall = time.monotonic() - start
        meta = self.core.snapshot_meta(index)
        fingerprint = self.fsm.db.fingerprint()
        snapshots = self.snapshots

        def copy() -> None:
            tmp = snapshots.tmp_path(meta)
            try:
                copy_paced(self.fsm.db.path, tmp)
                snapshots.commit(meta, tmp)
                outcome: Exception | None = None
            except OSError as e:
                outcome = environmental(e) or e
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)  # never a partial snapshot on disk
            self._copy_done = lambda: self._finish_snapshot(
                meta, fingerprint, trailing_logs, fut, start, stall, outcome
            )
            self._wake()

        self._copying = threading.Thread(target=copy, name="snapshot-copy", daemon=True)
        self._copying.start()
        return True

    def _finish_snapshot(
        self,
        meta: SnapshotMeta,
        fingerprint: tuple[int, int],
        trailing_logs: int,
        fut: Future[int] | None,
        start: float,
        stall: float,
        failure: Exception | None,
    ) -> None:
        """Record a copied snapshot and compact the log (driver thread)."""
        assert self.snapshots is not None
        if failure is None:
            try:
                self.storage.set_snapshot(meta, fingerprint)
            except DiskError as e:
                self.snapshots.discard(meta)  # raft.db still names the previous one
                failure = e
        if failure is not None:
            # Abandoned: the previous snapshot stays the latest, the log is
            # not compacted, and the next check tries again.
            log.error("snapshot at %d abandoned: %s", meta.index, failure)
            self.metrics.snapshots_failed.inc()
            if fut is not None:
                fut.set_exception(failure)
            return
        keep_from = max(meta.index - trailing_logs, self.storage.first_index() - 1)
        try:
            self.storage.compact(Index(keep_from))
        except DiskError as e:
            log.warning("log compaction postponed to the next snapshot: %s", e)
        try:
            self.snapshots.reap()
        except OSError as e:
            log.warning("reaping old snapshots failed: %s", e)
        self.num_snapshots += 1
        self.last_snapshot_stall_s = stall
        self.metrics.snapshot_seconds.observe(time.monotonic() - start)
        self.metrics.snapshot_pause_seconds.observe(stall)
        log.info(
            "snapshot at %d in %.3fs (writes paused %.3fs)",
            meta.index,
            time.monotonic() - start,
            stall,
        )
        if fut is not None:
            fut.set_result(meta.index)

    def _complete_snapshot_copy(self) -> None:
        """Once the copy thread is done, record its snapshot (driver thread)."""
        if self._copying is not None and not self._copying.is_alive():
            self._copying = None
            done, self._copy_done = self._copy_done, None
            if done is not None:
                done()

    def _wait_for_snapshot_copy(self) -> None:
        """Let a copy in progress finish: the main file must not change under
        it. A background checkpoint, once done, may begin a snapshot's copy:
        that is waited for too."""
        while self._copying is not None:
            self._copying.join()
            self._complete_snapshot_copy()

    def _ship_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        to = m.to
        try:
            if self.snapshots is None or self._send_snapshot is None:
                raise SnapshotError("no snapshot store")
            path = self.snapshots.find(m.snapshot).path
        except SnapshotError as e:
            log.warning("cannot send snapshot to %s: %s", to, e)
            self._report_snapshot(to, False)
            return
        self._send_snapshot(m, path, lambda ok: self._report_snapshot(to, ok))

    def _install_snapshot(self, meta: SnapshotMeta, p: _Pending) -> None:
        """The leader's snapshot replaces our state machine and log. Each
        step can be tried again after a failure of the disk."""
        self._wait_for_snapshot_copy()
        path = self._incoming.get(meta.index)
        kept = None
        if self.snapshots is not None:
            with contextlib.suppress(SnapshotError):
                kept = self.snapshots.find(meta)  # committed by an earlier attempt
        if (path is None and kept is None) or self.snapshots is None:
            raise RaftError(f"snapshot {meta.index} to install was never received")
        if not p.restored:
            self.fsm.restore_from(path or kept.path, meta.index, meta.conf)  # type: ignore[union-attr]
            p.restored = True
        if kept is None:
            assert path is not None
            with guarded():
                self.snapshots.commit(meta, path)  # keep it: it is our latest snapshot now
        elif path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        self._incoming.pop(meta.index, None)
        self.storage.apply_snapshot(meta)
        with contextlib.suppress(OSError):
            self.snapshots.reap()
        self.num_restores += 1
        log.info("installed the leader's snapshot at %d", meta.index)

    def _fail_all(self, err: Exception) -> None:
        for p in self._proposals.values():
            if not p.future.done():
                p.future.set_exception(err)
        self._proposals.clear()
        for fut in self._reads.values():
            fut.set_exception(err)
        self._reads.clear()
        for _, fut in self._reads_waiting_apply:
            fut.set_exception(err)
        self._reads_waiting_apply = []

    def _snapshot_status(self) -> RaftStatus:
        c = self.core
        return RaftStatus(
            node_id=self.node_id,
            role=c.role,
            term=c.term,
            leader=c.leader,
            commit_index=c.log.committed,
            applied_index=Index(self.fsm.applied_index),
            last_log_index=c.log.last_index(),
            last_log_term=c.log.last_term(),
            voters=c.conf.voters,
            learners=c.conf.learners,
            conf=c.conf,
            last_contact=self._last_contact,
            caught_up_at=self._caught_up_at,
        )
