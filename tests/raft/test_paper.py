"""Paper-rule tests: one rule of Raft per test.

Each test drives a single `RaftCore` with `step`/`tick`/`propose` and asserts
on the `Ready` it returns, playing the driver by hand (persist into a
`MemoryStorage`, then `advance`). Docstrings cite the Raft paper (§5, §7,
Figure 2) or Ongaro's dissertation (§3.10, §4, §6, §9.6, §10).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from rqlite_py.raft.core import (
    ConfChangeError,
    Config,
    ConfigError,
    NotLeaderError,
    ProposalDroppedError,
    RaftCore,
)
from rqlite_py.raft.storage import MemoryStorage
from rqlite_py.raft.types import (
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
    Term,
)

A, B, C, D, L = NodeId("a"), NodeId("b"), NodeId("c"), NodeId("d"), NodeId("l")
ELECTION_TICKS = 10


# ---------------------------------------------------------------------------
# Helpers: a hand-played driver
# ---------------------------------------------------------------------------
def make_storage(
    voters: tuple[NodeId, ...] = (A, B, C),
    learners: tuple[NodeId, ...] = (),
    terms: tuple[int, ...] = (),
    *,
    term: int = 1,
    vote: NodeId = NONE,
    commit: int = 1,
) -> MemoryStorage:
    """A bootstrapped log (entry 1: the configuration, term 1) followed by
    empty entries of the given `terms` at indexes 2, 3, ..."""
    storage = MemoryStorage.bootstrapped(ConfState.of(voters, learners))
    storage.append([Entry(Term(t), Index(i)) for i, t in enumerate(terms, start=2)])
    storage.set_hard_state(HardState(Term(term), vote, Index(commit)))
    return storage


def persist(storage: MemoryStorage, rd: Ready) -> None:
    """What a driver makes durable for a Ready (types.Ready, steps 2-3)."""
    if rd.snapshot is not None:
        storage.apply_snapshot(rd.snapshot, b"")
    storage.append(rd.entries)
    if rd.hard_state is not None:
        storage.set_hard_state(rd.hard_state)


class Node:
    """A core and the storage its driver persists into."""

    def __init__(self, core: RaftCore, storage: MemoryStorage) -> None:
        self.core = core
        self.storage = storage

    @property
    def id(self) -> NodeId:
        return self.core.id

    def step(self, m: Message) -> None:
        self.core.step(m)

    def cycle(self) -> Ready:
        """One driver round: ready(), persist, advance(). Returns the Ready."""
        rd = self.core.ready()
        persist(self.storage, rd)
        self.core.advance(rd)
        return rd


def new_node(
    node_id: NodeId = A, storage: MemoryStorage | None = None, *, seed: int = 7, **config: object
) -> Node:
    """A follower, with its first Ready (applying the bootstrap entry) done."""
    storage = make_storage() if storage is None else storage
    core = RaftCore(Config(node_id, **config), storage, random.Random(seed))  # type: ignore[arg-type]
    node = Node(core, storage)
    node.cycle()
    return node


def msg(type_: MsgType, frm: NodeId, to: NodeId, term: int, **fields: object) -> Message:
    return Message(type_, frm, to, Term(term), **fields)  # type: ignore[arg-type]


def sent(rd: Ready, type_: MsgType | None = None, to: NodeId | None = None) -> list[Message]:
    """Messages of a Ready (both groups), filtered by type and destination."""
    return [
        m
        for m in rd.messages + rd.messages_after_persist
        if (type_ is None or m.type is type_) and (to is None or m.to == to)
    ]


def elect(node: Node) -> Ready:
    """Campaign and win, every other voter granting (pre-)votes. Returns the
    new leader's first Ready: its no-op and the appends that carry it."""
    node.core.campaign()
    for _ in range(3):
        if node.core.role is Role.LEADER:
            break
        for m in sent(node.cycle()):
            if m.type is MsgType.PRE_VOTE:
                node.step(msg(MsgType.PRE_VOTE_RESP, m.to, node.id, m.term))
            elif m.type is MsgType.VOTE:
                node.step(msg(MsgType.VOTE_RESP, m.to, node.id, m.term))
    assert node.core.role is Role.LEADER
    return node.cycle()


def ack(node: Node, frm: NodeId, index: int) -> None:
    """`frm` acknowledges that its log matches the leader's up to `index`."""
    node.step(msg(MsgType.APPEND_RESP, frm, node.id, node.core.term, index=Index(index)))


def deliver(m: Message, to: Node) -> Ready:
    """Step one message into `to` and run its driver round."""
    to.step(m)
    return to.cycle()


def make_leader(**config: object) -> Node:
    """a, leader of {a, b, c} at term 2, its no-op (index 2) committed and
    acknowledged by b and c (both streaming, REPLICATE)."""
    node = new_node(A, **config)
    elect(node)
    ack(node, B, 2)
    ack(node, C, 2)
    node.cycle()
    assert node.core.log.committed == 2
    return node


def single_voter_leader() -> Node:
    node = new_node(A, make_storage(voters=(A,)))
    elect(node)  # the no-op is counted once persisted...
    node.cycle()  # ...and handed out for apply here
    assert node.core.log.committed == 2
    return node


def appended_indexes(rd: Ready, to: NodeId) -> list[list[int]]:
    return [[e.index for e in m.entries] for m in sent(rd, MsgType.APPEND, to)]


# ---------------------------------------------------------------------------
# §5.1 Terms
# ---------------------------------------------------------------------------
def _as_leader() -> Node:
    node = new_node(A)
    elect(node)
    return node


def _as_candidate() -> Node:
    node = new_node(A, pre_vote=False)
    node.core.campaign()
    node.cycle()
    return node


def _as_follower() -> Node:
    node = new_node(A)
    node.step(msg(MsgType.HEARTBEAT, B, A, 2))
    node.cycle()
    return node


@pytest.mark.parametrize("start", [_as_leader, _as_candidate, _as_follower])
def test_higher_term_makes_any_server_a_follower(start: Callable[[], Node]) -> None:
    """§5.1: a server that sees a higher term adopts it and becomes follower,
    with no vote in the new term (persisted before anything else happens)."""
    node = start()
    assert node.core.term == 2
    node.step(msg(MsgType.APPEND_RESP, C, A, 5, index=Index(1)))
    rd = node.cycle()
    assert node.core.role is Role.FOLLOWER
    assert (node.core.term, node.core.vote, node.core.leader) == (5, NONE, NONE)
    assert rd.hard_state == HardState(Term(5), NONE, Index(1))
    assert rd.soft_state.role is Role.FOLLOWER


def test_stale_term_append_is_refused_and_answered_with_current_term() -> None:
    """§5.1: a request with a stale term is rejected; the reply carries the
    current term so that the deposed leader learns it."""
    b = new_node(B, make_storage(term=3))
    rd = deliver(
        msg(
            MsgType.APPEND,
            A,
            B,
            2,
            index=Index(1),
            log_term=Term(1),
            entries=(Entry(Term(2), Index(2)),),
        ),
        b,
    )
    assert rd.entries == ()
    assert b.core.log.last_index() == 1
    assert b.core.leader == NONE
    assert sent(rd) == [msg(MsgType.APPEND_RESP, B, A, 3)]


