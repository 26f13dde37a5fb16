"""RaftCore: the Raft protocol as a deterministic state machine.

It does no IO, keeps no clock and draws randomness only from the
`random.Random` it is given. A driver feeds it ticks and messages and carries
out the `Ready` it returns (see types.Ready for the contract). Section numbers
refer to the Raft paper (§5) and Ongaro's dissertation (§3, §4, §6, §9, §10).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from . import quorum
from .log import LogInvariantError, RaftLog
from .progress import Progress, ProgressState
from .storage import LogStorage
from .types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MsgType,
    NodeId,
    ReadState,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
    Term,
)


class RaftError(Exception):
    """Base of the errors the core raises to its caller."""


class ConfigError(RaftError, ValueError):
    """The core's configuration is invalid."""


class NotLeaderError(RaftError):
    """A leader-only call reached a node that is not the leader."""

    def __init__(self, leader: NodeId) -> None:
        super().__init__(f"not leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDroppedError(RaftError):
    """The leader refuses proposals while it hands leadership over (§3.10)."""


class ConfChangeError(RaftError):
    """A membership change that cannot be made at all."""


class ConfChangePendingError(ConfChangeError):
    """A membership change that cannot be made yet: retry shortly."""


@dataclass(frozen=True, slots=True)
class Config:
    id: NodeId
    election_ticks: int = 10
    """Base election timeout; each node draws its own from [e, 2e) (§5.2)."""
    heartbeat_ticks: int = 1
    max_inflight: int = 64
    """Appends in flight to one follower before the leader waits (§10.2.2)."""
    max_msg_bytes: int = 1 << 20
    max_apply_bytes: int = 64 << 20
    """Committed entries handed out in one Ready, at most about this much."""
    pre_vote: bool = True
    check_quorum: bool = True
    applied: Index | None = None
    """Where the driver's state machine stands on restart (default: the snapshot)."""

    def validate(self) -> None:
        if not self.id:
            raise ConfigError("node id must not be empty")
        if self.heartbeat_ticks < 1:
            raise ConfigError(f"heartbeat_ticks must be >= 1, got {self.heartbeat_ticks}")
        if self.election_ticks <= self.heartbeat_ticks:
            raise ConfigError(
                f"election_ticks ({self.election_ticks}) must exceed "
                f"heartbeat_ticks ({self.heartbeat_ticks})"
            )
        if self.max_inflight < 1:
            raise ConfigError(f"max_inflight must be >= 1, got {self.max_inflight}")
        if self.max_msg_bytes < 1 or self.max_apply_bytes < 1:
            raise ConfigError("byte limits must be positive")


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre_election"
    ELECTION = "election"
    TRANSFER = "transfer"


@dataclass(slots=True)
class _PendingRead:
    seq: int
    index: Index
    request_id: int
    acks: set[NodeId] = field(default_factory=set)


# Responses that promise something about durable state: sent only after the
# Ready that produced them has been persisted (Figure 2, "Rules for Servers").
_AFTER_PERSIST = frozenset({MsgType.VOTE, MsgType.VOTE_RESP, MsgType.APPEND_RESP})


class RaftCore:
    def __init__(self, config: Config, storage: LogStorage, rng: random.Random) -> None:
        config.validate()
        self.config = config
        self.id = config.id
        self._rng = rng
        self.log = RaftLog(storage, config.applied)
        hs = storage.hard_state()
        self.term: Term = hs.term
        self.vote: NodeId = hs.vote
        self.role = Role.FOLLOWER
        self.leader: NodeId = NONE
        self._prev_hard_state = hs
        self._msgs: list[Message] = []
        self._msgs_after: list[Message] = []
        self._read_states: list[ReadState] = []
        # Configuration: the base as of the snapshot, then every CONFIG entry
        # after it. The latest one in the log is in force, committed or not (§4.1).
        snap = storage.snapshot_meta()
        self._conf_base: ConfState = snap.conf
        self._conf_history: list[tuple[Index, ConfState]] = []
        self._scan_conf_entries(Index(snap.index + 1), Index(storage.last_index() + 1))
        # Leader state.
        self.prs: dict[NodeId, Progress] = {}
        self.lead_transferee: NodeId = NONE
        self._transfer_elapsed = 0
        self._votes: dict[NodeId, bool] = {}
        self._pending_reads: list[_PendingRead] = []
        self._reads_awaiting_commit: list[int] = []
        self._read_seq = 0
        self._read_round = 0
        """The read sequence number of the heartbeat round in flight (0: none).
        Reads that arrive meanwhile wait for it to be confirmed and share the
        next round, so a burst of reads costs a few rounds, not one each."""
        self._needs_bcast = False
        self._needs_read_heartbeat = False
        # Timers.
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = 0
        self._reset_timers()

    # ======================================================================
    # Public API
    # ======================================================================
    @property
    def conf(self) -> ConfState:
        return self._conf_history[-1][1] if self._conf_history else self._conf_base

    def is_promotable(self) -> bool:
        """Only a voter of the configuration in force may campaign (§4.2.2)."""
        return self.conf.is_voter(self.id)

    def soft_state(self) -> SoftState:
        return SoftState(self.leader, self.role, self.term)

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def step(self, m: Message) -> None:
        """Handle one message from a peer."""
        if m.to != self.id:
            return
        if not self._check_term(m):
            return
        handler = {
            MsgType.PRE_VOTE: self._handle_vote_request,
            MsgType.VOTE: self._handle_vote_request,
        }.get(m.type)
        if handler is not None:
            handler(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def campaign(self) -> None:
        """Start an election now, as if the election timeout had passed."""
        if self.role is not Role.LEADER and self.is_promotable():
            self._campaign(_Campaign.PRE_ELECTION if self.config.pre_vote else _Campaign.ELECTION)

    def propose(self, data: bytes) -> Index:
        """Append a client command to the leader's log; returns its index.
        Appends go out in the next Ready, many proposals to one message."""
        self._require_leader()
        if self.lead_transferee:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        return self._append(EntryType.NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> Index:
        """Single-server membership change (§4.1), effective once appended."""
        self._require_leader()
        if self.lead_transferee:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        if self._conf_history and self._conf_history[-1][0] > self.log.committed:
            raise ConfChangePendingError("a configuration change is already in progress")
        if self.log.term(self.log.committed) != self.term:
            # The dissertation's fix to single-server changes (§4.1, bug
            # note): a new leader must commit an entry of its term first.
            raise ConfChangePendingError("leader has not yet committed an entry in its term")
        new_conf = _apply_change(self.conf, change)
        return self._append(EntryType.CONFIG, new_conf.encode())

    def read_index(self, request_id: int) -> None:
        """Ask for a linearizable read point (dissertation §6.4). The answer
        comes back as a ReadState in a later Ready, once a heartbeat round has
        confirmed leadership; it is dropped if leadership is lost."""
        self._require_leader()
        if self.log.term(self.log.committed) != self.term:
            self._reads_awaiting_commit.append(request_id)
        else:
            self._start_read(request_id)

    def transfer_leader(self, target: NodeId = NONE) -> NodeId:
        """Hand leadership to `target`, or to the most up-to-date voter
        (§3.10). Returns the chosen transferee (or this node: nothing to do)."""
        self._require_leader()
        if not target:
            others = [v for v in self.conf.voters if v != self.id]
            if not others:
                raise ConfChangeError("no other voter to transfer leadership to")
            target = max(others, key=lambda v: (self.prs[v].match, v))
        if target == self.id:
            return self.id
        if not self.conf.is_voter(target):
            raise ConfChangeError(f"{target} is not a voter")
        if self.lead_transferee == target:
            return target
        self.lead_transferee = target
        self._transfer_elapsed = 0  # the transfer is abandoned after an election timeout
        if self.prs[target].match == self.log.last_index():
            self._send(Message(MsgType.TIMEOUT_NOW, self.id, target, self.term))
        else:
            self._send_append(target)
        return target

    def report_unreachable(self, node: NodeId) -> None:
        """The driver could not deliver to `node`: stop streaming, probe instead."""
        pr = self.prs.get(node) if self.role is Role.LEADER else None
        if pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, node: NodeId, ok: bool) -> None:
        """The driver finished sending a snapshot to `node` (or gave up)."""
        pr = self.prs.get(node) if self.role is Role.LEADER else None
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = Index(0)
        pr.become_probe()
        # Wait for the follower's answer (or the next heartbeat) before probing.
        pr.probe_sent = True

    def snapshot_meta(self, index: Index) -> SnapshotMeta:
        """Metadata for a state-machine snapshot taken at applied `index`."""
        if index > self.log.applied:
            raise LogInvariantError(f"snapshot at {index} beyond applied {self.log.applied}")
        term = self.log.term(index)
        if term is None:
            raise LogInvariantError(f"term of {index} is no longer known")
        conf = self._conf_base
        for at, c in self._conf_history:
            if at <= index:
                conf = c
        return SnapshotMeta(index, term, conf)

    def has_ready(self) -> bool:
        return bool(
            self._msgs
            or self._msgs_after
            or self._read_states
            or self._needs_bcast
            or (self._needs_read_heartbeat and not self._read_round)
            or self.log.unstable
            or self.log.pending_snapshot is not None
            or self._hard_state() != self._prev_hard_state
            or self.log.committed > self.log.applied
        )

    def ready(self) -> Ready:
        if self._needs_bcast:
            self._needs_bcast = False
            self._bcast_append()
        if self._needs_read_heartbeat and not self._read_round:
            self._needs_read_heartbeat = False
            self._read_round = self._read_seq
            self._bcast_heartbeat(self._read_seq)
        hs = self._hard_state()
        rd = Ready(
            soft_state=self.soft_state(),
            hard_state=hs if hs != self._prev_hard_state else None,
            entries=tuple(self.log.unstable),
            snapshot=self.log.pending_snapshot,
            committed_entries=tuple(self._committed_entries()),
            read_states=tuple(self._read_states),
            messages=tuple(self._msgs),
            messages_after_persist=tuple(self._msgs_after),
        )
        self._msgs, self._msgs_after, self._read_states = [], [], []
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver has carried out `rd`."""
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.snapshot is not None:
            self.log.snapshot_installed(rd.snapshot)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)
        if self.role is Role.LEADER:
            # §10.2.1: the leader counts its own log toward commitment only
            # once it is durable, like any follower's.
            self_pr = self.prs.get(self.id)
            if (
                self_pr is not None
                and self_pr.maybe_update(self.log.last_stable_index())
                and self._maybe_commit()
            ):
                self._needs_bcast = True

    # ======================================================================
    # Terms and votes
    # ======================================================================
    def _check_term(self, m: Message) -> bool:
        """Figure 2, "All servers": adopt a newer term; answer or drop an
        older one. Returns False when `m` must not be processed further."""
        if m.term > self.term:
            if m.type in (MsgType.VOTE, MsgType.PRE_VOTE) and self._in_lease() and not m.force:
                # §4.2.3: a server that heard from a leader within the minimum
                # election timeout does not let a (removed or partitioned)
                # server disrupt it.
                return False
            if m.type is MsgType.PRE_VOTE or (m.type is MsgType.PRE_VOTE_RESP and not m.reject):
                # A pre-vote neither changes terms nor records votes (§9.6).
                return True
            leader = m.from_ if m.type in _FROM_LEADER else NONE
            self._become_follower(m.term, leader)
            return True
        if m.term < self.term:
            if m.type in (MsgType.APPEND, MsgType.HEARTBEAT):
                # Tell a deposed leader about the newer term, otherwise a
                # leader cut off by check-quorum-aware peers never learns it.
                self._send(Message(MsgType.APPEND_RESP, self.id, m.from_, self.term))
            elif m.type is MsgType.PRE_VOTE:
                self._send(Message(MsgType.PRE_VOTE_RESP, self.id, m.from_, self.term, reject=True))
            return False
        return True

    def _in_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.leader != NONE
            and self.election_elapsed < self.config.election_ticks
        )

    def _handle_vote_request(self, m: Message) -> None:
        is_pre = m.type is MsgType.PRE_VOTE
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.leader == NONE)
            or (is_pre and m.term > self.term)
        )
        resp_type = MsgType.PRE_VOTE_RESP if is_pre else MsgType.VOTE_RESP
        if can_vote and self._is_up_to_date(m.index, m.log_term):
            # A pre-vote is answered in the term it asks about (§9.6).
            self._send(Message(resp_type, self.id, m.from_, m.term))
            if not is_pre:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(Message(resp_type, self.id, m.from_, self.term, reject=True))

    def _is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        """§5.4.1, the election restriction."""
        return self.log.is_up_to_date(last_index, last_term)

    def _campaign(self, kind: _Campaign) -> None:
        if kind is _Campaign.PRE_ELECTION:
            self._become_pre_candidate()
            term = Term(self.term + 1)
            msg_type = MsgType.PRE_VOTE
        else:
            self._become_candidate()
            term = self.term
            msg_type = MsgType.VOTE
        self._votes = {self.id: True}
        if self._tally() is quorum.VoteResult.WON:
            self._on_election_won(kind)
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for v in self.conf.voters:
            if v != self.id:
                self._send(
                    Message(
                        msg_type,
                        self.id,
                        v,
                        term,
                        log_term=last_term,
                        index=last_index,
                        force=kind is _Campaign.TRANSFER,
                    )
                )

    def _on_election_won(self, kind: _Campaign) -> None:
        if kind is _Campaign.PRE_ELECTION:
            self._campaign(_Campaign.ELECTION)
        else:
            self._become_leader()

    def _tally(self) -> quorum.VoteResult:
        return quorum.vote_result(self.conf.voters, self._votes)

    # ======================================================================
    # Roles
    # ======================================================================
    def _reset(self, term: Term) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.leader = NONE
        self._reset_timers()
        self.lead_transferee = NONE
        self._votes = {}
        self.prs = {}
        self._pending_reads = []
        self._reads_awaiting_commit = []
        self._needs_bcast = False
        self._needs_read_heartbeat = False
        self._read_round = 0

    def _reset_timers(self) -> None:
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        e = self.config.election_ticks
        self.randomized_election_ticks = e + self._rng.randrange(e)

    def _become_follower(self, term: Term, leader: NodeId) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Unlike a real candidate, keep term and vote: nothing to persist.
        self._votes = {}
        self.prs = {}
        self.leader = NONE
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(Term(self.term + 1))
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        # The votes just won are the only recent evidence of who is alive:
        # counting everyone as active would let a leader cut off right after
        # its election keep leading for two election timeouts.
        granted = {n for n, ok in self._votes.items() if ok}
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        last = self.log.last_index()
        for node in self.conf.members():
            self.prs[node] = self._new_progress(Index(last + 1))
            self.prs[node].recent_active = node in granted
        self.prs[self.id] = self._new_progress(Index(last + 1))
        self.prs[self.id].match = self.log.last_stable_index()
        self.prs[self.id].recent_active = True
        # §5.4.2 / §6.4: a no-op of the new term lets earlier entries commit
        # and gives read-index a commit point in this term.
        self._append(EntryType.NORMAL, b"")

    def _new_progress(self, next_: Index) -> Progress:
        pr = Progress(match=Index(0), next=next_, max_inflight=self.config.max_inflight)
        pr.recent_active = True  # a new member: give it a full timeout
        return pr

    def _require_leader(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader)

    # ======================================================================
    # Timers
    # ======================================================================
    def _tick_election(self) -> None:
        self.election_elapsed += 1
        # A server that may not campaign (a learner, or one that has not yet
        # seen the configuration adding it) keeps counting: restarting its
        # clock kept it in its leader's lease forever after that leader was
        # gone, refusing the votes a new leader needed (found by seed 6862).
        if self.election_elapsed >= self.randomized_election_ticks and self.is_promotable():
            self.election_elapsed = 0
            self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.lead_transferee:
            # Its own clock: transfers must not postpone CheckQuorum.
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self.lead_transferee = NONE
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                # CheckQuorum (§6.2): a leader that cannot reach a majority
                # steps down instead of serving stale reads indefinitely.
                self._become_follower(self.term, NONE)
                return
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            if self._pending_reads:
                # Also a new round for every read waiting (a lost round is
                # retried here).
                self._needs_read_heartbeat = False
                self._read_round = self._read_seq
            self._bcast_heartbeat(self._read_seq if self._pending_reads else 0)

    def _quorum_active(self) -> bool:
        active = [n for n, pr in self.prs.items() if pr.recent_active or n == self.id]
        for n, pr in self.prs.items():
            if n != self.id:
                pr.recent_active = False
        return quorum.has_quorum(self.conf.voters, active)

    # ======================================================================
    # Leader
    # ======================================================================
    def _step_leader(self, m: Message) -> None:
        pr = self.prs.get(m.from_)
        if pr is None:
            return
        if m.type is MsgType.APPEND_RESP:
            pr.recent_active = True
            self._handle_append_resp(m, pr)
        elif m.type is MsgType.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.heartbeat_answered()
            if pr.match < self.log.last_index():
                self._send_append(m.from_)
            if m.context:
                self._ack_reads(m.from_, m.context)

    def _handle_append_resp(self, m: Message, pr: Progress) -> None:
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        was_paused = pr.is_paused()
        if pr.maybe_update(m.index):
            if (
                pr.state is ProgressState.PROBE
                or pr.state is ProgressState.SNAPSHOT
                and pr.match >= pr.pending_snapshot
            ):
                pr.become_replicate()
            if self._maybe_commit():
                self._needs_bcast = True  # carry the new commit index to everyone
            elif was_paused or pr.state is ProgressState.REPLICATE:
                self._send_appends(m.from_)
            if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
                self._send(Message(MsgType.TIMEOUT_NOW, self.id, m.from_, self.term))

    def _maybe_commit(self) -> bool:
        match = {n: pr.match for n, pr in self.prs.items()}
        index = quorum.committed_index(self.conf.voters, match)
        if index <= self.log.committed or not self._can_commit(index):
            return False
        first_in_term = self.log.term(self.log.committed) != self.term
        self.log.commit_to(index)
        if first_in_term:
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for request_id in waiting:
                self._start_read(request_id)
        self._step_down_if_removed()
        return True

    def _can_commit(self, index: Index) -> bool:
        """§5.4.2: only an entry of the current term commits by counting
        replicas; earlier ones commit with it, by the Log Matching Property."""
        return self.log.term(index) == self.term

    def _step_down_if_removed(self) -> None:
        """§4.2.2: a leader removed from the configuration steps down once the
        change commits, after handing over to the most up-to-date voter."""
        if self.conf.is_voter(self.id) or not self._conf_history:
            return
        if self._conf_history[-1][0] > self.log.committed:
            return
        voters = [v for v in self.conf.voters if v in self.prs]
        if voters:
            best = max(voters, key=lambda v: (self.prs[v].match, v))
            if self.prs[best].match == self.log.last_index():
                self._send(Message(MsgType.TIMEOUT_NOW, self.id, best, self.term))
        self._become_follower(self.term, NONE)

    def _send_appends(self, to: NodeId) -> None:
        """Send appends to `to`, filling its in-flight window while streaming."""
        if self._send_append(to):
            while self.prs[to].state is ProgressState.REPLICATE and self._send_append(
                to, send_if_empty=False
            ):
                pass

    def _bcast_append(self) -> None:
        for node in list(self.prs):
            if node != self.id:
                self._send_appends(node)

    def _send_append(self, to: NodeId, send_if_empty: bool = True) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev_index = Index(pr.next - 1)
        prev_term = self.log.term(prev_index)
        entries = self.log.entries(
            pr.next, Index(self.log.last_index() + 1), self.config.max_msg_bytes
        )
        if prev_term is None or entries is None:
            return self._send_snapshot(to, pr)
        if not entries and not send_if_empty:
            return False
        if not entries and pr.state is ProgressState.REPLICATE and pr.match == prev_index:
            # It holds every entry: only the commit index is news, and its
            # answer would tell nothing. Two such answers per write cost the
            # leader a third of its wake-ups at one client (issue 7). Like a
            # heartbeat's, the index never passes what it is known to hold.
            commit = Index(min(pr.match, self.log.committed))
            self._send(Message(MsgType.COMMIT, self.id, to, self.term, commit=commit))
            return True
        self._send(
            Message(
                MsgType.APPEND,
                self.id,
                to,
                self.term,
                log_term=prev_term,
                index=prev_index,
                entries=tuple(entries),
                commit=self.log.committed,
            )
        )
        if entries:
            pr.sent(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: NodeId, pr: Progress) -> bool:
        """The entries `to` needs are compacted: ship the latest snapshot (§7)."""
        if not pr.recent_active:
            return False
        meta = self.log.storage.snapshot_meta()
        if meta.index == 0:
            raise LogInvariantError(f"entries for {to} compacted but no snapshot exists")
        self._send(Message(MsgType.SNAPSHOT, self.id, to, self.term, snapshot=meta))
        pr.become_snapshot(meta.index)
        return True

    def _bcast_heartbeat(self, context: int) -> None:
        for node, pr in self.prs.items():
            if node != self.id:
                # Never tell a follower to commit past what it is known to hold.
                commit = Index(min(pr.match, self.log.committed))
                self._send(
                    Message(
                        MsgType.HEARTBEAT, self.id, node, self.term, commit=commit, context=context
                    )
                )

    def _append(self, type_: EntryType, data: bytes) -> Index:
        index = Index(self.log.last_index() + 1)
        entry = Entry(self.term, index, data, type_)
        self.log.append([entry])
        if type_ is EntryType.CONFIG:
            self._on_conf_appended([entry])
        self._needs_bcast = True
        return index

    # -- ReadIndex (dissertation §6.4) --------------------------------------
    def _start_read(self, request_id: int) -> None:
        index = self.log.committed
        if quorum.has_quorum(self.conf.voters, [self.id]):
            self._read_states.append(ReadState(index, request_id))
            return
        self._read_seq += 1
        self._pending_reads.append(_PendingRead(self._read_seq, index, request_id, {self.id}))
        self._needs_read_heartbeat = True

    def _ack_reads(self, node: NodeId, seq: int) -> None:
        for p in self._pending_reads:
            if p.seq <= seq:
                p.acks.add(node)
        # An ack for a later read confirms every earlier one too.
        while self._pending_reads and quorum.has_quorum(
            self.conf.voters, self._pending_reads[0].acks
        ):
            p = self._pending_reads.pop(0)
            self._read_states.append(ReadState(p.index, p.request_id))
        if self._read_round and (
            not self._pending_reads or self._pending_reads[0].seq > self._read_round
        ):
            self._read_round = 0  # confirmed: the reads that came meanwhile go next

    # ======================================================================
    # Candidate and follower
    # ======================================================================
    def _step_candidate(self, m: Message) -> None:
        if m.type in _FROM_LEADER:
            self._become_follower(m.term, m.from_)
            self._step_follower(m)
            return
        expected = MsgType.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MsgType.VOTE_RESP
        if m.type is not expected:
            return
        self._votes.setdefault(m.from_, not m.reject)
        result = self._tally()
        if result is quorum.VoteResult.WON:
            self._on_election_won(
                _Campaign.PRE_ELECTION if self.role is Role.PRE_CANDIDATE else _Campaign.ELECTION
            )
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        if m.type in _FROM_LEADER:
            self.election_elapsed = 0
            self.leader = m.from_
        if m.type is MsgType.APPEND:
            self._handle_append(m)
        elif m.type in (MsgType.HEARTBEAT, MsgType.COMMIT):
            self.log.commit_to(Index(min(m.commit, self.log.last_index())))
            if m.type is MsgType.HEARTBEAT:  # a COMMIT is not answered
                self._send(
                    Message(MsgType.HEARTBEAT_RESP, self.id, m.from_, self.term, context=m.context)
                )
        elif m.type is MsgType.SNAPSHOT:
            self._handle_snapshot(m)
        elif m.type is MsgType.TIMEOUT_NOW and self.is_promotable():
            # §3.10: start an election at once, skipping pre-vote and leases.
            self._campaign(_Campaign.TRANSFER)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(
                Message(MsgType.APPEND_RESP, self.id, m.from_, self.term, index=self.log.committed)
            )
            return
        conflict = (
            self.log.find_conflict(m.entries) if self.log.match_term(m.index, m.log_term) else 0
        )
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            if conflict:
                self._on_entries_replaced(Index(conflict), m.entries[conflict - m.index - 1 :])
            self._send(Message(MsgType.APPEND_RESP, self.id, m.from_, self.term, index=last_new))
            return
        hint = self.log.find_conflict_by_term(
            Index(min(m.index, self.log.last_index())), m.log_term
        )
        self._send(
            Message(
                MsgType.APPEND_RESP,
                self.id,
                m.from_,
                self.term,
                index=m.index,
                reject=True,
                reject_hint=hint,
                log_term=self.log.term(hint) or Term(0),
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            return
        if snap.index <= self.log.committed:
            pass
        elif self.log.match_term(snap.index, snap.term):
            # We already hold the snapshot's last entry: just fast-forward.
            self.log.commit_to(snap.index)
        else:
            self.log.restore(snap)
            self._conf_base = snap.conf
            self._conf_history = []
        # Only the committed prefix is known to match the leader's log.
        self._send(
            Message(MsgType.APPEND_RESP, self.id, m.from_, self.term, index=self.log.committed)
        )

    # ======================================================================
    # Configuration tracking
    # ======================================================================
    def _scan_conf_entries(self, lo: Index, hi: Index) -> None:
        while lo < hi:
            batch = self.log.entries(lo, hi, self.config.max_msg_bytes)
            if not batch:
                raise LogInvariantError(f"cannot read entries [{lo}, {hi}) on start")
            self._on_conf_appended(batch)
            lo = Index(batch[-1].index + 1)

    def _on_entries_replaced(self, first: Index, entries: tuple[Entry, ...]) -> None:
        """Entries from `first` on were replaced: a truncated configuration
        entry no longer applies (§4.1: the latest in the log is in force)."""
        self._conf_history = [(i, c) for i, c in self._conf_history if i < first]
        self._on_conf_appended(entries)

    def _on_conf_appended(self, entries: tuple[Entry, ...] | list[Entry]) -> None:
        for e in entries:
            if e.type is EntryType.CONFIG:
                self._conf_history.append((e.index, ConfState.decode(e.data)))
                if self.role is Role.LEADER:
                    self._sync_progress()

    def _sync_progress(self) -> None:
        """Track exactly the members of the configuration in force."""
        members = set(self.conf.members())
        for node in list(self.prs):
            if node not in members and node != self.id:
                del self.prs[node]
        for node in self.conf.members():
            if node not in self.prs:
                self.prs[node] = self._new_progress(Index(self.log.last_index() + 1))
        if self.lead_transferee and not self.conf.is_voter(self.lead_transferee):
            self.lead_transferee = NONE

    # ======================================================================
    # Ready helpers
    # ======================================================================
    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def _committed_entries(self) -> list[Entry]:
        return self.log.next_committed(self.config.max_apply_bytes)

    def _send(self, m: Message) -> None:
        if m.type in _AFTER_PERSIST:
            self._msgs_after.append(m)
        else:
            self._msgs.append(m)


_FROM_LEADER = frozenset({MsgType.APPEND, MsgType.HEARTBEAT, MsgType.SNAPSHOT, MsgType.COMMIT})


def _apply_change(conf: ConfState, change: ConfChange) -> ConfState:
    voters = [v for v in conf.voters if v != change.node_id]
    learners = [v for v in conf.learners if v != change.node_id]
    if change.type is ConfChangeType.ADD_VOTER:
        if conf.is_voter(change.node_id):
            raise ConfChangeError(f"{change.node_id} is already a voter")
        voters.append(change.node_id)
    elif change.type is ConfChangeType.ADD_LEARNER:
        if change.node_id in conf.learners:
            raise ConfChangeError(f"{change.node_id} is already a learner")
        learners.append(change.node_id)
    elif not conf.is_member(change.node_id):
        raise ConfChangeError(f"{change.node_id} is not a member")
    if not voters:
        raise ConfChangeError("a configuration needs at least one voter")
    addrs = dict(conf.addrs)
    if change.type is ConfChangeType.REMOVE:
        addrs.pop(change.node_id, None)
    elif change.address:
        addrs[change.node_id] = change.address
    return ConfState.of(voters, learners, addrs)
