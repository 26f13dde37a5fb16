"""Table-style unit tests for the parts of the Raft core: quorum arithmetic,
per-follower progress and flow control, the log (stable + unstable),
MemoryStorage, and configuration values."""

from __future__ import annotations

import random

import pytest

from rqlite_py.raft import quorum
from rqlite_py.raft.core import ConfChangeError, Config, RaftCore
from rqlite_py.raft.log import LogInvariantError, RaftLog
from rqlite_py.raft.progress import Progress, ProgressState
from rqlite_py.raft.quorum import VoteResult
from rqlite_py.raft.storage import CompactedError, MemoryStorage, bootstrap_entry
from rqlite_py.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
    SoftState,
    Term,
)


def ids(names: str) -> list[NodeId]:
    """'abc' -> [a, b, c]: one-letter node ids keep the tables short."""
    return [NodeId(n) for n in names]


def entries(terms: list[int] | tuple[int, ...], start: int = 1, data: bytes = b"") -> list[Entry]:
    return [Entry(Term(t), Index(i), data) for i, t in enumerate(terms, start=start)]


def storage_with(terms: tuple[int, ...], commit: int = 0, data: bytes = b"") -> MemoryStorage:
    """Storage holding entries of `terms` at indexes 1, 2, ..."""
    s = MemoryStorage()
    s.append(entries(terms, data=data))
    s.set_hard_state(HardState(Term(max(terms, default=0)), NONE, Index(commit)))
    return s


def log_with(terms: tuple[int, ...], commit: int = 0, unstable: tuple[int, ...] = ()) -> RaftLog:
    """A RaftLog with `terms` durable and `unstable` appended after them."""
    log = RaftLog(storage_with(terms, commit))
    log.append(entries(unstable, start=len(terms) + 1))
    return log


def terms_of(log: RaftLog) -> list[Term | None]:
    return [log.term(Index(i)) for i in range(log.first_index(), log.last_index() + 1)]