def test_deposed_leader_steps_down_on_reply_from_newer_term() -> None:
    """§5.1: the stale leader's heartbeat is answered with the newer term,
    which makes it step down."""
    a = new_node(A)
    elect(a)
    b = new_node(B, make_storage(term=3))
    a.core.tick()
    heartbeat = sent(a.cycle(), MsgType.HEARTBEAT, B)[0]
    reply = sent(deliver(heartbeat, b))
    assert [m.term for m in reply] == [3]
    deliver(reply[0], a)
    assert (a.core.role, a.core.term) == (Role.FOLLOWER, 3)


def test_stale_term_vote_request_is_not_granted() -> None:
    """§5.1: a vote request from an older term is never granted (a pre-vote
    is answered with a rejection carrying the newer term)."""
    b = new_node(B, make_storage(term=3))
    rd = deliver(msg(MsgType.VOTE, C, B, 2, index=Index(9), log_term=Term(2)), b)
    assert sent(rd) == []
    assert (b.core.term, b.core.vote) == (3, NONE)
    rd = deliver(msg(MsgType.PRE_VOTE, C, B, 2, index=Index(9), log_term=Term(2)), b)
    assert sent(rd) == [msg(MsgType.PRE_VOTE_RESP, B, C, 3, reject=True)]


# ---------------------------------------------------------------------------
# §5.2 Leader election
# ---------------------------------------------------------------------------
def test_election_timeout_is_randomized_in_e_to_2e() -> None:
    """§5.2: a follower that hears from nobody starts an election after a
    timeout drawn at random from [e, 2e), so that split votes are rare."""
    waited = []
    for seed in range(30):
        node = new_node(A, seed=seed)
        ticks = 0
        while node.core.role is Role.FOLLOWER:
            node.core.tick()
            ticks += 1
            assert ticks < 2 * ELECTION_TICKS
        waited.append(ticks)
    assert min(waited) >= ELECTION_TICKS
    assert len(set(waited)) > 3


def test_election_timer_is_reset_by_granting_a_vote_and_by_leader_contact() -> None:
    """Figure 2 (Followers): a follower becomes a candidate only if an
    election timeout elapses without granting its vote to a candidate or
    hearing AppendEntries from the current leader (all in one term here,
    so that no term change resets the timer instead)."""
    b = new_node(B, make_storage(term=2), seed=5)
    timeout = b.core.randomized_election_ticks
    for _ in range(timeout - 1):
        b.core.tick()
    b.step(msg(MsgType.VOTE, C, B, 2, index=Index(1), log_term=Term(1)))
    assert b.core.vote == C
    for _ in range(timeout - 1):
        b.core.tick()
    b.step(msg(MsgType.HEARTBEAT, C, B, 2))
    for _ in range(timeout - 1):
        b.core.tick()
    assert (b.core.role, b.core.leader) == (Role.FOLLOWER, C)
    for _ in range(timeout + 1):
        b.core.tick()
    assert b.core.role is Role.PRE_CANDIDATE


def test_candidate_increments_term_votes_for_itself_and_requests_votes_after_persist() -> None:
    """§5.2 / Figure 2: a candidate increments its term and votes for
    itself; its VOTE requests go out only once that vote is durable
    (messages_after_persist, with the hard state in the same Ready)."""
    node = new_node(A, pre_vote=False)
    node.core.campaign()
    rd = node.cycle()
    assert rd.soft_state.role is Role.CANDIDATE
    assert rd.hard_state == HardState(Term(2), A, Index(1))
    assert rd.messages == ()
    assert sorted(rd.messages_after_persist, key=lambda m: m.to) == [
        msg(MsgType.VOTE, A, to, 2, index=Index(1), log_term=Term(1)) for to in (B, C)
    ]


def test_vote_grant_is_sent_only_after_persisting_the_vote() -> None:
    """Figure 2: a voter records its vote durably before answering; the
    grant travels in messages_after_persist with the hard state."""
    b = new_node(B)
    rd = deliver(msg(MsgType.VOTE, A, B, 2, index=Index(1), log_term=Term(1)), b)
    assert rd.hard_state == HardState(Term(2), A, Index(1))
    assert rd.messages == ()
    assert rd.messages_after_persist == (msg(MsgType.VOTE_RESP, B, A, 2),)


def test_at_most_one_vote_per_term() -> None:
    """§5.2: each server votes for at most one candidate in a term
    (a repeated request from the same candidate is granted again)."""
    b = new_node(B)
    deliver(msg(MsgType.VOTE, A, B, 2, index=Index(1), log_term=Term(1)), b)
    rd = deliver(msg(MsgType.VOTE, C, B, 2, index=Index(5), log_term=Term(1)), b)
    assert sent(rd) == [msg(MsgType.VOTE_RESP, B, C, 2, reject=True)]
    assert b.core.vote == A
    rd = deliver(msg(MsgType.VOTE, A, B, 2, index=Index(1), log_term=Term(1)), b)
    assert sent(rd) == [msg(MsgType.VOTE_RESP, B, A, 2)]


def test_candidate_with_majority_becomes_leader() -> None:
    """§5.2: a candidate wins once a majority (itself included) granted."""
    node = _as_candidate()
    node.step(msg(MsgType.VOTE_RESP, B, A, 2))
    assert node.core.role is Role.LEADER
    assert node.core.leader == A


def test_candidate_rejected_by_majority_returns_to_follower() -> None:
    """§5.2: a candidate that cannot win goes back to follower in the same
    term (its vote for itself stands)."""
    node = _as_candidate()
    node.step(msg(MsgType.VOTE_RESP, B, A, 2, reject=True))
    assert node.core.role is Role.CANDIDATE  # one rejection: still pending
    node.step(msg(MsgType.VOTE_RESP, C, A, 2, reject=True))
    assert (node.core.role, node.core.term, node.core.vote) == (Role.FOLLOWER, 2, A)


def test_candidate_steps_down_on_append_from_leader_of_its_term() -> None:
    """§5.2: a candidate that receives AppendEntries from a leader of its
    own term recognises that leader and returns to follower."""
    node = _as_candidate()
    rd = deliver(msg(MsgType.APPEND, C, A, 2, index=Index(1), log_term=Term(1)), node)
    assert (node.core.role, node.core.leader, node.core.term) == (Role.FOLLOWER, C, 2)
    assert sent(rd) == [msg(MsgType.APPEND_RESP, A, C, 2, index=Index(1))]


def test_leader_appends_noop_on_election() -> None:
    """§5.4.2 / §6.4: a new leader appends an empty entry of its term and
    replicates it at once, so older entries and reads can commit."""
    rd = elect(new_node(A))
    noop = Entry(Term(2), Index(2), b"", EntryType.NORMAL)
    assert rd.entries == (noop,)
    for to in (B, C):
        assert sent(rd, MsgType.APPEND, to) == [
            msg(
                MsgType.APPEND,
                A,
                to,
                2,
                index=Index(1),
                log_term=Term(1),
                entries=(noop,),
                commit=Index(1),
            )
        ]


