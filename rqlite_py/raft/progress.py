"""The leader's view of one follower's log (Figure 2's nextIndex/matchIndex)
plus the flow control that keeps a slow follower from being flooded."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .types import Index


class ProgressState(enum.Enum):
    PROBE = "probe"
    """Where the follower's log matches is unknown: one append at a time."""
    REPLICATE = "replicate"
    """Logs match up to `match`: stream appends optimistically (pipelining)."""
    SNAPSHOT = "snapshot"
    """A snapshot is on its way; send nothing until it lands or fails."""


@dataclass(slots=True)
class Progress:
    match: Index
    next: Index
    max_inflight: int
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    pending_snapshot: Index = Index(0)
    recent_active: bool = False
    inflight: deque[Index] = field(default_factory=deque)
    """Last index of each append in flight, oldest first (REPLICATE only)."""

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = Index(0)
        self.inflight.clear()

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            next_ = max(self.match + 1, self.pending_snapshot + 1)
        else:
            next_ = self.match + 1
        self._reset(ProgressState.PROBE)
        self.next = Index(next_)

    def become_replicate(self) -> None:
        self._reset(ProgressState.REPLICATE)
        self.next = Index(self.match + 1)

    def become_snapshot(self, index: Index) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = index

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def heartbeat_answered(self) -> None:
        """The follower is alive. Appends may have been lost on the way
        (dropped, or the follower restarted): let one more through so that
        a lost one is answered by a rejection instead of silence."""
        self.probe_sent = False
        if self.state is ProgressState.REPLICATE and len(self.inflight) >= self.max_inflight:
            self.inflight.popleft()

    def sent(self, last: Index) -> None:
        """An append carrying entries up to `last` was sent."""
        if self.state is ProgressState.REPLICATE:
            self.next = Index(last + 1)
            self.inflight.append(last)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: Index) -> bool:
        """The follower acknowledged `index`; False if that tells nothing new."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = Index(max(self.next, index + 1))
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decrease(self, rejected: Index, next_probe: Index) -> bool:
        """The follower rejected an append at prev index `rejected`. Returns
        False for a stale rejection (one that answers an older append)."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = Index(self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = Index(max(min(rejected, next_probe + 1), self.match + 1, 1))
        self.probe_sent = False
        return True
