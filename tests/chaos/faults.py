"""The faults a chaos run injects. Each fault starts with `begin`, which
returns what it did in words, and is undone by `end`; the runner holds it
for a while between the two while the clients keep going."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.chaos.cluster import ChaosCluster, ChaosNode
from tests.system.node import wait_for


@dataclass
class Fault:
    name: str = ""
    cluster: ChaosCluster | None = None
    rng: random.Random = field(default_factory=random.Random)

    @property
    def c(self) -> ChaosCluster:
        assert self.cluster is not None
        return self.cluster

    def begin(self) -> str:
        raise NotImplementedError

    def step(self) -> None:
        """Called every ~0.2 s while the fault is held (flapping uses it)."""

    def end(self) -> str | None:
        """Undo the fault; may say what was seen while it was held."""
        raise NotImplementedError

    def usable(self) -> bool:
        return True

    # -- helpers -------------------------------------------------------------------
    def leader_or_random(self, prefer_leader: bool) -> ChaosNode:
        if prefer_leader:
            leader = self.c.leader()
            if leader is not None:
                return leader
        return self.rng.choice([n for n in self.c.voters if n.alive()])


class OnProcess(Fault):
    """Do something to one node's process (the leader's, or any voter's) and
    undo it after the hold: kill -9 then restart, or SIGSTOP then SIGCONT
    (held longer than the election timeout)."""

    ACTIONS: dict[str, tuple[str, Callable[[ChaosNode], None], Callable[[ChaosNode], None]]] = {
        "kill": ("kill -9", ChaosNode.kill, ChaosNode.start),
        "pause": ("SIGSTOP", ChaosNode.pause, ChaosNode.resume),
    }

    def __init__(self, action: str, leader: bool) -> None:
        super().__init__(f"{action}-leader" if leader else action)
        self.verb, self.do, self.undo = self.ACTIONS[action]
        self.leader = leader
        self.victim: ChaosNode | None = None

    def begin(self) -> str:
        self.victim = self.leader_or_random(self.leader)
        self.do(self.victim)
        return f"{self.verb} {self.victim.node_id}"

    def end(self) -> None:
        assert self.victim is not None
        self.undo(self.victim)


class Partition(Fault):
    """Cut network links: `kind` is majority (a random minority cut off),
    leader (the leader isolated), bridge (two halves that see only one node
    in the middle) or flap (a random partition that changes every second)."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"partition-{kind}")
        self.kind = kind
        self.next_flip = 0.0

    def usable(self) -> bool:
        return self.c.net is not None

    def begin(self) -> str:
        return self._apply()

    def _apply(self) -> str:
        net = self.c.net
        assert net is not None
        net.heal()
        ids = list(range(len(self.c.nodes)))
        names = [n.node_id for n in self.c.nodes]
        if self.kind == "leader":
            leader = self.c.leader()
            victim = leader.index if leader is not None else self.rng.choice(ids)
            net.partition([i for i in ids if i != victim])
            return f"isolate {names[victim]}"
        if self.kind == "bridge":
            self.rng.shuffle(ids)
            bridge, rest = ids[0], ids[1:]
            half = len(rest) // 2
            left, right = rest[:half], rest[half:]
            for a in left:
                for b in right:
                    net.cut(a, b)
            return (
                f"bridge via {names[bridge]}: {[names[i] for i in left]} | "
                f"{[names[i] for i in right]}"
            )
        self.rng.shuffle(ids)
        minority = ids[: (len(self.c.voters) - 1) // 2 or 1]
        majority = [i for i in ids if i not in minority]
        net.partition(minority, majority)
        self.next_flip = time.monotonic() + self.rng.uniform(0.3, 1.5)
        return f"{[names[i] for i in minority]} | {[names[i] for i in majority]}"

    def step(self) -> None:
        if self.kind == "flap" and time.monotonic() >= self.next_flip:
            if self.c.net is not None and self.c.net.cut_links:
                self.c.net.heal()
                self.next_flip = time.monotonic() + self.rng.uniform(0.2, 1.0)
            else:
                self._apply()

    def end(self) -> None:
        assert self.c.net is not None
        self.c.net.heal()


class Transfer(Fault):
    """Hand leadership to another voter, a few times, during traffic."""

    def __init__(self) -> None:
        super().__init__("transfer")

    def begin(self) -> str:
        return self._once()

    def _once(self) -> str:
        leader = self.c.leader()
        if leader is None:
            return "transfer: no leader to ask"
        targets = [n for n in self.c.voters if n is not leader and n.alive()]
        target = self.rng.choice(targets)
        try:
            r = leader.post("/leader", json={"id": target.node_id}, timeout=5)
            return f"transfer {leader.node_id} -> {target.node_id}: {r.status_code}"
        except requests.RequestException as e:
            return f"transfer {leader.node_id} -> {target.node_id}: {type(e).__name__}"

    def step(self) -> None:
        if self.rng.random() < 0.1:
            self._once()

    def end(self) -> None:
        pass


class Membership(Fault):
    """Remove a node from the cluster (DELETE /remove on the leader), wipe
    it, and let it join again as a new member with the same id."""

    def __init__(self) -> None:
        super().__init__("membership")
        self.victim: ChaosNode | None = None

    def begin(self) -> str:
        leader = self.c.wait_leader()
        candidates = [n for n in self.c.nodes if n is not leader and n is not self.c.nodes[0]]
        self.victim = self.rng.choice(candidates)
        r = leader.session.delete(
            leader.url + "/remove", json={"id": self.victim.node_id}, timeout=10
        )
        self.victim.stop()
        return f"remove {self.victim.node_id} (via {leader.node_id}: {r.status_code})"

    def end(self) -> None:
        assert self.victim is not None
        v = self.victim
        v.wipe()
        leader = self.c.wait_leader()
        # A wiped node joins whoever leads now, as any new node would.
        v.extra = _without_join(v.extra) + ["-join", leader.raft_addr]
        v.start()
        wait_for(f"{v.node_id} back as a member", lambda: _is_member(self.c, v), 60)


def _without_join(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "-join":
            skip = True
            continue
        out.append(a)
    return out


def _is_member(cluster: ChaosCluster, node: ChaosNode) -> bool:
    leader = cluster.leader()
    status = leader.status() if leader is not None else None
    return status is not None and node.node_id in {
        n["id"] if isinstance(n, dict) else n for n in status["store"]["nodes"]
    }


class DiskFull(Fault):
    """Fill the small disk of the node whose data lives on a tmpfs, and
    watch what the node says and does while it is full."""

    def __init__(self) -> None:
        super().__init__("disk-full")
        self.began = 0.0
        self.noticed_after: float | None = None
        self.write_answers: Counter[str] = Counter()

    def usable(self) -> bool:
        return self.c.disk_node is not None

    @property
    def node(self) -> ChaosNode:
        assert self.c.disk_node is not None
        return self.c.disk_node

    def begin(self) -> str:
        how = ""
        leader = self.c.leader()
        if leader is not None and leader is not self.node and self.rng.random() < 0.5:
            # Half the time the full disk is the leader's.
            try:
                r = leader.post("/leader?wait", json={"id": self.node.node_id}, timeout=10)
                how = f", after moving leadership to it: {r.status_code}"
            except requests.RequestException as e:
                how = f", after trying to move leadership to it: {type(e).__name__}"
        written = self.node.fill_disk()
        self.began = time.monotonic()
        return f"fill {self.node.node_id}'s disk ({written >> 20} MB of filler){how}"

    def step(self) -> None:
        """Write through the full node itself: it must answer (a success
        forwarded to a healthy leader, or a clean error), never hang."""
        if self.noticed_after is None:
            status = self.node.status()
            if status is not None and status["store"].get("disk_error"):
                self.noticed_after = time.monotonic() - self.began
        try:
            r = self.node.post(
                "/db/execute",
                json=[["INSERT INTO items(v) VALUES(?)", -self.rng.randrange(1, 1 << 40)]],
                timeout=8,
            )
            self.write_answers[f"{r.status_code} {_error_of(r)}".strip()] += 1
        except requests.RequestException as e:
            self.write_answers[type(e).__name__] += 1

    def end(self) -> str:
        self.node.free_disk()
        noticed = (
            f"noticed after {self.noticed_after:.1f} s"
            if self.noticed_after is not None
            else "never stalled (its writes fitted in space it already had)"
        )
        answers = ", ".join(f"{k}: {n}" for k, n in sorted(self.write_answers.items()))
        return f"{self.node.node_id} {noticed}; writes to it answered {answers or 'nothing'}"


def _error_of(r: requests.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text.strip()[:60]
    return str(body.get("error", "")) if isinstance(body, dict) else ""


ALL_FAULTS = (
    "kill",
    "kill-leader",
    "pause",
    "pause-leader",
    "partition-majority",
    "partition-leader",
    "partition-bridge",
    "partition-flap",
    "transfer",
    "membership",
    "disk-full",
)


def make_fault(name: str, cluster: ChaosCluster, rng: random.Random) -> Fault:
    fault: Fault
    action, _, target = name.partition("-")
    if action in OnProcess.ACTIONS and target in ("", "leader"):
        fault = OnProcess(action, leader=target == "leader")
    elif name.startswith("partition-"):
        fault = Partition(name.removeprefix("partition-"))
    elif name == "transfer":
        fault = Transfer()
    elif name == "membership":
        fault = Membership()
    elif name == "disk-full":
        fault = DiskFull()
    else:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(ALL_FAULTS)}")
    fault.cluster = cluster
    fault.rng = rng
    return fault