def test_proposal_to_follower_raises_not_leader_with_hint() -> None:
    """§5.1: only the leader accepts client commands; others redirect."""
    b = new_node(B)
    deliver(msg(MsgType.HEARTBEAT, A, B, 2), b)
    with pytest.raises(NotLeaderError) as err:
        b.core.propose(b"x")
    assert err.value.leader == A


# ---------------------------------------------------------------------------
# §5.3 Log replication
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prev_index", "prev_term", "hint", "hint_term"),
    [
        (3, 2, 2, 2),  # prev beyond the follower's last entry
        (2, 3, 2, 2),  # entry at prev exists with another (older) term
        (2, 1, 1, 1),  # entry at prev has a newer term: skip back past term 2
    ],
)
def test_consistency_check_rejects_mismatching_prev(
    prev_index: int, prev_term: int, hint: int, hint_term: int
) -> None:
    """§5.3: a follower refuses entries whose prev_log_index/prev_log_term
    do not match its log, and leaves its log alone; the rejection carries a
    hint (index and term) for the leader's fast back-off."""
    b = new_node(B, make_storage(terms=(2,), term=2))
    rd = deliver(
        msg(
            MsgType.APPEND,
            A,
            B,
            3,
            index=Index(prev_index),
            log_term=Term(prev_term),
            entries=(Entry(Term(3), Index(prev_index + 1)),),
        ),
        b,
    )
    assert rd.entries == ()
    assert b.core.log.last_index() == 2 and b.core.log.term(Index(2)) == 2
    assert sent(rd) == [
        msg(
            MsgType.APPEND_RESP,
            B,
            A,
            3,
            index=Index(prev_index),
            reject=True,
            reject_hint=Index(hint),
            log_term=Term(hint_term),
        )
    ]


def test_conflicting_suffix_is_truncated_and_replaced() -> None:
    """§5.3 / Figure 2: an existing entry that conflicts with a new one
    (same index, other term) is deleted with all that follow it."""
    b = new_node(B, make_storage(terms=(2, 2, 2), term=2))
    new = Entry(Term(3), Index(3), b"x")
    rd = deliver(msg(MsgType.APPEND, A, B, 3, index=Index(2), log_term=Term(2), entries=(new,)), b)
    assert rd.entries == (new,)
    assert b.core.log.last_index() == 3
    assert b.storage.last_index() == 3 and b.storage.term(Index(3)) == 3
    assert sent(rd) == [msg(MsgType.APPEND_RESP, B, A, 3, index=Index(3))]


def test_append_matching_existing_entries_truncates_nothing() -> None:
    """§5.3 / Figure 2: only a *conflicting* entry truncates; a delayed
    append whose entries are already present leaves later entries alone."""
    b = new_node(B, make_storage(terms=(2, 2), term=2))
    rd = deliver(
        msg(
            MsgType.APPEND,
            A,
            B,
            2,
            index=Index(1),
            log_term=Term(1),
            entries=(Entry(Term(2), Index(2)),),
        ),
        b,
    )
    assert rd.entries == ()
    assert b.core.log.last_index() == 3
    assert sent(rd) == [msg(MsgType.APPEND_RESP, B, A, 2, index=Index(2))]


def test_follower_commit_is_min_of_leader_commit_and_last_new_entry() -> None:
    """Figure 2, AppendEntries rule 5: commit = min(leader_commit, index of
    last new entry); entries beyond it are not yet known to match."""
    b = new_node(B, make_storage(terms=(2, 2), term=2))
    rd = deliver(
        msg(
            MsgType.APPEND,
            A,
            B,
            2,
            index=Index(1),
            log_term=Term(1),
            entries=(Entry(Term(2), Index(2)),),
            commit=Index(3),
        ),
        b,
    )
    assert b.core.log.committed == 2
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    assert [e.index for e in rd.committed_entries] == [2]


def test_append_ack_appears_only_in_messages_after_persist() -> None:
    """Figure 2: a follower acknowledges entries only once they are durable:
    the ack rides in messages_after_persist, the entries in the same Ready."""
    b = new_node(B)
    e = Entry(Term(2), Index(2), b"x")
    rd = deliver(msg(MsgType.APPEND, A, B, 2, index=Index(1), log_term=Term(1), entries=(e,)), b)
    assert rd.entries == (e,)
    assert rd.messages == ()
    assert rd.messages_after_persist == (msg(MsgType.APPEND_RESP, B, A, 2, index=Index(2)),)


def test_fast_backoff_skips_a_whole_conflicting_term() -> None:
    """§5.3 (end of section): the follower's rejection names the last index
    of an older term; the leader skips the follower's conflicting term in
    one round trip instead of one entry per round trip, and a duplicate of
    the (now stale) rejection does not move it again."""
    a = new_node(A, make_storage(terms=(2, 2), term=4))
    b = new_node(B, make_storage(terms=(3, 3, 3, 3, 3), term=4))
    first = sent(elect(a), MsgType.APPEND, B)
    assert [(m.index, m.log_term) for m in first] == [(3, 2)]
    rejection = sent(deliver(first[0], b))
    assert [(m.reject, m.index, m.reject_hint, m.log_term) for m in rejection] == [(True, 3, 1, 1)]
    retry = sent(deliver(rejection[0], a), MsgType.APPEND, B)
    # Without the hint, the retry would start after index 2 (one step back).
    assert [(m.index, m.log_term, [e.index for e in m.entries]) for m in retry] == [
        (1, 1, [2, 3, 4])
    ]
    assert sent(deliver(rejection[0], a)) == []  # stale duplicate: ignored
    accepted = sent(deliver(retry[0], b))
    assert [(m.reject, m.index) for m in accepted] == [(False, 4)]
    assert [b.core.log.term(Index(i)) for i in range(1, 5)] == [1, 2, 2, 5]
    assert b.core.log.last_index() == 4  # b's term-3 suffix is gone


def test_fast_backoff_leader_also_skips_its_own_newer_term() -> None:
    """§5.3 fast back-off, leader side: given the follower's hint (index,
    term), the leader skips back past its own entries of newer terms than
    the hint's, since none of them can match the follower's log."""
    a = new_node(A, make_storage(terms=(3, 3, 3), term=4))
    b = new_node(B, make_storage(terms=(2, 2, 2), term=4))
    first = sent(elect(a), MsgType.APPEND, B)[0]
    assert (first.index, first.log_term) == (4, 3)
    rejection = sent(deliver(first, b))[0]
    assert (rejection.reject, rejection.reject_hint, rejection.log_term) == (True, 4, 2)
    retry = sent(deliver(rejection, a), MsgType.APPEND, B)
    # The hint alone would retry after index 3: a's entries 2..4 are term 3.
    assert [(m.index, m.log_term) for m in retry] == [(1, 1)]
    assert sent(deliver(retry[0], b)) == [msg(MsgType.APPEND_RESP, B, A, 5, index=Index(5))]


def test_leader_probes_lagging_follower_one_append_at_a_time() -> None:
    """§5.3 / §10.2.1: until a follower answers, the leader does not know
    where their logs match and keeps a single append in flight to it; the
    follower's next answer (here a heartbeat reply) releases the next probe."""
    a = new_node(A)
    elect(a)
    ack(a, B, 2)
    a.cycle()
    a.core.propose(b"x")
    rd = a.cycle()
    assert appended_indexes(rd, B) == [[3]]
    assert appended_indexes(rd, C) == []  # c has not answered the no-op probe
    a.step(msg(MsgType.HEARTBEAT_RESP, C, A, 2))
    rd = a.cycle()
    assert [(m.index, [e.index for e in m.entries]) for m in sent(rd, MsgType.APPEND, C)] == [
        (1, [2, 3])
    ]


