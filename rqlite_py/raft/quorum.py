"""Majority arithmetic as pure functions (single-server changes, so there is
only ever one configuration to count against: dissertation §4.1)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from .types import Index, NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def majority(n: int) -> int:
    return n // 2 + 1


def committed_index(voters: Iterable[NodeId], match: Mapping[NodeId, Index]) -> Index:
    """The largest index stored on a majority of `voters` (§5.3). With no
    voters nothing can commit."""
    indexes = sorted((match.get(v, Index(0)) for v in voters), reverse=True)
    if not indexes:
        return Index(0)
    return indexes[majority(len(indexes)) - 1]


def vote_result(voters: Iterable[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    voter_list = list(voters)
    need = majority(len(voter_list))
    granted = sum(1 for v in voter_list if votes.get(v) is True)
    rejected = sum(1 for v in voter_list if votes.get(v) is False)
    if granted >= need:
        return VoteResult.WON
    if len(voter_list) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[NodeId], ids: Iterable[NodeId]) -> bool:
    voter_list = list(voters)
    present = set(ids)
    return sum(1 for v in voter_list if v in present) >= majority(len(voter_list))
