"""Deliberately broken Raft cores: each breaks one rule of the paper.

They exist to prove that the simulator's checks can fail (tests/raft/
test_sim.py asserts that a sweep catches every one). Production code never
sees them: the switch is which class the simulator builds.
"""

from __future__ import annotations

from rqlite_py.raft.core import RaftCore
from rqlite_py.raft.types import NONE, Entry, HardState, Index, Message, MsgType, Term


class CommitsOldTermEntries(RaftCore):
    """Counts replicas of entries from earlier terms (§5.4.2, Figure 8)."""

    def _can_commit(self, index: Index) -> bool:
        return self.log.term(index) is not None


class VotesWithoutUpToDateCheck(RaftCore):
    """Grants votes to candidates whose logs are behind (§5.4.1)."""

    def _is_up_to_date(self, last_index: Index, last_term: Term) -> bool:
        return True


class ForgetsToPersistVote(RaftCore):
    """Keeps its vote in memory only, so a restart can vote twice (§5.2)."""

    def _hard_state(self) -> HardState:
        return HardState(self.term, NONE, self.log.committed)


class AppliesBeforeCommit(RaftCore):
    """Hands entries to the state machine as soon as they are durable."""

    def _committed_entries(self) -> list[Entry]:
        lo = Index(self.log.applied + 1)
        last = self.log.last_index()
        if self.log.pending_snapshot is not None or lo > last:
            return super()._committed_entries()
        return self.log.entries(lo, Index(last + 1), self.config.max_apply_bytes) or []


class AcceptsStaleTermAppends(RaftCore):
    """Follows AppendEntries from a leader of an older term (§5.1)."""

    def _check_term(self, m: Message) -> bool:
        if m.term < self.term and m.type is MsgType.APPEND:
            self.leader = m.from_
            self._handle_append(m)
            return False
        return super()._check_term(m)


BROKEN: dict[str, type[RaftCore]] = {
    "commit-old-term": CommitsOldTermEntries,
    "vote-without-log-check": VotesWithoutUpToDateCheck,
    "forget-vote": ForgetsToPersistVote,
    "apply-before-commit": AppliesBeforeCommit,
    "accept-stale-append": AcceptsStaleTermAppends,
}