def test_heartbeat_commit_is_min_of_match_and_commit() -> None:
    """§5.3: heartbeats carry the leader's commit index, but never past what
    the follower is known to hold (it might hold a conflicting entry there)."""
    a = new_node(A)
    elect(a)
    ack(a, B, 2)
    a.cycle()
    assert a.core.log.committed == 2
    a.core.tick()
    rd = a.cycle()
    assert {m.to: m.commit for m in sent(rd, MsgType.HEARTBEAT)} == {B: 2, C: 0}


def test_follower_learns_commit_from_heartbeat() -> None:
    """§5.3: a follower applies entries up to the commit index it learns
    from the leader, bounded by its own log; the heartbeat reply promises
    nothing durable, so it need not wait for a persist."""
    b = new_node(B, make_storage(terms=(2, 2), term=2))
    rd = deliver(msg(MsgType.HEARTBEAT, A, B, 2, commit=Index(2)), b)
    assert [e.index for e in rd.committed_entries] == [2]
    assert rd.messages == (msg(MsgType.HEARTBEAT_RESP, B, A, 2),)
    assert rd.messages_after_persist == ()
    deliver(msg(MsgType.HEARTBEAT, A, B, 2, commit=Index(9)), b)
    assert b.core.log.committed == 3


def test_a_new_commit_index_goes_unanswered_to_followers_that_hold_everything() -> None:
    """§5.3: followers learn the new commit index at once. One that has
    acknowledged every entry gets a COMMIT, which it does not answer (the
    answer would tell the leader nothing); one still behind gets its
    entries, the commit index with them."""
    a = make_leader()
    index = a.core.propose(b"x")
    rd = a.cycle()
    assert appended_indexes(rd, B) == [[3]] and appended_indexes(rd, C) == [[3]]
    ack(a, B, 3)  # b and a make a quorum; c has not answered yet
    rd = a.cycle()
    assert a.core.log.committed == index == 3
    assert [(m.to, m.commit) for m in sent(rd, MsgType.COMMIT)] == [(B, 3)]
    assert not sent(rd, MsgType.APPEND, B)
    # c's entry is in flight: an append after it, answered, carries the index.
    assert not sent(rd, MsgType.COMMIT, C)
    assert [(m.index, m.entries, m.commit) for m in sent(rd, MsgType.APPEND, C)] == [(3, (), 3)]


def test_a_follower_applies_up_to_a_commit_message_and_does_not_answer() -> None:
    b = new_node(B, make_storage(terms=(2, 2), term=2))
    rd = deliver(msg(MsgType.COMMIT, A, B, 2, commit=Index(2)), b)
    assert [e.index for e in rd.committed_entries] == [2]
    assert rd.messages == () and rd.messages_after_persist == ()
    assert b.core.leader == A
    deliver(msg(MsgType.COMMIT, A, B, 2, commit=Index(9)), b)
    assert b.core.log.committed == 3  # never past its own log


# ---------------------------------------------------------------------------
# §5.4 Safety
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (3, 2, True),  # same last term, same length
        (4, 2, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (9, 1, False),  # longer, but an older last term
        (2, 3, True),  # shorter, but a newer last term
    ],
)
def test_election_restriction(last_index: int, last_term: int, granted: bool) -> None:
    """§5.4.1: a vote is denied to a candidate whose log is less up to date
    (compare last terms, then lengths); the newer term is adopted anyway."""
    b = new_node(B, make_storage(terms=(2, 2), term=2))
    rd = deliver(msg(MsgType.VOTE, C, B, 3, index=Index(last_index), log_term=Term(last_term)), b)
    assert [(m.type, m.reject) for m in sent(rd)] == [(MsgType.VOTE_RESP, not granted)]
    assert b.core.term == 3
    assert b.core.vote == (C if granted else NONE)


def test_leader_commits_older_term_entries_only_with_a_current_term_entry() -> None:
    """§5.4.2 (Figure 8): a leader never commits an entry of an older term
    by counting replicas; once an entry of its own term is on a majority,
    the older ones commit with it (Log Matching)."""
    a = new_node(A, make_storage(terms=(2,), term=2), max_msg_bytes=1)
    b = new_node(B)
    probe = sent(elect(a), MsgType.APPEND, B)[0]  # prev (2, 2): b lacks it
    rejection = sent(deliver(probe, b))[0]
    old_entry_only = sent(deliver(rejection, a), MsgType.APPEND, B)[0]
    assert [(e.index, e.term) for e in old_entry_only.entries] == [(2, 2)]
    ack_2 = sent(deliver(old_entry_only, b))[0]
    assert ack_2.index == 2
    rd = deliver(ack_2, a)  # entry 2 (term 2) is now on a majority: a and b
    assert a.core.log.committed == 1
    assert rd.committed_entries == ()
    current = sent(rd, MsgType.APPEND, B)[0]
    assert [(e.index, e.term) for e in current.entries] == [(3, 3)]
    rd = deliver(sent(deliver(current, b))[0], a)
    assert a.core.log.committed == 3
    assert [e.index for e in rd.committed_entries] == [2, 3]


def test_leader_counts_its_own_entry_only_after_advance() -> None:
    """§10.2.1: the leader's own log counts toward commitment only once it
    is durable, i.e. after the driver persisted the Ready and advanced."""
    node = single_voter_leader()
    index = node.core.propose(b"x")
    rd = node.core.ready()
    assert [e.index for e in rd.entries] == [index]
    assert rd.committed_entries == ()
    assert node.core.log.committed == 2
    persist(node.storage, rd)
    node.core.advance(rd)
    rd = node.cycle()
    assert rd.hard_state is not None and rd.hard_state.commit == index
    assert [e.data for e in rd.committed_entries] == [b"x"]


# ---------------------------------------------------------------------------
# Flow control (§10.2.1): batching and pipelining
# ---------------------------------------------------------------------------
def test_many_proposals_batched_into_one_append() -> None:
    """§10.2.1: proposals made between two Readies are persisted in one
    batch and sent to each follower in a single APPEND."""
    a = make_leader()
    indexes = [a.core.propose(f"w{i}".encode()) for i in range(10)]
    rd = a.cycle()
    assert [e.index for e in rd.entries] == indexes
    for to in (B, C):
        assert appended_indexes(rd, to) == [indexes]


def test_pipelining_window_pauses_and_resumes() -> None:
    """§10.2.1: a leader streams appends to an up-to-date follower without
    waiting, up to max_inflight; it pauses when the window is full and
    resumes as acknowledgements free it."""
    a = make_leader(max_inflight=2, max_msg_bytes=1)
    for i in range(4):
        a.core.propose(f"w{i}".encode())  # indexes 3..6, one per message
    assert appended_indexes(a.cycle(), B) == [[3], [4]]
    ack(a, B, 3)
    assert appended_indexes(a.cycle(), B) == [[5]]
    ack(a, B, 5)
    assert appended_indexes(a.cycle(), B) == [[6]]