# ===========================================================================
# quorum.py
# ===========================================================================
@pytest.mark.parametrize(("n", "expected"), [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_majority(n: int, expected: int) -> None:
    assert quorum.majority(n) == expected


@pytest.mark.parametrize(
    ("voters", "match", "expected"),
    [
        ("a", {"a": 5}, 5),
        ("abc", {"a": 5, "b": 3, "c": 1}, 3),
        ("abc", {"a": 5}, 0),  # missing match counts as 0
        ("abc", {"a": 5, "b": 5}, 5),
        ("abcd", {"a": 4, "b": 3, "c": 2, "d": 1}, 2),  # even: 3 of 4 needed
        ("abcde", {"a": 9, "b": 9, "c": 1, "d": 1, "e": 1}, 1),
        ("abcde", {"a": 5, "b": 4, "c": 3, "d": 2, "e": 1}, 3),
        ("ab", {"a": 7, "b": 3, "x": 9, "y": 9}, 3),  # non-voters ignored
        ("", {"a": 9}, 0),  # no voters: nothing commits
    ],
)
def test_committed_index(voters: str, match: dict[str, int], expected: int) -> None:
    m = {NodeId(k): Index(v) for k, v in match.items()}
    assert quorum.committed_index(ids(voters), m) == expected


T, F = True, False


@pytest.mark.parametrize(
    ("voters", "votes", "expected"),
    [
        ("a", {"a": T}, VoteResult.WON),
        ("abc", {"a": T}, VoteResult.PENDING),
        ("abc", {"a": T, "b": T}, VoteResult.WON),
        ("abc", {"a": T, "b": F}, VoteResult.PENDING),
        ("abc", {"a": T, "b": F, "c": F}, VoteResult.LOST),
        ("abc", {"b": F, "c": F}, VoteResult.LOST),
        ("abc", {"a": T, "x": T, "y": T}, VoteResult.PENDING),  # non-voters
        ("abcd", {"a": T, "b": T}, VoteResult.PENDING),
        ("abcd", {"a": T, "b": T, "c": T}, VoteResult.WON),
        ("abcd", {"a": T, "b": T, "c": F, "d": F}, VoteResult.LOST),
        ("abcde", {"a": T, "b": T, "c": F, "d": F}, VoteResult.PENDING),
        ("abcde", {"a": T, "b": F, "c": F, "d": F}, VoteResult.LOST),
    ],
)
def test_vote_result(voters: str, votes: dict[str, bool], expected: VoteResult) -> None:
    assert quorum.vote_result(ids(voters), {NodeId(k): v for k, v in votes.items()}) == expected


@pytest.mark.parametrize(
    ("voters", "present", "expected"),
    [
        ("a", "a", True),
        ("a", "", False),
        ("abc", "ab", True),
        ("abc", "a", False),
        ("abc", "axy", False),  # non-voters do not make a quorum
        ("abcd", "ab", False),
        ("abcd", "abd", True),
        ("abcde", "ace", True),
    ],
)
def test_has_quorum(voters: str, present: str, expected: bool) -> None:
    assert quorum.has_quorum(ids(voters), ids(present)) is expected


# ===========================================================================
# progress.py
# ===========================================================================
def progress(
    match: int, next_: int, state: ProgressState = ProgressState.PROBE, max_inflight: int = 3
) -> Progress:
    pr = Progress(match=Index(match), next=Index(next_), max_inflight=max_inflight)
    if state is ProgressState.REPLICATE:
        pr.become_replicate()
        pr.next = Index(next_)
    elif state is ProgressState.SNAPSHOT:
        pr.become_snapshot(Index(next_))
    return pr


def test_become_probe_from_replicate_restarts_after_match() -> None:
    pr = progress(5, 6, ProgressState.REPLICATE)
    pr.sent(Index(8))
    pr.become_probe()
    assert (pr.state, pr.next, pr.probe_sent, list(pr.inflight)) == (
        ProgressState.PROBE,
        6,
        False,
        [],
    )


@pytest.mark.parametrize(("pending", "expected_next"), [(10, 11), (0, 6), (3, 6)])
def test_become_probe_from_snapshot(pending: int, expected_next: int) -> None:
    """After a snapshot, probing resumes past it (or past match, if later)."""
    pr = progress(5, 6)
    pr.become_snapshot(Index(pending))
    pr.become_probe()
    assert (pr.state, pr.next) == (ProgressState.PROBE, expected_next)


def test_become_replicate_streams_from_match() -> None:
    pr = progress(4, 9)
    pr.probe_sent = True
    pr.become_replicate()
    assert (pr.state, pr.next, pr.probe_sent) == (ProgressState.REPLICATE, 5, False)


@pytest.mark.parametrize(
    ("state", "probe_sent", "inflight", "paused"),
    [
        (ProgressState.PROBE, False, 0, False),
        (ProgressState.PROBE, True, 0, True),
        (ProgressState.REPLICATE, False, 2, False),
        (ProgressState.REPLICATE, False, 3, True),
        (ProgressState.SNAPSHOT, False, 0, True),
    ],
)
def test_is_paused(state: ProgressState, probe_sent: bool, inflight: int, paused: bool) -> None:
    pr = progress(1, 2, state)
    pr.probe_sent = probe_sent
    for i in range(inflight):
        pr.sent(Index(2 + i))
    assert pr.is_paused() is paused


def test_sent_in_replicate_fills_the_inflight_window() -> None:
    pr = progress(2, 3, ProgressState.REPLICATE)
    for last in (3, 5, 7):
        assert not pr.is_paused()
        pr.sent(Index(last))
    assert (pr.next, list(pr.inflight), pr.is_paused()) == (8, [3, 5, 7], True)


def test_sent_in_probe_pauses_without_moving_next() -> None:
    pr = progress(0, 4)
    pr.sent(Index(9))
    assert (pr.next, pr.probe_sent, pr.is_paused(), list(pr.inflight)) == (4, True, True, [])


@pytest.mark.parametrize(
    ("index", "updated", "match", "next_", "inflight"),
    [
        (5, True, 5, 8, [7]),  # frees appends up to 5
        (7, True, 7, 8, []),
        (9, True, 9, 10, []),  # beyond next: next follows
        (2, False, 2, 8, [3, 5, 7]),  # stale ack: nothing new
        (1, False, 2, 8, [3, 5, 7]),
    ],
)
def test_maybe_update(
    index: int, updated: bool, match: int, next_: int, inflight: list[int]
) -> None:
    pr = progress(2, 3, ProgressState.REPLICATE)
    for last in (3, 5, 7):
        pr.sent(Index(last))
    assert pr.maybe_update(Index(index)) is updated
    assert (pr.match, pr.next, list(pr.inflight)) == (match, next_, inflight)


def test_maybe_update_unpauses_probe_only_when_it_learns_something() -> None:
    pr = progress(3, 4)
    pr.sent(Index(4))
    assert not pr.maybe_update(Index(3))
    assert pr.probe_sent
    assert pr.maybe_update(Index(4))
    assert not pr.probe_sent


@pytest.mark.parametrize(
    ("state", "match", "next_", "rejected", "hint", "changed", "expected_next"),
    [
        # REPLICATE: a rejection at or below match answers an older append.
        (ProgressState.REPLICATE, 5, 9, 5, 0, False, 9),
        (ProgressState.REPLICATE, 5, 9, 3, 0, False, 9),
        (ProgressState.REPLICATE, 5, 9, 7, 0, True, 6),  # back to match + 1
        # PROBE: only a rejection of the probe in flight (next - 1) counts.
        (ProgressState.PROBE, 0, 9, 8, 3, True, 4),  # hint: jump to 3 + 1
        (ProgressState.PROBE, 0, 9, 5, 3, False, 9),  # stale: older probe
        (ProgressState.PROBE, 0, 9, 8, 20, True, 8),  # never past the rejected index
        (ProgressState.PROBE, 0, 9, 8, 0, True, 1),
        (ProgressState.PROBE, 5, 9, 8, 2, True, 6),  # never below match + 1
    ],
)
def test_maybe_decrease(
    state: ProgressState,
    match: int,
    next_: int,
    rejected: int,
    hint: int,
    changed: bool,
    expected_next: int,
) -> None:
    pr = progress(match, next_, state)
    pr.probe_sent = state is ProgressState.PROBE
    assert pr.maybe_decrease(Index(rejected), Index(hint)) is changed
    assert pr.next == expected_next
    if state is ProgressState.PROBE:
        assert pr.probe_sent is not changed  # a real rejection releases the next probe


def test_heartbeat_answered_frees_one_slot_of_a_full_window() -> None:
    pr = progress(2, 3, ProgressState.REPLICATE, max_inflight=2)
    pr.sent(Index(3))
    pr.heartbeat_answered()
    assert list(pr.inflight) == [3]  # not full: nothing to free
    pr.sent(Index(4))
    assert pr.is_paused()
    pr.heartbeat_answered()
    assert (list(pr.inflight), pr.is_paused()) == ([4], False)


def test_heartbeat_answered_releases_a_probe() -> None:
    pr = progress(0, 4)
    pr.sent(Index(4))
    pr.heartbeat_answered()
    assert not pr.is_paused()


# ===========================================================================
# log.py
# ===========================================================================
def test_term_lookup_across_storage_and_unstable() -> None:
    log = log_with((1, 1, 2), unstable=(2, 3))
    assert [log.term(Index(i)) for i in range(7)] == [0, 1, 1, 2, 2, 3, None]
    assert (log.first_index(), log.last_index(), log.last_stable_index()) == (1, 5, 3)
    assert log.last_term() == 3


def test_term_of_compacted_index_is_unknown() -> None:
    s = storage_with((1, 1, 2, 2), commit=4)
    s.compact(Index(2))
    log = RaftLog(s)
    assert (log.term(Index(1)), log.term(Index(2)), log.term(Index(3))) == (None, 1, 2)
    assert log.first_index() == 3
    assert log.entries(Index(2), Index(4), 1 << 20) is None
    assert log.applied == 2  # default: where the compacted prefix ends


def test_append_extends_then_truncates_the_unstable_tail() -> None:
    log = log_with((1,), unstable=(1, 1, 1))
    log.append(entries((2, 2), start=3))
    assert terms_of(log) == [1, 1, 2, 2]
    assert log.unstable_offset == 2


def test_append_truncating_into_durable_entries_shadows_them() -> None:
    log = log_with((1, 1, 1), commit=1)
    log.append([Entry(Term(2), Index(2))])
    assert (log.last_index(), log.last_stable_index(), log.unstable_offset) == (2, 1, 2)
    assert log.term(Index(3)) is None
    got = log.entries(Index(1), Index(3), 1 << 20)
    assert got is not None and [(e.index, e.term) for e in got] == [(1, 1), (2, 2)]


@pytest.mark.parametrize(
    ("first", "error"), [(2, "truncating committed"), (1, "truncating committed"), (6, "gap")]
)
def test_append_refuses_committed_truncation_and_gaps(first: int, error: str) -> None:
    log = log_with((1, 1, 1), commit=2, unstable=(1,))
    with pytest.raises(LogInvariantError, match=error):
        log.append([Entry(Term(5), Index(first))])


@pytest.mark.parametrize(
    ("prev", "prev_term", "new", "commit", "result", "committed", "after"),
    [
        (4, 3, (), 4, None, 1, [1, 1, 2, 2]),  # mismatching term at prev
        (5, 2, (), 4, None, 1, [1, 1, 2, 2]),  # prev beyond the log
        (2, 1, (), 3, 2, 2, [1, 1, 2, 2]),  # commit = min(leader commit, last new)
        (2, 1, (2,), 9, 3, 3, [1, 1, 2, 2]),  # present already: no truncation
        (2, 1, (3,), 9, 3, 3, [1, 1, 3]),  # conflict: suffix replaced
        (4, 2, (3, 3), 6, 6, 6, [1, 1, 2, 2, 3, 3]),  # plain extension
        (0, 0, (1, 1, 2, 2, 2), 0, 5, 1, [1, 1, 2, 2, 2]),  # from the start
    ],
)
def test_maybe_append(
    prev: int,
    prev_term: int,
    new: tuple[int, ...],
    commit: int,
    result: int | None,
    committed: int,
    after: list[int],
) -> None:
    """Figure 2, AppendEntries receiver rules 2-5."""
    log = log_with((1, 1, 2, 2), commit=1)
    got = log.maybe_append(
        Index(prev), Term(prev_term), Index(commit), tuple(entries(new, start=prev + 1))
    )
    assert got == result
    assert log.committed == committed
    assert terms_of(log) == after


@pytest.mark.parametrize(
    ("new", "start", "conflict"),
    [
        ((), 1, 0),
        ((1, 1), 1, 0),
        ((2, 2), 3, 0),
        ((2, 2, 3), 3, 5),  # first new entry
        ((1, 3), 2, 3),  # first entry of another term
        ((2,), 1, 1),
        ((4,), 9, 9),  # far beyond the end
    ],
)
def test_find_conflict(new: tuple[int, ...], start: int, conflict: int) -> None:
    log = log_with((1, 1, 2, 2))
    assert log.find_conflict(entries(new, start=start)) == conflict


@pytest.mark.parametrize(
    ("index", "term", "expected"),
    [
        (6, 4, 6),
        (6, 5, 6),
        (6, 3, 4),  # skip the whole of term 4
        (6, 2, 4),
        (6, 1, 2),
        (6, 0, 0),
        (3, 5, 3),
        (4, 1, 2),
        (0, 9, 0),
    ],
)
def test_find_conflict_by_term(index: int, term: int, expected: int) -> None:
    """The largest index <= `index` with a term <= `term` (§5.3 back-off)."""
    log = log_with((1, 1, 2, 2, 4, 4))
    assert log.find_conflict_by_term(Index(index), Term(term)) == expected


@pytest.mark.parametrize(
    ("last_index", "last_term", "up_to_date"),
    [(4, 2, True), (5, 2, True), (3, 2, False), (1, 3, True), (9, 1, False), (0, 0, False)],
)
def test_is_up_to_date(last_index: int, last_term: int, up_to_date: bool) -> None:
    """§5.4.1: compare last terms first, then lengths."""
    log = log_with((1, 1), unstable=(2, 2))
    assert log.is_up_to_date(Index(last_index), Term(last_term)) is up_to_date


@pytest.mark.parametrize(
    ("lo", "hi", "max_bytes", "expected"),
    [
        (1, 5, 1 << 20, [1, 2, 3, 4]),
        (1, 5, 0, [1]),  # at least one entry, whatever the limit
        (1, 5, 60, [1, 2]),  # 26 bytes each: the third would pass 60
        (1, 5, 30, [1]),  # stops inside storage: unstable not consulted
        (2, 5, 78, [2, 3, 4]),  # crosses into unstable, within the limit
        (3, 5, 26, [3]),
        (3, 3, 1 << 20, []),
    ],
)
def test_entries_across_storage_and_unstable(
    lo: int, hi: int, max_bytes: int, expected: list[int]
) -> None:
    log = RaftLog(storage_with((1, 1), data=b"xx"))
    log.append(entries((1, 1), start=3, data=b"yy"))
    got = log.entries(Index(lo), Index(hi), max_bytes)
    assert got is not None and [e.index for e in got] == expected


def test_restore_replaces_the_log_with_a_pending_snapshot() -> None:
    log = log_with((1, 1, 2), commit=2)
    snap = SnapshotMeta(Index(10), Term(3), ConfState.of(["a"]))
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed) == (11, 10, 10)
    assert (log.term(Index(10)), log.term(Index(3)), log.last_term()) == (3, None, 3)
    assert log.last_stable_index() == 0
    assert log.next_committed(1 << 20) == []  # the snapshot stands for 1..10
    log.append([Entry(Term(3), Index(11))])
    assert log.last_index() == 11
    log.snapshot_installed(SnapshotMeta(Index(10), Term(2)))  # not ours: ignored
    assert log.pending_snapshot == snap
    s = log.storage
    assert isinstance(s, MemoryStorage)
    s.apply_snapshot(snap, b"")
    log.snapshot_installed(snap)
    assert (log.pending_snapshot, log.applied, log.first_index()) == (None, 10, 11)


def test_stable_to_ignores_a_term_that_no_longer_matches() -> None:
    log = log_with((1,), unstable=(2, 2))
    log.stable_to(Index(2), Term(1))  # stale: entry 2 is now of term 2
    assert log.unstable_offset == 2
    s = log.storage
    assert isinstance(s, MemoryStorage)
    s.append(log.unstable[:1])
    log.stable_to(Index(2), Term(2))
    assert (log.unstable_offset, [e.index for e in log.unstable]) == (3, [3])
    assert log.last_stable_index() == 2


def test_commit_and_apply_bounds() -> None:
    log = log_with((1, 1, 1), commit=1)
    log.commit_to(Index(0))
    assert log.committed == 1  # never moves back
    with pytest.raises(LogInvariantError):
        log.commit_to(Index(4))
    log.commit_to(Index(3))
    assert [e.index for e in log.next_committed(1 << 20)] == [1, 2, 3]
    assert [e.index for e in log.next_committed(0)] == [1]
    log.applied_to(Index(2))
    assert [e.index for e in log.next_committed(1 << 20)] == [3]
    with pytest.raises(LogInvariantError):
        log.applied_to(Index(1))  # backwards
    with pytest.raises(LogInvariantError):
        log.applied_to(Index(4))  # beyond commit


def test_applied_must_lie_between_compaction_and_commit() -> None:
    s = storage_with((1, 1, 1), commit=2)
    assert RaftLog(s, Index(2)).applied == 2
    with pytest.raises(LogInvariantError):
        RaftLog(s, Index(3))


# ===========================================================================
# storage.py
# ===========================================================================
def test_bootstrapped_storage_holds_the_first_configuration() -> None:
    conf = ConfState.of(["b", "a"], ["c"])
    s = MemoryStorage.bootstrapped(conf)
    assert (s.first_index(), s.last_index(), s.term(Index(1))) == (1, 1, 1)
    (e,) = s.entries(Index(1), Index(2), 0)
    assert e == bootstrap_entry(conf)
    assert e.type is EntryType.CONFIG and ConfState.decode(e.data) == conf
    assert s.hard_state() == HardState(Term(1), NONE, Index(1))
    assert s.snapshot_meta().index == 0


def test_empty_storage() -> None:
    s = MemoryStorage()
    assert (s.first_index(), s.last_index(), s.term(Index(0))) == (1, 0, 0)
    assert s.entries(Index(1), Index(1), 0) == []


def test_storage_append_replaces_from_the_first_entry() -> None:
    s = storage_with((1, 1, 1, 1))
    s.append(entries((2, 2), start=3))
    assert [s.term(Index(i)) for i in range(1, s.last_index() + 1)] == [1, 1, 2, 2]
    s.append(entries((3,), start=2))
    assert s.last_index() == 2 and s.term(Index(2)) == 3
    s.append([])
    assert s.last_index() == 2


def test_storage_append_refuses_gaps_and_compacted_indexes() -> None:
    s = storage_with((1, 1, 1))
    with pytest.raises(ValueError, match="gap"):
        s.append(entries((1,), start=5))
    s.compact(Index(2))
    with pytest.raises(ValueError, match="compacted"):
        s.append(entries((1,), start=2))


def test_storage_compact() -> None:
    s = storage_with((1, 1, 2, 2, 3))
    s.compact(Index(3))
    assert (s.first_index(), s.last_index(), s.term(Index(3))) == (4, 5, 2)
    with pytest.raises(CompactedError):
        s.term(Index(2))
    with pytest.raises(CompactedError):
        s.entries(Index(3), Index(5), 1 << 20)
    assert [e.index for e in s.entries(Index(4), Index(6), 1 << 20)] == [4, 5]
    s.compact(Index(2))  # already compacted: nothing to do
    assert s.first_index() == 4
    with pytest.raises(ValueError, match="beyond"):
        s.compact(Index(9))


@pytest.mark.parametrize(
    ("max_bytes", "count"), [(0, 1), (25, 1), (26, 1), (51, 1), (52, 2), (77, 2), (78, 3)]
)
def test_storage_entries_max_bytes(max_bytes: int, count: int) -> None:
    """Each entry is 26 bytes (2 of data + 24): at least one is returned."""
    s = storage_with((1, 1, 1), data=b"xx")
    assert len(s.entries(Index(1), Index(4), max_bytes)) == count


def test_storage_lookups_beyond_the_end_raise() -> None:
    s = storage_with((1, 1))
    with pytest.raises(IndexError):
        s.term(Index(3))
    with pytest.raises(IndexError):
        s.entries(Index(1), Index(4), 1 << 20)


def test_storage_apply_snapshot_replaces_everything() -> None:
    s = storage_with((1, 1, 1), commit=2)
    meta = SnapshotMeta(Index(7), Term(3), ConfState.of(["a"]))
    s.apply_snapshot(meta, b"db")
    assert (s.first_index(), s.last_index(), s.term(Index(7))) == (8, 7, 3)
    assert (s.snapshot_meta(), s.snapshot_data()) == (meta, b"db")
    assert s.hard_state().commit == 7
    s.set_hard_state(HardState(Term(3), NONE, Index(9)))
    s.apply_snapshot(SnapshotMeta(Index(8), Term(3)), b"")
    assert s.hard_state().commit == 9  # never lowered


def test_storage_create_snapshot_refuses_an_older_one() -> None:
    s = storage_with((1, 1, 1), commit=3)
    s.create_snapshot(SnapshotMeta(Index(3), Term(1)), b"new")
    with pytest.raises(ValueError, match="older"):
        s.create_snapshot(SnapshotMeta(Index(2), Term(1)), b"old")
    assert s.snapshot_data() == b"new"
    assert s.last_index() == 3  # taking a snapshot does not compact


# ===========================================================================
# types.py: ConfState, Entry, Ready
# ===========================================================================
def test_conf_state_of_sorts_members() -> None:
    conf = ConfState.of(["c", "a", "b"], ["z", "x"])
    assert conf.voters == tuple(ids("abc"))
    assert conf.learners == tuple(ids("xz"))
    assert conf.members() == tuple(ids("abcxz"))
    assert conf == ConfState.of(["b", "c", "a"], ["x", "z"])


@pytest.mark.parametrize(
    ("voters", "learners", "error"),
    [
        (("b", "a"), (), "sorted"),
        (("a",), ("z", "x"), "sorted"),
        (("a", "b"), ("b",), "both"),
    ],
)
def test_conf_state_validation(
    voters: tuple[str, ...], learners: tuple[str, ...], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        ConfState(tuple(NodeId(v) for v in voters), tuple(NodeId(v) for v in learners))


def test_conf_state_of_rejects_voter_that_is_also_learner() -> None:
    with pytest.raises(ValueError, match="both"):
        ConfState.of(["a"], ["a"])


@pytest.mark.parametrize(
    "conf",
    [
        ConfState(),
        ConfState.of(["a"]),
        ConfState.of(["a", "b", "c"]),
        ConfState.of(["node-1", "node-2"], ["node-3"]),
    ],
)
def test_conf_state_encode_decode_round_trip(conf: ConfState) -> None:
    assert ConfState.decode(conf.encode()) == conf


def test_conf_state_decode_sorts_what_it_reads() -> None:
    assert ConfState.decode(b'{"voters": ["b", "a"], "learners": []}') == ConfState.of(["a", "b"])


@pytest.mark.parametrize(
    ("node", "voter", "member"), [("a", True, True), ("l", False, True), ("z", False, False)]
)
def test_conf_state_membership(node: str, voter: bool, member: bool) -> None:
    conf = ConfState.of(["a", "b"], ["l"])
    assert conf.is_voter(NodeId(node)) is voter
    assert conf.is_member(NodeId(node)) is member


def test_entry_size_counts_data_and_overhead() -> None:
    assert Entry(Term(1), Index(1)).size() == 24
    assert Entry(Term(1), Index(1), b"abc").size() == 27


def test_ready_is_empty() -> None:
    soft = SoftState(NONE, Role.FOLLOWER, Term(1))
    assert Ready(soft).is_empty()
    assert not Ready(soft, hard_state=HardState()).is_empty()
    assert not Ready(soft, entries=(Entry(Term(1), Index(1)),)).is_empty()


# ===========================================================================
# Membership changes, one at a time (§4.1), applied to a configuration
# ===========================================================================
@pytest.mark.parametrize(
    ("change", "node", "voters", "learners"),
    [
        (ConfChangeType.ADD_VOTER, "b", "ab", "l"),
        (ConfChangeType.ADD_VOTER, "l", "al", ""),  # promote a learner
        (ConfChangeType.ADD_LEARNER, "b", "a", "bl"),
        (ConfChangeType.REMOVE, "l", "a", ""),
    ],
)
def test_conf_change_applied(change: ConfChangeType, node: str, voters: str, learners: str) -> None:
    core = _single_voter_leader()
    core.propose_conf_change(ConfChange(change, NodeId(node)))
    assert core.conf == ConfState.of(ids(voters), ids(learners))


@pytest.mark.parametrize(
    ("change", "node", "error"),
    [
        (ConfChangeType.ADD_VOTER, "a", "already a voter"),
        (ConfChangeType.ADD_LEARNER, "l", "already a learner"),
        (ConfChangeType.REMOVE, "z", "not a member"),
        (ConfChangeType.REMOVE, "a", "at least one voter"),
        (ConfChangeType.ADD_LEARNER, "a", "at least one voter"),  # demote the last voter
    ],
)
def test_conf_change_refused(change: ConfChangeType, node: str, error: str) -> None:
    core = _single_voter_leader()
    with pytest.raises(ConfChangeError, match=error):
        core.propose_conf_change(ConfChange(change, NodeId(node)))
    assert core.conf == ConfState.of(["a"], ["l"])


def _single_voter_leader() -> RaftCore:
    """Leader of voters {a}, learners {l}, with its no-op committed."""
    storage = MemoryStorage.bootstrapped(ConfState.of(["a"], ["l"]))
    core = RaftCore(Config(NodeId("a")), storage, random.Random(0))
    core.campaign()
    for _ in range(2):
        rd = core.ready()
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        core.advance(rd)
    assert core.role is Role.LEADER and core.log.committed == 2
    return core
