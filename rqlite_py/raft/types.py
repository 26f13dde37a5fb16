"""Values exchanged between the Raft core and its driver.

Everything here is an immutable value: the core never shares mutable state
with the code that drives it. Field names follow the Raft paper (Figure 2).
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import NewType

NodeId = NewType("NodeId", str)
Index = NewType("Index", int)
Term = NewType("Term", int)

NONE: NodeId = NodeId("")
"""No node: the vote of a node that has not voted, the leader nobody knows."""


class Role(enum.Enum):
    FOLLOWER = "Follower"
    PRE_CANDIDATE = "PreCandidate"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


class EntryType(enum.Enum):
    NORMAL = 0
    """Data for the state machine; empty data is the leader's no-op (§5.4.2)."""
    CONFIG = 1
    """A whole new configuration (ConfState), effective once appended (§4.1)."""


class MsgType(enum.Enum):
    PRE_VOTE = "pre_vote"
    PRE_VOTE_RESP = "pre_vote_resp"
    VOTE = "vote"
    VOTE_RESP = "vote_resp"
    APPEND = "append"
    APPEND_RESP = "append_resp"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESP = "heartbeat_resp"
    SNAPSHOT = "snapshot"
    TIMEOUT_NOW = "timeout_now"
    COMMIT = "commit"
    """The leader's commit index, for a follower known to hold every entry:
    not answered (see RaftCore._send_append). Last, so that the wire codes
    of the others stay as they were."""


@dataclass(frozen=True, slots=True)
class Entry:
    term: Term
    index: Index
    data: bytes = b""
    type: EntryType = EntryType.NORMAL

    def size(self) -> int:
        return len(self.data) + 24


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before the messages that depend on it are sent."""

    term: Term = Term(0)
    vote: NodeId = NONE
    commit: Index = Index(0)


@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster configuration: voters elect and count toward quorum; learners
    (non-voters) only receive the log. Both tuples are sorted so that equal
    configurations compare equal and iterate in the same order everywhere."""

    voters: tuple[NodeId, ...] = ()
    learners: tuple[NodeId, ...] = ()
    addrs: tuple[tuple[NodeId, str], ...] = ()
    """Each member's Raft address, sorted by id. The core only carries it,
    so that every node learns where its peers are from the log itself."""

    def __post_init__(self) -> None:
        if tuple(sorted(self.voters)) != self.voters or tuple(sorted(self.learners)) != (
            self.learners
        ):
            raise ValueError("ConfState members must be sorted")
        if set(self.voters) & set(self.learners):
            raise ValueError("a node cannot be both voter and learner")

    @staticmethod
    def of(
        voters: list[str] | tuple[str, ...],
        learners: list[str] | tuple[str, ...] = (),
        addrs: dict[str, str] | None = None,
    ) -> ConfState:
        members = set(voters) | set(learners)
        return ConfState(
            tuple(sorted(NodeId(v) for v in voters)),
            tuple(sorted(NodeId(v) for v in learners)),
            tuple(sorted((NodeId(k), v) for k, v in (addrs or {}).items() if k in members)),
        )

    def addr(self, node: NodeId) -> str:
        for n, a in self.addrs:
            if n == node:
                return a
        return ""

    def members(self) -> tuple[NodeId, ...]:
        return tuple(sorted(self.voters + self.learners))

    def is_voter(self, node: NodeId) -> bool:
        return node in self.voters

    def is_member(self, node: NodeId) -> bool:
        return node in self.voters or node in self.learners

    def encode(self) -> bytes:
        obj: dict[str, object] = {"voters": list(self.voters), "learners": list(self.learners)}
        if self.addrs:
            obj["addrs"] = dict(self.addrs)
        return json.dumps(obj).encode()

    @staticmethod
    def decode(data: bytes) -> ConfState:
        obj = json.loads(data)
        return ConfState.of(obj["voters"], obj["learners"], obj.get("addrs"))


class ConfChangeType(enum.Enum):
    ADD_VOTER = "add_voter"
    """Add a new voter, or promote a learner."""
    ADD_LEARNER = "add_learner"
    """Add a new learner, or demote a voter."""
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: NodeId
    address: str = ""
    """The node's Raft address (adds only; empty keeps the one known)."""


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a state-machine snapshot stands in the log. The snapshot's bytes
    never pass through the core: the driver ships and installs them."""

    index: Index = Index(0)
    term: Term = Term(0)
    conf: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft RPC or response. Unused fields keep their zero value.

    `index`/`log_term` are prev_log_index/prev_log_term on APPEND, the last
    log index/term on (PRE_)VOTE, and the matched or rejected index on
    APPEND_RESP. `reject_hint`/`log_term` on a rejecting APPEND_RESP let the
    leader skip a whole conflicting term at once (§5.3, fast back-off).
    `context` ties heartbeats to ReadIndex requests (dissertation §6.4)."""

    type: MsgType
    from_: NodeId
    to: NodeId
    term: Term
    log_term: Term = Term(0)
    index: Index = Index(0)
    entries: tuple[Entry, ...] = ()
    commit: Index = Index(0)
    reject: bool = False
    reject_hint: Index = Index(0)
    snapshot: SnapshotMeta | None = None
    context: int = 0
    force: bool = False
    """A vote forced by leadership transfer: voters ignore their leader lease."""


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: the read identified by `request_id` may be served
    once the state machine has applied `index`."""

    index: Index
    request_id: int


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver may want to show; never persisted."""

    leader: NodeId
    role: Role
    term: Term


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver, to be done in this order (ARCHITECTURE.md, "The
    Ready contract"):

    1. send `messages` (they do not depend on anything being durable);
    2. if `snapshot` is set, install the received snapshot in the state machine;
    3. persist `entries` (replacing any persisted entries at or after
       `entries[0].index`) and `hard_state` when set, and fsync;
    4. send `messages_after_persist` (vote grants, append acknowledgements);
    5. apply `committed_entries` in order;
    6. call `advance(ready)`.

    No other call may be made on the core between `ready()` and `advance()`.
    """

    soft_state: SoftState
    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()
    snapshot: SnapshotMeta | None = None
    committed_entries: tuple[Entry, ...] = ()
    read_states: tuple[ReadState, ...] = ()
    messages: tuple[Message, ...] = ()
    messages_after_persist: tuple[Message, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.entries
            or self.snapshot
            or self.committed_entries
            or self.read_states
            or self.messages
            or self.messages_after_persist
        )