def test_heartbeat_reply_reopens_a_full_window() -> None:
    """§10.2.1: if appends in a full window were lost, a heartbeat reply
    lets one more append through, so that the loss surfaces as a rejection
    instead of silence."""
    a = make_leader(max_inflight=1, max_msg_bytes=1)
    a.core.propose(b"x")
    a.core.propose(b"y")
    assert appended_indexes(a.cycle(), B) == [[3]]
    a.core.tick()
    rd = a.cycle()
    assert appended_indexes(rd, B) == []
    assert len(sent(rd, MsgType.HEARTBEAT, B)) == 1
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2))
    assert appended_indexes(a.cycle(), B) == [[4]]


# ---------------------------------------------------------------------------
# §9.6 PreVote
# ---------------------------------------------------------------------------
def test_pre_candidate_does_not_increment_term() -> None:
    """§9.6: a pre-candidate asks whether it could win in term+1 without
    changing its term or vote; nothing to persist, so PRE_VOTE goes at once."""
    node = new_node(A)
    node.core.campaign()
    rd = node.cycle()
    assert rd.soft_state.role is Role.PRE_CANDIDATE
    assert node.core.term == 1 and node.core.vote == NONE
    assert rd.hard_state is None
    assert rd.messages_after_persist == ()
    assert sorted(rd.messages, key=lambda m: m.to) == [
        msg(MsgType.PRE_VOTE, A, to, 2, index=Index(1), log_term=Term(1)) for to in (B, C)
    ]


def test_pre_vote_grant_changes_neither_term_nor_vote_of_voter() -> None:
    """§9.6: answering a pre-vote records nothing: the voter keeps its term
    and vote, and replies in the term asked about."""
    b = new_node(B)
    rd = deliver(msg(MsgType.PRE_VOTE, A, B, 2, index=Index(1), log_term=Term(1)), b)
    assert rd.hard_state is None
    assert (b.core.term, b.core.vote) == (1, NONE)
    assert rd.messages == (msg(MsgType.PRE_VOTE_RESP, B, A, 2),)


def test_pre_vote_denied_to_stale_log() -> None:
    """§9.6 with §5.4.1: a pre-vote is granted only if the candidate's log
    is at least as up to date, so a lagging node never disrupts the term."""
    b = new_node(B, make_storage(terms=(2,), term=2))
    rd = deliver(msg(MsgType.PRE_VOTE, A, B, 3, index=Index(5), log_term=Term(1)), b)
    assert [(m.type, m.reject) for m in sent(rd)] == [(MsgType.PRE_VOTE_RESP, True)]
    assert b.core.term == 2


def test_pre_vote_rejected_by_majority_returns_to_follower_in_same_term() -> None:
    """§9.6: a pre-candidate refused by a majority goes back to follower
    without having touched its term or vote."""
    node = new_node(A)
    node.core.campaign()
    node.cycle()
    node.step(msg(MsgType.PRE_VOTE_RESP, B, A, 1, reject=True))
    assert node.core.role is Role.PRE_CANDIDATE
    node.step(msg(MsgType.PRE_VOTE_RESP, C, A, 1, reject=True))
    rd = node.cycle()
    assert (node.core.role, node.core.term, node.core.vote) == (Role.FOLLOWER, 1, NONE)
    assert rd.hard_state is None


def test_pre_vote_majority_starts_the_real_election() -> None:
    """§9.6: only after a majority of pre-votes does the node increment its
    term, vote for itself and send VOTE (after persisting)."""
    node = new_node(A)
    node.core.campaign()
    node.cycle()
    node.step(msg(MsgType.PRE_VOTE_RESP, B, A, 2))
    rd = node.cycle()
    assert rd.soft_state.role is Role.CANDIDATE
    assert rd.hard_state == HardState(Term(2), A, Index(1))
    assert {m.to for m in rd.messages_after_persist if m.type is MsgType.VOTE} == {B, C}


def test_partitioned_node_does_not_inflate_its_term() -> None:
    """§9.6: a node cut off from the cluster keeps failing pre-votes and its
    term stays put, so on rejoining it does not depose a working leader.
    Without PreVote the same node bumps its term on every timeout."""
    for pre_vote, expect_bumped in ((True, False), (False, True)):
        node = new_node(A, pre_vote=pre_vote)
        for _ in range(10 * ELECTION_TICKS):
            node.core.tick()
            node.cycle()
        assert (node.core.term > 1) is expect_bumped


def test_follower_in_leader_lease_ignores_pre_vote_and_vote() -> None:
    """§9.6 / §4.2.3: a server that heard from a leader within the election
    timeout ignores (pre-)vote requests of a higher term, so a partitioned
    or removed server cannot disrupt the cluster."""
    b = new_node(B)
    deliver(msg(MsgType.HEARTBEAT, A, B, 2), b)
    for type_ in (MsgType.PRE_VOTE, MsgType.VOTE):
        rd = deliver(msg(type_, C, B, 3, index=Index(9), log_term=Term(2)), b)
        assert sent(rd) == []
        assert (b.core.term, b.core.leader) == (2, A)


def test_follower_grants_pre_vote_once_lease_expired() -> None:
    """§9.6: the lease lasts one election timeout; after that without news
    from the leader, a pre-vote of a higher term is answered again."""
    b = new_node(B, seed=3)
    deliver(msg(MsgType.HEARTBEAT, A, B, 2), b)
    assert b.core.randomized_election_ticks > ELECTION_TICKS
    for _ in range(ELECTION_TICKS):
        b.core.tick()
    assert b.core.role is Role.FOLLOWER
    rd = deliver(msg(MsgType.PRE_VOTE, C, B, 3, index=Index(9), log_term=Term(2)), b)
    assert sent(rd) == [msg(MsgType.PRE_VOTE_RESP, B, C, 3)]


@pytest.mark.parametrize("ticks", [ELECTION_TICKS, 5 * ELECTION_TICKS])
def test_a_server_that_may_not_campaign_grants_pre_votes_once_its_lease_expired(
    ticks: int,
) -> None:
    """§4.2.3 with §4.2.1: a server outside its own configuration (a learner,
    or a new voter that has not yet seen the entry adding it) never campaigns,
    but its leader lease still ends one election timeout after its leader
    went silent, however long ago that was; then it answers pre-votes, which
    a new leader may need (simulation seed 6862)."""
    d = new_node(D)  # not in {a, b, c}: may not campaign
    deliver(msg(MsgType.HEARTBEAT, A, D, 2), d)
    for _ in range(ticks):
        d.core.tick()
    assert d.core.role is Role.FOLLOWER
    rd = deliver(msg(MsgType.PRE_VOTE, C, D, 3, index=Index(9), log_term=Term(2)), d)
    assert sent(rd) == [msg(MsgType.PRE_VOTE_RESP, D, C, 3)]


# ---------------------------------------------------------------------------
# §6.2 CheckQuorum
# ---------------------------------------------------------------------------
def test_check_quorum_leader_steps_down_without_hearing_from_a_quorum() -> None:
    """§6.2: a leader that hears from no quorum within an election timeout
    steps down (same term), so a deposed leader stops serving reads."""
    a = new_node(A)
    elect(a)
    for _ in range(2 * ELECTION_TICKS):
        a.core.tick()
        a.cycle()
    assert (a.core.role, a.core.term, a.core.leader) == (Role.FOLLOWER, 2, NONE)


