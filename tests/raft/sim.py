"""A seeded, deterministic simulation of a Raft cluster in virtual time.

N `RaftCore`s share one process. The simulator plays their drivers (it
carries out each Ready in the order the contract prescribes, with crash
points in between) and the network (delay, loss, duplication, reordering,
symmetric and one-way partitions). Clients propose writes and ask for
ReadIndex reads; faults are injected from a per-seed mix. After every event
the Raft safety properties are checked (Figure 3 of the paper, plus the
commit and apply rules); at the end the cluster is healed and must make
progress again. Everything derives from `seed`: a run is replayed exactly by
running the same seed again, whatever PYTHONHASHSEED is (no set of strings is
ever iterated).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rqlite_py.raft.core import (
    ConfChangeError,
    Config,
    NotLeaderError,
    ProposalDroppedError,
    RaftCore,
)
from rqlite_py.raft.storage import LogStorage, MemoryStorage
from rqlite_py.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    EntryType,
    Index,
    Message,
    MsgType,
    NodeId,
    Ready,
    Role,
    SnapshotMeta,
    Term,
)

TICK_MS = 10
DEFAULT_STEPS = 8000
_FAULT_KINDS = ("partitions", "crashes", "membership", "transfers", "snapshots", "pauses")
ELECTION_TICKS = 10
CoreFactory = Callable[[Config, LogStorage, random.Random], RaftCore]


class Violation(AssertionError):
    """A safety or liveness property was broken."""


@dataclass(frozen=True, slots=True)
class FaultMix:
    """Which faults a seed injects, and how hard."""

    drop: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 5
    partitions: bool = False
    crashes: bool = False
    membership: bool = False
    transfers: bool = False
    snapshots: bool = False
    pauses: bool = False

    @staticmethod
    def for_seed(rng: random.Random) -> FaultMix:
        return FaultMix(
            drop=rng.choice([0.0, 0.01, 0.05, 0.15]),
            duplicate=rng.choice([0.0, 0.0, 0.03]),
            max_delay_ms=rng.choice([5, 20, 60, 200]),
            partitions=rng.random() < 0.6,
            crashes=rng.random() < 0.6,
            membership=rng.random() < 0.4,
            transfers=rng.random() < 0.4,
            snapshots=rng.random() < 0.5,
            pauses=rng.random() < 0.4,
        )

    def describe(self) -> str:
        kinds = [k for k in _FAULT_KINDS if getattr(self, k)]
        return (
            f"drop={self.drop} dup={self.duplicate} delay<={self.max_delay_ms}ms "
            f"{'+'.join(kinds) or 'no-faults'}"
        )


@dataclass(slots=True)
class Write:
    id: int
    node: NodeId
    invoked_ms: int
    index: Index
    term: Term
    acked_ms: int | None = None


@dataclass(slots=True)
class Read:
    id: int
    node: NodeId
    invoked_ms: int
    index: Index | None = None
    value: int | None = None
    """How many writes the state machine had applied when the read was served."""
    completed_ms: int | None = None


@dataclass(slots=True)
class SimNode:
    id: NodeId
    storage: MemoryStorage
    core: RaftCore | None = None
    sm: list[bytes] = field(default_factory=list)
    """The state machine: every applied write, in order."""
    sm_index: Index = Index(0)
    incoming_snapshots: dict[int, bytes] = field(default_factory=dict)
    waiting_reads: list[tuple[Index, int]] = field(default_factory=list)
    last_commit: Index = Index(0)
    persisted_commit: Index = Index(0)
    incarnation: int = 0
    restart_at_ms: int | None = None
    paused_until_ms: int | None = None
    """A paused process (SIGSTOP, a long GC) neither ticks nor reads its
    socket; what it had prepared goes out when it wakes up."""

    @property
    def alive(self) -> bool:
        return self.core is not None


@dataclass(slots=True)
class Result:
    seed: int
    ok: bool
    error: str = ""
    trace: list[str] = field(default_factory=list)
    mix: str = ""
    writes_acked: int = 0
    reads_done: int = 0
    events: int = 0
    faults: int = 0


def encode_sm(sm: list[bytes]) -> bytes:
    return b"\n".join(sm)


def decode_sm(data: bytes) -> list[bytes]:
    return data.split(b"\n") if data else []


class Simulator:
    def __init__(
        self,
        seed: int,
        voters: int = 3,
        learners: int | None = None,
        steps: int = DEFAULT_STEPS,
        mix: FaultMix | None = None,
        core_factory: CoreFactory = RaftCore,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.mix = mix if mix is not None else FaultMix.for_seed(self.rng)
        self.initial_mix = self.mix
        if learners is None:
            learners = self.rng.choice([0, 0, 1])
        self.steps = steps
        # Small windows and messages exercise flow control and split appends.
        self.max_inflight = self.rng.choice([1, 4, 64])
        self.max_msg_bytes = self.rng.choice([1, 200, 1 << 20])
        self.core_factory = core_factory
        self.now_ms = 0
        self._seq = 0
        self._events: list[tuple[int, int, str, object]] = []
        self.trace: deque[str] = deque(maxlen=60)
        self.next_node = 1
        self.blocked: set[tuple[NodeId, NodeId]] = set()
        self.writes: list[Write] = []
        self.write_by_data: dict[bytes, Write] = {}
        self.reads: list[Read] = []
        self.faults = 0
        self.events = 0
        # Global knowledge for the invariants.
        self.leaders: dict[int, NodeId] = {}
        self.entries_seen: dict[tuple[int, int], tuple[bytes, EntryType, int | None]] = {}
        self.committed: dict[int, int] = {}
        """index -> term of every entry known committed anywhere."""
        self.committed_in: dict[int, int] = {}
        """index -> the term in which it was first known committed."""
        self.applied: dict[int, bytes] = {}
        self.leader_tail: dict[NodeId, tuple[int, int, int]] = {}
        initial = [self._new_id() for _ in range(voters + learners)]
        conf = ConfState.of(initial[:voters], initial[voters:])
        self.nodes: dict[NodeId, SimNode] = {}
        for nid in initial:
            self.nodes[nid] = SimNode(nid, MemoryStorage.bootstrapped(conf))
            self._start(nid)

    # ------------------------------------------------------------------ ids
    def _new_id(self) -> NodeId:
        nid = NodeId(f"n{self.next_node}")
        self.next_node += 1
        return nid

    def _log(self, text: str) -> None:
        self.trace.append(f"{self.now_ms:>7}ms {text}")

    # --------------------------------------------------------------- events
    def _at(self, delay_ms: int, kind: str, payload: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (self.now_ms + delay_ms, self._seq, kind, payload))

    def run(self) -> Result:
        try:
            self._run()
            return self._result(ok=True)
        except Violation as e:
            return self._result(ok=False, error=str(e))
        except Exception as e:  # a core that raises is as broken as one that lies
            return self._result(ok=False, error=f"{type(e).__name__}: {e}")

    def _result(self, ok: bool, error: str = "") -> Result:
        return Result(
            self.seed,
            ok,
            error,
            list(self.trace) + self.describe_nodes(),
            self.initial_mix.describe(),
            sum(1 for w in self.writes if w.acked_ms is not None),
            sum(1 for r in self.reads if r.completed_ms is not None),
            self.events,
            self.faults,
        )

    def _run(self) -> None:
        self._at(TICK_MS, "tick")
        self._at(1, "client")
        self._at(self.rng.randint(50, 200), "fault")
        for _ in range(self.steps):
            self._step()
        self._heal_and_check_liveness()

    def _step(self) -> None:
        at, _, kind, payload = heapq.heappop(self._events)
        self.now_ms = at
        self.events += 1
        if kind == "tick":
            for node in self._alive():
                assert node.core is not None
                if node.paused_until_ms is None:
                    node.core.tick()
            self._at(TICK_MS, "tick")
        elif kind == "deliver":
            self._deliver(payload)  # type: ignore[arg-type]
        elif kind == "client":
            self._client()
            self._at(self.rng.randint(2, 20), "client")
        elif kind == "fault":
            self._fault()
            self._at(self.rng.randint(20, 300), "fault")
        elif kind == "heal":
            self._log("heal partitions")
            self.blocked.clear()
        elif kind == "resume":
            node = self.nodes.get(payload)  # type: ignore[arg-type]
            if node is not None and node.paused_until_ms is not None:
                node.paused_until_ms = None
                self._log(f"resume {node.id}")
        elif kind == "restart":
            nid = payload
            if nid in self.nodes and not self.nodes[nid].alive:  # type: ignore[operator]
                self._start(nid)  # type: ignore[arg-type]
        self._process_readies()
        self._check_invariants()

    def _alive(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.alive]

    def _leader(self) -> SimNode | None:
        best = None
        for n in self._alive():
            assert n.core is not None
            if n.core.role is Role.LEADER and (best is None or n.core.term > best.core.term):  # type: ignore[union-attr]
                best = n
        return best

    def describe_nodes(self) -> list[str]:
        out = []
        for nid in sorted(self.nodes):
            n = self.nodes[nid]
            c = n.core
            if c is None:
                out.append(f"  {nid}: down")
                continue
            prs = " ".join(
                f"{p}:{pr.state.value}/m{pr.match}/n{pr.next}"
                + ("/paused" if pr.is_paused() else "")
                + ("" if pr.recent_active else "/inactive")
                for p, pr in sorted(c.prs.items())
            )
            out.append(
                f"  {nid}: {c.role.value} term={c.term} vote={c.vote or '-'} "
                f"leader={c.leader or '-'} commit={c.log.committed} applied={n.sm_index} "
                f"last={c.log.last_index()} first={c.log.first_index()} "
                f"voters={','.join(c.conf.voters)} learners={','.join(c.conf.learners)} "
                f"elapsed={c.election_elapsed}/{c.randomized_election_ticks} {prs}"
            )
        return out

    # -------------------------------------------------------------- network
    def _send(self, m: Message) -> None:
        if (m.from_, m.to) in self.blocked or self.rng.random() < self.mix.drop:
            self._snapshot_failed(m)
            return
        data = None
        if m.type is MsgType.SNAPSHOT:
            sender = self.nodes[m.from_]
            assert m.snapshot is not None
            if sender.storage.snapshot_meta() != m.snapshot:
                raise Violation(f"{m.from_} sent snapshot {m.snapshot} it does not hold")
            data = sender.storage.snapshot_data()
        copies = 2 if self.rng.random() < self.mix.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(1, 5)
            if self.mix.max_delay_ms > 5 and self.rng.random() < 0.2:
                delay = self.rng.randint(1, self.mix.max_delay_ms)
            self._at(delay, "deliver", (m, data))

    def _snapshot_failed(self, m: Message) -> None:
        """A snapshot stream that breaks is reported to the sender, as the
        real transport does."""
        if m.type is MsgType.SNAPSHOT:
            sender = self.nodes.get(m.from_)
            if sender is not None and sender.core is not None:
                sender.core.report_snapshot(m.to, ok=False)

    def _deliver(self, item: tuple[Message, bytes | None]) -> None:
        m, data = item
        node = self.nodes.get(m.to)
        if node is None or node.core is None or (m.from_, m.to) in self.blocked:
            self._snapshot_failed(m)
            return
        if node.paused_until_ms is not None:
            # Held in the socket buffer until the process runs again.
            self._seq += 1
            heapq.heappush(
                self._events, (node.paused_until_ms + 1, self._seq, "deliver", (m, data))
            )
            return
        if data is not None:
            assert m.snapshot is not None
            node.incoming_snapshots[m.snapshot.index] = data
            sender = self.nodes.get(m.from_)
            if sender is not None and sender.core is not None:
                sender.core.report_snapshot(m.to, ok=True)
        node.core.step(m)

    # --------------------------------------------------------------- driver
    def _process_readies(self) -> None:
        for _ in range(1000):
            busy = False
            for node in self._alive():
                core = node.core
                assert core is not None
                if node.paused_until_ms is None and core.has_ready():
                    busy = True
                    self._handle_ready(node, core.ready())
            if not busy:
                return
        raise Violation("the cores never stop producing Readies")

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        self._check_ready(node, rd)
        for m in rd.messages:
            self._send(m)
        if self.mix.crashes and self.rng.random() < 0.002:
            self._crash(node, "before persisting a Ready")
            return
        if rd.snapshot is not None:
            data = node.incoming_snapshots.pop(rd.snapshot.index, None)
            if data is None:
                raise Violation(f"{node.id} installs snapshot {rd.snapshot.index} never received")
            node.sm = decode_sm(data)
            node.sm_index = rd.snapshot.index
            self._check_sm_prefix(node)
            node.storage.apply_snapshot(rd.snapshot, data)
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            if rd.hard_state.commit < node.persisted_commit:
                raise Violation(
                    f"{node.id} persisted commit moved back "
                    f"{node.persisted_commit} -> {rd.hard_state.commit}"
                )
            node.persisted_commit = rd.hard_state.commit
            node.storage.set_hard_state(rd.hard_state)
        for m in rd.messages_after_persist:
            self._send(m)
        if self.mix.crashes and self.rng.random() < 0.002:
            self._crash(node, "after persisting, before applying")
            return
        for e in rd.committed_entries:
            self._apply(node, e.index, e.term, e.data, e.type)
        for rs in rd.read_states:
            node.waiting_reads.append((rs.index, rs.request_id))
        self._serve_reads(node)
        core.advance(rd)

    def _apply(self, node: SimNode, index: int, term: int, data: bytes, type_: EntryType) -> None:
        assert node.core is not None
        if index > node.core.log.committed:
            raise Violation(f"{node.id} applies {index} beyond commit {node.core.log.committed}")
        if index != node.sm_index + 1:
            raise Violation(f"{node.id} applied {index} after {node.sm_index}")
        key = data if type_ is EntryType.NORMAL else b"conf:" + data
        prev = self.applied.setdefault(index, key)
        if prev != key:
            raise Violation(
                f"state machine safety: {node.id} applied {key!r} at {index}, "
                f"another node applied {prev!r}"
            )
        if self.committed.get(index, term) != term:
            raise Violation(f"{node.id} applied {index}@{term}, not {self.committed[index]}")
        node.sm_index = Index(index)
        if type_ is EntryType.NORMAL and data:
            node.sm.append(data)
            w = self.write_by_data.get(data)
            if w is not None and w.node == node.id and w.index == index and w.acked_ms is None:
                w.acked_ms = self.now_ms

    def _serve_reads(self, node: SimNode) -> None:
        still = []
        for index, rid in node.waiting_reads:
            if node.sm_index >= index:
                r = self.reads[rid]
                r.index, r.value, r.completed_ms = index, len(node.sm), self.now_ms
            else:
                still.append((index, rid))
        node.waiting_reads = still

    def _start(self, nid: NodeId) -> None:
        node = self.nodes[nid]
        snap = node.storage.snapshot_meta()
        node.sm = decode_sm(node.storage.snapshot_data())
        node.sm_index = snap.index
        node.incoming_snapshots = {}
        node.waiting_reads = []
        node.incarnation += 1
        node.restart_at_ms = None
        cfg = Config(
            nid,
            election_ticks=ELECTION_TICKS,
            heartbeat_ticks=2,
            max_inflight=self.max_inflight,
            max_msg_bytes=self.max_msg_bytes,
        )
        node.core = self.core_factory(cfg, node.storage, random.Random(self.rng.getrandbits(64)))
        node.last_commit = node.core.log.committed
        self._check_sm_prefix(node)
        self._log(f"start {nid} (incarnation {node.incarnation}, term {node.core.term})")

    def _crash(self, node: SimNode, when: str) -> None:
        self.faults += 1
        node.core = None
        node.paused_until_ms = None
        node.restart_at_ms = self.now_ms
        self._log(f"crash {node.id} {when}")
        self._at(self.rng.randint(20, 800), "restart", node.id)

    # --------------------------------------------------------------- client
    def _client(self) -> None:
        # Clients talk to any node that believes it leads, stale leaders
        # included: that is where lost writes and stale reads would hide.
        leaders = [n for n in self._alive() if n.core is not None and n.core.role is Role.LEADER]
        if not leaders:
            return
        leader = self.rng.choice(leaders)
        assert leader.core is not None
        if self.rng.random() < 0.7:
            data = f"w{len(self.writes)}".encode()
            try:
                index = leader.core.propose(data)
            except (NotLeaderError, ProposalDroppedError):
                return
            w = Write(len(self.writes), leader.id, self.now_ms, index, leader.core.term)
            self.writes.append(w)
            self.write_by_data[data] = w
        else:
            rid = len(self.reads)
            self.reads.append(Read(rid, leader.id, self.now_ms))
            leader.core.read_index(rid)

    # --------------------------------------------------------------- faults
    def _fault(self) -> None:
        kinds = [k for k in _FAULT_KINDS if getattr(self.mix, k)]
        if not kinds:
            return
        kind = self.rng.choice(kinds)
        getattr(self, f"_fault_{kind}")()

    def _fault_partitions(self) -> None:
        members = sorted(self.nodes)
        leader = self._leader()
        shape = self.rng.choice(["isolate_leader", "split", "one_way", "bridge"])
        self.blocked.clear()
        if shape == "isolate_leader" and leader is not None:
            side_a = [leader.id]
        else:
            side_a = self.rng.sample(members, self.rng.randint(1, max(1, len(members) // 2)))
        side_b = [n for n in members if n not in side_a]
        if shape == "one_way":
            self.blocked |= {(a, b) for a in side_a for b in side_b}
        elif shape == "bridge" and len(side_b) >= 2:
            # One node of side_b still talks to both sides.
            bridge = side_b[0]
            self.blocked |= {(a, b) for a in side_a for b in side_b[1:]}
            self.blocked |= {(b, a) for a in side_a for b in side_b[1:]}
            side_b = [bridge]
        else:
            self.blocked |= {(a, b) for a in side_a for b in side_b}
            self.blocked |= {(b, a) for a in side_a for b in side_b}
        self.faults += 1
        self._log(f"partition {shape}: {side_a} | {side_b}")
        # Short partitions heal before check-quorum deposes the old leader,
        # so its stale messages meet the new term; long ones outlast elections.
        short = self.rng.random() < 0.4
        self._at(self.rng.randint(10, 150) if short else self.rng.randint(100, 2000), "heal")

    def _fault_crashes(self) -> None:
        alive = self._alive()
        if not alive:
            return
        leader = self._leader()
        node = leader if leader is not None and self.rng.random() < 0.5 else self.rng.choice(alive)
        self._crash(node, "(kill -9)")

    def _fault_membership(self) -> None:
        leader = self._leader()
        if leader is None or leader.core is None:
            return
        conf = leader.core.conf
        choice = self.rng.random()
        if choice < 0.35 and len(conf.members()) < 7:
            nid = self._new_id()
            self.nodes[nid] = SimNode(nid, MemoryStorage())
            self._start(nid)
            change = ConfChange(ConfChangeType.ADD_LEARNER, nid)
        elif choice < 0.6 and conf.learners:
            change = ConfChange(ConfChangeType.ADD_VOTER, self.rng.choice(conf.learners))
        elif len(conf.voters) > 3 or (conf.learners and self.rng.random() < 0.5):
            pool = list(conf.learners) + (list(conf.voters) if len(conf.voters) > 3 else [])
            change = ConfChange(ConfChangeType.REMOVE, self.rng.choice(sorted(pool)))
        else:
            return
        try:
            leader.core.propose_conf_change(change)
        except (ConfChangeError, ProposalDroppedError) as e:
            self._log(f"conf change {change.type.value} {change.node_id} refused: {e}")
            return
        self.faults += 1
        self._log(f"conf change {change.type.value} {change.node_id} via {leader.id}")

    def _fault_transfers(self) -> None:
        leader = self._leader()
        if leader is None or leader.core is None:
            return
        others = [v for v in leader.core.conf.voters if v != leader.id]
        if not others:
            return
        target = self.rng.choice(others)
        self.faults += 1
        self._log(f"transfer leadership {leader.id} -> {target}")
        leader.core.transfer_leader(target)

    def _fault_pauses(self) -> None:
        alive = [n for n in self._alive() if n.paused_until_ms is None]
        if not alive:
            return
        leader = self._leader()
        node = leader if leader in alive and self.rng.random() < 0.6 else self.rng.choice(alive)
        assert node is not None
        duration = self.rng.randint(50, 1500)
        node.paused_until_ms = self.now_ms + duration
        self.faults += 1
        self._log(f"pause {node.id} for {duration}ms")
        self._at(duration, "resume", node.id)

    def _fault_snapshots(self) -> None:
        alive = [n for n in self._alive() if n.sm_index > n.storage.snapshot_meta().index]
        if not alive:
            return
        node = self.rng.choice(alive)
        assert node.core is not None
        index = node.sm_index
        meta: SnapshotMeta = node.core.snapshot_meta(index)
        node.storage.create_snapshot(meta, encode_sm(node.sm))
        keep = self.rng.choice([0, 2, 10, 50])
        node.storage.compact(Index(max(index - keep, node.storage.first_index() - 1)))
        self.faults += 1
        self._log(f"snapshot {node.id} at {index}, compact keeping {keep}")

    # ------------------------------------------------------------ invariants
    def _check_ready(self, node: SimNode, rd: Ready) -> None:
        core = node.core
        assert core is not None
        # Log Matching (§5.3): an (index, term) names one entry and one
        # predecessor everywhere. By induction, logs that share an entry
        # share everything before it.
        for e in rd.entries:
            prev_term = core.log.term(Index(e.index - 1))
            key = (e.index, e.term)
            seen = self.entries_seen.get(key)
            value = (e.data, e.type, prev_term)
            if seen is None:
                self.entries_seen[key] = value
            elif (
                seen[0] != e.data
                or seen[1] != e.type
                or (prev_term is not None and seen[2] is not None and seen[2] != prev_term)
            ):
                raise Violation(f"log matching: {node.id} holds a different entry {key}")
        if rd.hard_state is not None and rd.hard_state.commit > core.log.last_index():
            raise Violation(f"{node.id} persists commit beyond its log")

    def _check_invariants(self) -> None:
        for node in self._alive():
            core = node.core
            assert core is not None
            log = core.log
            # Election Safety: at most one leader per term.
            if core.role is Role.LEADER:
                holder = self.leaders.setdefault(core.term, node.id)
                if holder != node.id:
                    raise Violation(f"two leaders in term {core.term}: {holder} and {node.id}")
                self._check_leader(node)
            else:
                self.leader_tail.pop(node.id, None)
            # Commit never moves back; applied <= commit.
            if log.committed < node.last_commit:
                raise Violation(f"{node.id} commit went back {node.last_commit}->{log.committed}")
            for i in range(node.last_commit + 1, log.committed + 1):
                t = log.term(Index(i))
                if t is None:
                    continue
                if self.committed.setdefault(i, t) != t:
                    raise Violation(
                        f"{node.id} committed {i}@{t} but {i}@{self.committed[i]} was committed"
                    )
                self.committed_in.setdefault(i, core.term)
            node.last_commit = log.committed
            if log.applied > log.committed or node.sm_index > log.committed:
                raise Violation(f"{node.id} applied {node.sm_index} beyond commit {log.committed}")

    def _check_leader(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        log = core.log
        tail = self.leader_tail.get(node.id)
        if tail is None or tail[0] != core.term:
            # Leader Completeness (§5.4): a leader holds every entry committed
            # in an earlier term.
            for i, t in self.committed.items():
                if self.committed_in[i] >= core.term:
                    continue
                if i >= log.first_index() and log.term(Index(i)) != t:
                    raise Violation(
                        f"leader completeness: {node.id} leads term {core.term} "
                        f"without committed entry {i}@{t}"
                    )
        elif log.last_index() < tail[1] or (log.term(Index(tail[1])) not in (None, tail[2])):
            # Leader Append-Only: a leader never overwrites or deletes entries.
            raise Violation(f"leader {node.id} rewrote its log below {tail[1]}")
        last = log.last_index()
        self.leader_tail[node.id] = (core.term, last, log.term(last) or 0)

    def _check_sm_prefix(self, node: SimNode) -> None:
        """A state machine restored from a snapshot must equal what was
        applied, at the same indexes, everywhere else."""
        expected = [
            d
            for i, d in sorted(self.applied.items())
            if i <= node.sm_index and d and not d.startswith(b"conf:")
        ]
        if node.sm != expected:
            raise Violation(
                f"{node.id} restored a state machine at {node.sm_index} that differs from history"
            )

    # -------------------------------------------------------------- liveness
    def _heal_and_check_liveness(self) -> None:
        self._log("=== heal: no more faults ===")
        self.mix = FaultMix(max_delay_ms=5)
        self.blocked.clear()
        self._events = [e for e in self._events if e[2] in ("tick", "deliver", "resume")]
        heapq.heapify(self._events)
        for nid in sorted(self.nodes):
            if not self.nodes[nid].alive:
                self._start(nid)
        deadline = self.now_ms + 60 * ELECTION_TICKS * TICK_MS
        # Like a client: write through the leader, retrying if leadership
        # moves before the write is acknowledged.
        while True:
            if self.now_ms > deadline:
                raise Violation("liveness: no write acknowledged after healing")
            leader = self._leader()
            if leader is None or leader.core is None:
                self._step()
                continue
            data = f"w{len(self.writes)}".encode()
            try:
                index = leader.core.propose(data)
            except (NotLeaderError, ProposalDroppedError):
                self._step()
                continue
            w = Write(len(self.writes), leader.id, self.now_ms, index, leader.core.term)
            self.writes.append(w)
            self.write_by_data[data] = w
            while w.acked_ms is None and self._still_leads(leader, w.term):
                if self.now_ms > deadline:
                    raise Violation(f"liveness: write {index} not committed after healing")
                self._step()
            if w.acked_ms is not None:
                break
        while not self._converged(index):
            if self.now_ms > deadline:
                raise Violation(f"liveness: write {index} not applied everywhere after healing")
            self._step()
        self._check_durability()
        self._check_linearizable_reads()

    @staticmethod
    def _still_leads(node: SimNode, term: int) -> bool:
        return node.core is not None and node.core.role is Role.LEADER and node.core.term == term

    def _converged(self, index: Index) -> bool:
        """Every member of the leader's configuration has applied `index`
        and the same state machine."""
        leader = self._leader()
        if leader is None or leader.core is None:
            return False
        nodes = [self.nodes[nid] for nid in leader.core.conf.members()]
        if any(n.core is None or n.sm_index < leader.core.log.committed for n in nodes):
            return False
        if leader.core.log.committed < index:
            return False
        return all(n.sm == nodes[0].sm for n in nodes)

    def _check_durability(self) -> None:
        """No acknowledged write is missing from the converged state."""
        leader = self._leader()
        assert leader is not None
        final = set(leader.sm)
        for w in self.writes:
            if w.acked_ms is not None and self._data(w) not in final:
                raise Violation(f"acknowledged write w{w.id} lost")

    @staticmethod
    def _data(w: Write) -> bytes:
        return f"w{w.id}".encode()

    def _check_linearizable_reads(self) -> None:
        """Every completed ReadIndex read saw a prefix of the write history
        that (a) includes every write acknowledged before the read began and
        (b) is no shorter than that of any read completed before it began."""
        order = [d for _, d in sorted(self.applied.items()) if d and not d.startswith(b"conf:")]
        position = {d: i for i, d in enumerate(order)}
        acked = sorted(
            (w.acked_ms, position[self._data(w)])
            for w in self.writes
            if w.acked_ms is not None and self._data(w) in position
        )
        done = sorted(
            (r for r in self.reads if r.completed_ms is not None), key=lambda r: r.invoked_ms
        )
        by_completion = sorted(done, key=lambda r: r.completed_ms or 0)
        ai = ci = 0
        need = 0
        floor = 0
        for r in done:
            while ai < len(acked) and acked[ai][0] < r.invoked_ms:
                need = max(need, acked[ai][1] + 1)
                ai += 1
            while ci < len(by_completion) and (by_completion[ci].completed_ms or 0) < r.invoked_ms:
                floor = max(floor, by_completion[ci].value or 0)
                ci += 1
            assert r.value is not None
            if r.value < need:
                raise Violation(
                    f"stale read r{r.id} on {r.node}: saw {r.value} writes, "
                    f"{need} were acknowledged before it began"
                )
            if r.value < floor:
                raise Violation(
                    f"non-linearizable read r{r.id}: saw {r.value} writes, "
                    f"a read that finished before it began saw {floor}"
                )