def test_check_quorum_leader_stays_while_a_quorum_answers() -> None:
    """§6.2: replies from one follower (with the leader, a quorum of three)
    keep the leader in office however long c stays silent."""
    a = new_node(A)
    elect(a)
    for _ in range(5 * ELECTION_TICKS):
        a.core.tick()
        for m in sent(a.cycle(), MsgType.HEARTBEAT, B):
            a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=m.context))
    assert a.core.role is Role.LEADER


def test_without_check_quorum_isolated_leader_keeps_leading() -> None:
    """§6.2 (contrast): the step-down above is CheckQuorum's doing."""
    a = new_node(A, check_quorum=False)
    elect(a)
    for _ in range(5 * ELECTION_TICKS):
        a.core.tick()
        a.cycle()
    assert a.core.role is Role.LEADER


# ---------------------------------------------------------------------------
# §6.4 ReadIndex
# ---------------------------------------------------------------------------
def test_read_index_waits_for_an_entry_of_the_current_term_to_commit() -> None:
    """§6.4 step 1: until its no-op commits, a new leader does not know the
    commit index of its term; the read waits, then needs a heartbeat round."""
    a = new_node(A)
    elect(a)
    a.core.read_index(7)
    rd = a.cycle()
    assert rd.read_states == ()
    assert sent(rd, MsgType.HEARTBEAT) == []
    ack(a, B, 2)  # the no-op commits
    rd = a.cycle()
    assert rd.read_states == ()
    contexts = {m.to: m.context for m in sent(rd, MsgType.HEARTBEAT)}
    assert set(contexts) == {B, C} and contexts[B] > 0
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=contexts[B]))
    assert a.cycle().read_states == (ReadState(Index(2), 7),)


def test_read_index_needs_a_quorum_of_heartbeat_acks_for_the_read() -> None:
    """§6.4 steps 2-3: the leader records its commit index, then confirms
    it is still leader by a heartbeat round acknowledged by a quorum;
    replies to heartbeats sent before the read do not count."""
    a = make_leader()
    a.core.tick()
    older = sent(a.cycle(), MsgType.HEARTBEAT, B)[0]
    assert older.context == 0
    a.core.read_index(42)
    rd = a.cycle()
    assert rd.read_states == ()
    read_hb = sent(rd, MsgType.HEARTBEAT, B)[0]
    assert read_hb.context > 0
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=older.context))
    assert a.cycle().read_states == ()
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=read_hb.context))
    assert a.cycle().read_states == (ReadState(Index(2), 42),)


def test_read_index_ack_confirms_its_round_and_earlier_ones_only() -> None:
    """§6.4: an ack for the heartbeat round of one read does not confirm a
    read requested after that round was sent; an ack for a later round
    confirms every earlier read too, in order. A read requested while a
    round is in flight waits for it and goes with the next one (a burst of
    reads costs a few rounds, not one each); the heartbeat tick also sends a
    round for every read waiting, so a lost round is retried."""
    a = make_leader()
    a.core.read_index(1)
    first = sent(a.cycle(), MsgType.HEARTBEAT, B)[0].context
    a.core.read_index(2)
    assert sent(a.cycle(), MsgType.HEARTBEAT) == []  # round `first` in flight
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=first))
    rd = a.cycle()
    assert rd.read_states == (ReadState(Index(2), 1),)
    second = sent(rd, MsgType.HEARTBEAT, C)[0].context
    assert 0 < first < second
    a.core.read_index(3)
    assert sent(a.cycle(), MsgType.HEARTBEAT) == []  # round `second` in flight
    for _ in range(a.core.config.heartbeat_ticks):
        a.core.tick()
    third = sent(a.cycle(), MsgType.HEARTBEAT, C)[0].context
    assert third > second
    a.step(msg(MsgType.HEARTBEAT_RESP, C, A, 2, context=third))
    assert a.cycle().read_states == (ReadState(Index(2), 2), ReadState(Index(2), 3))


def test_read_index_single_voter_answers_at_once() -> None:
    """§6.4: with one voter the leader is its own quorum: no round trip."""
    node = single_voter_leader()
    node.core.read_index(5)
    rd = node.cycle()
    assert rd.read_states == (ReadState(Index(2), 5),)
    assert sent(rd) == []


def test_read_index_is_dropped_when_leadership_is_lost() -> None:
    """§6.4: a read pending when the leader steps down is never answered
    (the client retries elsewhere), even if late acks arrive."""
    a = make_leader()
    a.core.read_index(9)
    hb = sent(a.cycle(), MsgType.HEARTBEAT, B)[0]
    a.step(msg(MsgType.APPEND_RESP, C, A, 3))
    assert a.core.role is Role.FOLLOWER
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=hb.context))
    assert a.cycle().read_states == ()
    with pytest.raises(NotLeaderError):
        a.core.read_index(10)
    elect(a)  # leader again, in term 4: the term-2 read is gone for good
    ack(a, B, 3)
    a.cycle()
    a.core.read_index(11)
    hb = sent(a.cycle(), MsgType.HEARTBEAT, B)[0]
    a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 4, context=hb.context))
    assert a.cycle().read_states == (ReadState(Index(3), 11),)


# ---------------------------------------------------------------------------
# §3.10 Leadership transfer
# ---------------------------------------------------------------------------
def test_transfer_sends_timeout_now_to_caught_up_target_and_refuses_proposals() -> None:
    """§3.10: once the target's log matches, the leader sends TIMEOUT_NOW;
    while the transfer is in progress it accepts no proposals."""
    a = make_leader()
    assert a.core.transfer_leader(B) == B
    assert sent(a.cycle(), MsgType.TIMEOUT_NOW) == [msg(MsgType.TIMEOUT_NOW, A, B, 2)]
    with pytest.raises(ProposalDroppedError):
        a.core.propose(b"x")
    with pytest.raises(ProposalDroppedError):
        a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))


def test_transfer_to_lagging_target_catches_it_up_first() -> None:
    """§3.10 step 2: a lagging target first gets the missing entries;
    TIMEOUT_NOW follows only when its log matches the leader's."""
    a = new_node(A)
    elect(a)
    ack(a, B, 2)
    a.cycle()
    a.core.propose(b"x")  # index 3; c has acknowledged nothing yet
    a.cycle()
    a.core.transfer_leader(C)
    assert sent(a.cycle(), MsgType.TIMEOUT_NOW) == []
    ack(a, C, 2)
    rd = a.cycle()
    assert sent(rd, MsgType.TIMEOUT_NOW) == []
    assert appended_indexes(rd, C) == [[3]]
    ack(a, C, 3)
    assert sent(a.cycle(), MsgType.TIMEOUT_NOW) == [msg(MsgType.TIMEOUT_NOW, A, C, 2)]


def test_timeout_now_target_campaigns_at_once_skipping_pre_vote() -> None:
    """§3.10: the target starts a real election immediately (no pre-vote,
    whatever its timer), its VOTE flagged to override leader leases."""
    b = new_node(B)
    deliver(msg(MsgType.HEARTBEAT, A, B, 2, commit=Index(1)), b)
    rd = deliver(msg(MsgType.TIMEOUT_NOW, A, B, 2), b)
    assert rd.soft_state.role is Role.CANDIDATE
    assert rd.hard_state == HardState(Term(3), B, Index(1))
    votes = [m for m in rd.messages_after_persist if m.type is MsgType.VOTE]
    assert {m.to for m in votes} == {A, C}
    assert all(m.force and m.term == 3 for m in votes)


def test_forced_vote_overrides_leader_lease() -> None:
    """§3.10 with §4.2.3: a voter inside its leader lease still answers a
    transfer's VOTE, otherwise leadership transfer could never succeed."""
    c = new_node(C)
    deliver(msg(MsgType.HEARTBEAT, A, C, 2), c)
    rd = deliver(msg(MsgType.VOTE, B, C, 3, index=Index(1), log_term=Term(1), force=True), c)
    assert rd.messages_after_persist == (msg(MsgType.VOTE_RESP, C, B, 3),)
    assert (c.core.term, c.core.vote) == (3, B)


def test_transfer_is_abandoned_after_an_election_timeout() -> None:
    """§3.10: if the transfer does not complete within an election timeout,
    the leader gives up and accepts proposals again."""
    a = new_node(A)
    elect(a)
    a.core.transfer_leader(C)  # c never answers
    for _ in range(ELECTION_TICKS):
        with pytest.raises(ProposalDroppedError):
            a.core.propose(b"x")
        a.core.tick()
        for m in sent(a.cycle(), MsgType.HEARTBEAT, B):
            a.step(msg(MsgType.HEARTBEAT_RESP, B, A, 2, context=m.context))
    assert a.core.role is Role.LEADER
    assert a.core.propose(b"x") == 3


# ---------------------------------------------------------------------------
# §4.1 Membership changes
# ---------------------------------------------------------------------------
def test_config_takes_effect_when_appended_not_when_committed() -> None:
    """§4.1: a server uses the latest configuration in its log, committed
    or not: the new voter is replicated to at once and counts for quorum."""
    a = make_leader()
    index = a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    assert a.core.conf.voters == (A, B, C, D)
    rd = a.cycle()
    assert sent(rd, MsgType.APPEND, D) != []
    ack(a, B, index)
    a.cycle()
    assert a.core.log.committed == 2  # a and b are 2 of 4: not a majority
    ack(a, C, index)
    a.cycle()
    assert a.core.log.committed == index


def test_one_membership_change_at_a_time() -> None:
    """§4.1: a new change may start only once the previous one committed."""
    a = make_leader()
    index = a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, D))
    with pytest.raises(ConfChangeError):
        a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    a.cycle()
    ack(a, B, index)
    a.cycle()
    promoted = a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    assert a.core.conf == ConfState.of([A, B, C, D])
    assert promoted == index + 1


def test_new_leader_commits_an_entry_of_its_term_before_a_change() -> None:
    """§4.1 (the single-server-change bug fix): a leader may not start a
    membership change until an entry of its current term has committed."""
    a = new_node(A)
    elect(a)
    with pytest.raises(ConfChangeError):
        a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    ack(a, B, 2)
    a.cycle()
    assert a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D)) == 3


def test_learners_neither_vote_nor_count_for_quorum() -> None:
    """§4.2.1: learners (non-voting members) receive the log, but are not
    asked for votes and their acknowledgements do not commit anything."""
    a = new_node(A, make_storage(voters=(A, B, C), learners=(L,)))
    a.core.campaign()
    rd = a.cycle()
    assert {m.to for m in sent(rd, MsgType.PRE_VOTE)} == {B, C}
    rd = elect(a)
    assert sent(rd, MsgType.APPEND, L) != []
    ack(a, L, 2)
    a.cycle()
    assert a.core.log.committed == 1
    ack(a, B, 2)
    a.cycle()
    assert a.core.log.committed == 2


def test_learner_never_campaigns() -> None:
    """§4.2.1: a learner's election timer never starts an election, and it
    ignores TIMEOUT_NOW."""
    node = new_node(L, make_storage(voters=(A, B, C), learners=(L,)))
    for _ in range(5 * ELECTION_TICKS):
        node.core.tick()
        assert sent(node.cycle()) == []
    rd = deliver(msg(MsgType.TIMEOUT_NOW, A, L, 1), node)
    assert sent(rd) == []
    assert (node.core.role, node.core.term) == (Role.FOLLOWER, 1)


def test_follower_uses_appended_config_and_reverts_when_it_is_truncated() -> None:
    """§4.1: a follower, too, switches configuration when the entry is
    appended, and falls back to the previous one if the entry is removed
    by a conflicting append."""
    b = new_node(B)
    grow = Entry(Term(2), Index(2), ConfState.of([A, B, C, D]).encode(), EntryType.CONFIG)
    deliver(msg(MsgType.APPEND, A, B, 2, index=Index(1), log_term=Term(1), entries=(grow,)), b)
    assert b.core.log.committed == 1
    assert b.core.conf.voters == (A, B, C, D)
    other = Entry(Term(3), Index(2))
    deliver(msg(MsgType.APPEND, C, B, 3, index=Index(1), log_term=Term(1), entries=(other,)), b)
    assert b.core.conf.voters == (A, B, C)


def test_removed_leader_steps_down_once_its_removal_commits() -> None:
    """§4.2.2: a leader removing itself keeps managing the cluster but no
    longer counts itself in majorities; it steps down when the change
    commits, handing over to an up-to-date voter with TIMEOUT_NOW."""
    a = make_leader()
    index = a.core.propose_conf_change(ConfChange(ConfChangeType.REMOVE, A))
    assert a.core.conf.voters == (B, C)
    a.cycle()
    ack(a, B, index)
    a.cycle()
    assert a.core.role is Role.LEADER
    assert a.core.log.committed == 2  # b alone is not a majority of {b, c}
    ack(a, C, index)
    rd = a.cycle()
    assert a.core.log.committed == index
    assert a.core.role is Role.FOLLOWER
    assert sent(rd, MsgType.TIMEOUT_NOW) == [msg(MsgType.TIMEOUT_NOW, A, C, 2)]
    assert not a.core.is_promotable()


# ---------------------------------------------------------------------------
# §7 Log compaction
# ---------------------------------------------------------------------------
def _compacted_leader() -> Node:
    """a with entries 1..5 (term 2), a snapshot at 4 and entries <= 4
    discarded; elected in term 3 (no-op at 6)."""
    storage = make_storage(terms=(2, 2, 2, 2), term=2, commit=5)
    storage.create_snapshot(SnapshotMeta(Index(4), Term(2), ConfState.of([A, B, C])), b"db")
    storage.compact(Index(4))
    return new_node(A, storage)


def test_leader_sends_snapshot_when_needed_entries_are_compacted() -> None:
    """§7: when a follower needs entries the leader has discarded, the
    leader sends InstallSnapshot instead; then it waits (no appends)."""
    a = _compacted_leader()
    c = new_node(C)
    probe = sent(elect(a), MsgType.APPEND, C)[0]
    rejection = sent(deliver(probe, c))[0]
    assert rejection.reject
    rd = deliver(rejection, a)
    snaps = sent(rd, MsgType.SNAPSHOT, C)
    assert [m.snapshot for m in snaps] == [SnapshotMeta(Index(4), Term(2), ConfState.of([A, B, C]))]
    assert sent(rd, MsgType.APPEND, C) == []
    a.core.propose(b"x")
    assert sent(a.cycle(), MsgType.APPEND, C) == []  # paused while the snapshot is in flight


def test_follower_restores_snapshot_and_replication_resumes_after_it() -> None:
    """§7: the follower discards its log, hands the snapshot to the driver
    (Ready.snapshot), answers with the snapshot's index once installed, and
    the leader continues with the entries that follow it."""
    a = _compacted_leader()
    c = new_node(C)
    probe = sent(elect(a), MsgType.APPEND, C)[0]
    snap_msg = sent(deliver(sent(deliver(probe, c))[0], a), MsgType.SNAPSHOT, C)[0]
    assert snap_msg.snapshot is not None
    rd = deliver(snap_msg, c)
    assert rd.snapshot == snap_msg.snapshot
    assert rd.messages_after_persist == (msg(MsgType.APPEND_RESP, C, A, 3, index=Index(4)),)
    assert all(e.index > 4 for e in rd.committed_entries)
    assert c.storage.snapshot_meta() == snap_msg.snapshot
    assert (c.core.log.first_index(), c.core.log.last_index(), c.core.log.committed) == (5, 4, 4)
    assert c.core.conf == ConfState.of([A, B, C])
    follow_up = sent(deliver(rd.messages_after_persist[0], a), MsgType.APPEND, C)
    assert [(m.index, m.log_term, [e.index for e in m.entries]) for m in follow_up] == [
        (4, 2, [5, 6])
    ]
    assert sent(deliver(follow_up[0], c)) == [msg(MsgType.APPEND_RESP, C, A, 3, index=Index(6))]


@pytest.mark.parametrize("compacted", [False, True])
def test_stale_snapshot_is_not_installed(compacted: bool) -> None:
    """§7: a snapshot covering no more than the follower already committed
    (a delayed or duplicated one; the follower may even have compacted past
    it) is not installed; the reply tells the leader where the follower is."""
    storage = make_storage(terms=(2, 2), term=2, commit=3)
    if compacted:
        storage.create_snapshot(SnapshotMeta(Index(3), Term(2), ConfState.of([A, B, C])), b"")
        storage.compact(Index(3))
    b = new_node(B, storage)
    snap = SnapshotMeta(Index(2), Term(2), ConfState.of([A, B, C]))
    rd = deliver(msg(MsgType.SNAPSHOT, A, B, 2, snapshot=snap), b)
    assert rd.snapshot is None
    assert (b.core.log.last_index(), b.core.log.committed) == (3, 3)
    assert sent(rd) == [msg(MsgType.APPEND_RESP, B, A, 2, index=Index(3))]


def test_snapshot_of_entries_already_held_keeps_the_entries_after_it() -> None:
    """§7 (Figure 13, step 6): if the follower already has the entry the
    snapshot ends with, it keeps the entries that follow and just commits
    up to the snapshot; nothing to install."""
    b = new_node(B, make_storage(terms=(2, 2, 2), term=2))
    snap = SnapshotMeta(Index(3), Term(2), ConfState.of([A, B, C]))
    rd = deliver(msg(MsgType.SNAPSHOT, A, B, 2, snapshot=snap), b)
    assert rd.snapshot is None
    assert (b.core.log.last_index(), b.core.log.committed) == (4, 3)
    assert [e.index for e in rd.committed_entries] == [2, 3]
    assert sent(rd) == [msg(MsgType.APPEND_RESP, B, A, 2, index=Index(3))]


def test_restart_after_installing_a_snapshot() -> None:
    """§7 with Figure 2: after a restart the node stands where the installed
    snapshot left it: log position, commit and configuration."""
    conf = ConfState.of([A, B, C, D])
    c = new_node(C)
    snap = SnapshotMeta(Index(8), Term(4), conf)
    deliver(msg(MsgType.SNAPSHOT, A, C, 4, snapshot=snap), c)
    restarted = RaftCore(Config(C), c.storage, random.Random(1))
    assert (restarted.term, restarted.log.first_index(), restarted.log.last_index()) == (4, 9, 8)
    assert (restarted.log.committed, restarted.log.applied) == (8, 8)
    assert restarted.conf == conf
    assert restarted.ready().committed_entries == ()


# ---------------------------------------------------------------------------
# Restart (Figure 2: persistent state)
# ---------------------------------------------------------------------------
def test_restart_from_storage_keeps_term_vote_log_and_config() -> None:
    """Figure 2: current term, vote and log survive a restart, and the
    configuration is rebuilt from the log (§4.1); whatever was not
    persisted is gone."""
    a = make_leader()
    index = a.core.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, D))
    a.cycle()
    a.core.propose(b"lost")
    a.core.ready()  # crash before persisting this Ready
    restarted = RaftCore(Config(A), a.storage, random.Random(1))
    assert restarted.role is Role.FOLLOWER
    assert (restarted.term, restarted.vote) == (2, A)
    assert restarted.log.last_index() == index
    assert restarted.conf.voters == (A, B, C, D)
    restarted.step(msg(MsgType.VOTE, B, A, 2, index=Index(9), log_term=Term(2)))
    assert sent(restarted.ready()) == [msg(MsgType.VOTE_RESP, A, B, 2, reject=True)]


def test_restart_replays_committed_entries_after_config_applied() -> None:
    """The driver says where its state machine stands (Config.applied);
    committed entries after it are handed out again, none before."""
    storage = make_storage(terms=(2, 2, 2), term=2, commit=3)
    core = RaftCore(Config(A, applied=Index(2)), storage, random.Random(1))
    assert [e.index for e in core.ready().committed_entries] == [3]
    core = RaftCore(Config(A), storage, random.Random(1))
    assert [e.index for e in core.ready().committed_entries] == [1, 2, 3]


# ---------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"id": NodeId("")}, "node id"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks"),
        ({"election_ticks": 3, "heartbeat_ticks": 3}, "election_ticks"),
        ({"max_inflight": 0}, "max_inflight"),
        ({"max_msg_bytes": 0}, "byte limits"),
        ({"max_apply_bytes": 0}, "byte limits"),
    ],
)
def test_config_validate_errors(fields: dict[str, object], match: str) -> None:
    """Invalid configurations are refused, by validate() and by RaftCore."""
    config = Config(**{"id": A, **fields})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=match):
        config.validate()
    with pytest.raises(ConfigError, match=match):
        RaftCore(config, make_storage(), random.Random(0))


def test_config_validate_accepts_defaults() -> None:
    Config(A).validate()
    Config(A, election_ticks=2, heartbeat_ticks=1, max_inflight=1).validate()


def test_message_for_another_node_is_ignored() -> None:
    """A misdelivered message must not change state (its term in particular)."""
    b = new_node(B)
    rd = deliver(msg(MsgType.HEARTBEAT, A, C, 5), b)
    assert rd.is_empty()
    assert b.core.term == 1
