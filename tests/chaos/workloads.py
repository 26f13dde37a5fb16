"""Client workloads for chaos runs. Each client is a thread that sends one
request at a time to a random node and records what it asked, what it was
told, and when, for the checks at the end.

An outcome is one of three: `ok` (the node answered and the write took
effect), `fail` (it certainly did not take effect: refused before it was
sent, rejected as bad, or applied with an SQL error), or `unknown` (a
timeout, a dropped connection or a server error: it may have taken effect,
now or later). Checks treat unknowns as either.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.chaos.cluster import ChaosNode
from tests.chaos.linearizability import Operation

CLIENT_TIMEOUT_S = 8.0
"""Longer than the nodes' -raft-apply-timeout, so that a node's own answer
(often a definite one) usually arrives before the client gives up."""

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"


@dataclass
class Reply:
    outcome: str
    body: Any = None
    status: int = 0
    error: str = ""


def send(node: ChaosNode, session: requests.Session, path: str, body: Any) -> Reply:
    """POST a JSON body; classify what came back."""
    try:
        r = session.post(node.url + path, json=body, timeout=CLIENT_TIMEOUT_S)
    except requests.exceptions.ConnectionError as e:
        # Refused before anything was sent: certainly not applied. Anything
        # else (reset, closed mid-request) may have reached the node.
        refused = "refused" in str(e).lower() or "no route" in str(e).lower()
        return Reply(FAIL if refused else UNKNOWN, error=type(e).__name__)
    except requests.RequestException as e:
        return Reply(UNKNOWN, error=type(e).__name__)
    if r.status_code == 200:
        try:
            return Reply(OK, r.json(), 200)
        except ValueError:
            return Reply(UNKNOWN, status=200, error="invalid JSON in a 200")
    if 400 <= r.status_code < 500:
        return Reply(FAIL, status=r.status_code, error=r.text[:200])
    return Reply(UNKNOWN, status=r.status_code, error=r.text[:200])


def first_result(reply: Reply) -> dict[str, Any] | None:
    """The first statement's result of a 200 answer, or None."""
    if reply.outcome != OK or not isinstance(reply.body, dict):
        return None
    results = reply.body.get("results")
    if not isinstance(results, list) or not results:
        return None
    return results[0]


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, outcome: str) -> None:
        with self.lock:
            self.counts[f"{kind} {outcome}"] += 1


class Workload:
    """Base: `clients` threads calling `one_op` until stopped."""

    name = "workload"
    schema: list[str] = []

    def __init__(self, nodes: list[ChaosNode], clients: int, seed: int) -> None:
        self.nodes = nodes
        self.clients = clients
        self.seed = seed
        self.stats = Stats()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.anomalies: list[str] = []
        self._lock = threading.Lock()
        # Every value written is unique (itertools.count is atomic under the
        # GIL), so that a read names the one write it saw.
        self.values = itertools.count(1)

    def setup_statements(self) -> list[Any]:
        return []

    def start(self) -> None:
        for c in range(self.clients):
            rng = random.Random(f"{self.seed}/{self.name}/{c}")
            t = threading.Thread(target=self._client, args=(c, rng), daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT_S + 5)

    def _client(self, client: int, rng: random.Random) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            node = rng.choice(self.nodes)
            self.one_op(client, rng, node, session)

    def one_op(self, client: int, rng: random.Random, node: ChaosNode, s: requests.Session) -> None:
        raise NotImplementedError

    def anomaly(self, text: str) -> None:
        with self._lock:
            self.anomalies.append(text)


# -- registers: reads, writes and compare-and-set per key ------------------------
class Registers(Workload):
    """Linearizable registers: every op is recorded for the checker.

    Keys rotate: `keys` are in use at a time, each for about `ops_per_key`
    operations, as Jepsen's independent keys do. An operation whose outcome
    is unknown stays pending for ever in the history, and the checker's
    search grows with the number pending at once; short-lived keys bound it.

    Every write and successful compare-and-set also inserts its (unique)
    value into `register_writes` in the same transaction, so that after the
    run the log tells which unknown writes took effect: those that did not
    leave the history, the others stay pending.
    """

    name = "register"

    def __init__(
        self,
        nodes: list[ChaosNode],
        clients: int,
        seed: int,
        keys: int = 4,
        ops_per_key: int = 150,
        levels: tuple[str, ...] = ("linearizable", "strong"),
    ) -> None:
        super().__init__(nodes, clients, seed)
        self.levels = levels
        self.active_keys = keys
        self.ops_per_key = ops_per_key
        self.started = itertools.count()
        self.keys_used: set[str] = set()
        self.history: list[Operation] = []

    def setup_statements(self) -> list[Any]:
        return [
            "CREATE TABLE registers (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
            "CREATE TABLE register_writes (v INTEGER PRIMARY KEY)",
        ]

    def _key(self, rng: random.Random) -> str:
        generation = next(self.started) // (self.ops_per_key * self.active_keys)
        key = f"k{generation * self.active_keys + rng.randrange(self.active_keys)}"
        with self._lock:
            self.keys_used.add(key)
        return key

    def one_op(self, client: int, rng: random.Random, node: ChaosNode, s: requests.Session) -> None:
        key = self._key(rng)
        roll = rng.random()
        fresh = next(self.values)
        call = time.monotonic()
        if roll < 0.45:
            level = rng.choice(self.levels)
            reply = send(
                node, s, f"/db/query?level={level}", [["SELECT v FROM registers WHERE k = ?", key]]
            )
            ret = time.monotonic()
            res = first_result(reply)
            if res is None or "error" in res:
                self.stats.add(f"read-{level}", FAIL if reply.outcome == FAIL else UNKNOWN)
                return  # a read that told nothing changes nothing: leave it out
            values = res.get("values") or []
            output = values[0][0] if values else None
            self.stats.add(f"read-{level}", OK)
            self._record(Operation(client, key, "read", None, output, call, ret))
        elif roll < 0.75:
            body = [
                [
                    "INSERT INTO registers(k, v) VALUES(?, ?) "
                    "ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                    key,
                    fresh,
                ],
                ["INSERT INTO register_writes(v) VALUES(?)", fresh],
            ]
            reply = send(node, s, "/db/execute?transaction", body)
            ret = time.monotonic()
            outcome = self._write_outcome(reply)
            self.stats.add("write", outcome)
            if outcome != FAIL:
                done = ret if outcome == OK else None
                self._record(Operation(client, key, "write", fresh, None, call, done))
        else:
            expected = self._recent_value(key, rng)
            body = [
                ["UPDATE registers SET v = ? WHERE k = ? AND v = ?", fresh, key, expected],
                # changes(): rows the UPDATE just changed, the same on every node.
                ["INSERT INTO register_writes(v) SELECT ? WHERE changes() > 0", fresh],
            ]
            reply = send(node, s, "/db/execute?transaction", body)
            ret = time.monotonic()
            outcome = self._write_outcome(reply)
            if outcome == OK:
                res = first_result(reply) or {}
                swapped = res.get("rows_affected", 0) == 1
                self.stats.add("cas-" + ("swapped" if swapped else "refused"), OK)
                self._record(Operation(client, key, "cas", (expected, fresh), swapped, call, ret))
            else:
                self.stats.add("cas", outcome)
                if outcome == UNKNOWN:
                    self._record(Operation(client, key, "cas", (expected, fresh), None, call, None))

    @staticmethod
    def _write_outcome(reply: Reply) -> str:
        if reply.outcome != OK:
            return reply.outcome
        results = reply.body.get("results") if isinstance(reply.body, dict) else None
        if not isinstance(results, list) or not results:
            return UNKNOWN  # e.g. a timeout reported in the body: may apply later
        # An SQL error is a result of an applied entry whose transaction
        # rolled back: certainly no effect.
        return FAIL if any("error" in r for r in results) else OK

    def _recent_value(self, key: str, rng: random.Random) -> int:
        """A value this key probably holds now, so that CAS often succeeds.
        Never NULL: `v = NULL` is never true in SQL, so a CAS from "absent"
        cannot be expressed; 0 is a value nobody writes (it must fail)."""
        with self._lock:
            for op in reversed(self.history[-50:]):
                if op.key == key and op.kind == "read" and op.output is not None:
                    return int(op.output)
                if op.key == key and op.kind == "write" and rng.random() < 0.5:
                    return int(op.value)
        return 0

    def _record(self, op: Operation) -> None:
        with self._lock:
            self.history.append(op)

    def resolved_history(self, applied: set[int]) -> tuple[list[Operation], list[str]]:
        """The history with unknown outcomes settled by the write log, and
        the durability problems the log shows: an acknowledged write or
        swap missing from it, or one that failed present in it."""
        ops, problems = [], []
        for op in self.history:
            written = op.value if op.kind == "write" else op.value[1] if op.kind == "cas" else None
            if op.kind == "read":
                ops.append(op)
            elif op.ret is None:
                if written in applied:
                    output = True if op.kind == "cas" else None
                    ops.append(dataclasses.replace(op, output=output))
                # else: it never took effect, and is left out
            else:
                took = op.kind == "write" or op.output is True
                if took != (written in applied):
                    problems.append(
                        f"{op.kind} of {written} on {op.key} "
                        f"{'acknowledged but missing' if took else 'refused but applied'}"
                    )
                ops.append(op)
        return ops, problems


# -- bank: transfers in transactions, a constant total ---------------------------
class Bank(Workload):
    name = "bank"
    ACCOUNTS = 5
    INITIAL = 100
    LEVELS = ("none", "weak", "linearizable", "strong")

    def __init__(self, nodes: list[ChaosNode], clients: int, seed: int) -> None:
        super().__init__(nodes, clients, seed)
        self.total = self.ACCOUNTS * self.INITIAL
        self.reads_checked = 0

    def setup_statements(self) -> list[Any]:
        inserts = [
            ["INSERT INTO accounts(id, balance) VALUES(?, ?)", i, self.INITIAL]
            for i in range(self.ACCOUNTS)
        ]
        return [
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL "
            "CHECK (balance >= 0))",
            *inserts,
        ]

    def one_op(self, client: int, rng: random.Random, node: ChaosNode, s: requests.Session) -> None:
        if rng.random() < 0.5:
            a, b = rng.sample(range(self.ACCOUNTS), 2)
            amount = rng.randint(1, 40)
            reply = send(
                node,
                s,
                "/db/execute?transaction",
                [
                    ["UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, a],
                    ["UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, b],
                ],
            )
            if reply.outcome == OK:
                errors = [r for r in reply.body.get("results", []) if "error" in r]
                self.stats.add("transfer-" + ("refused" if errors else "done"), OK)
            else:
                self.stats.add("transfer", reply.outcome)
            return
        level = rng.choice(self.LEVELS)
        reply = send(node, s, f"/db/query?level={level}", ["SELECT id, balance FROM accounts"])
        res = first_result(reply)
        if res is None or "error" in res:
            self.stats.add(f"balance-read-{level}", UNKNOWN if reply.outcome != FAIL else FAIL)
            return
        rows = res.get("values") or []
        self.stats.add(f"balance-read-{level}", OK)
        with self._lock:
            self.reads_checked += 1
        # The accounts were created in one transaction before traffic began:
        # a read sees all of them (or, at level none on a node still
        # rebuilding, none of them).
        if not rows and level == "none":
            return
        balances = [r[1] for r in rows]
        if len(rows) != self.ACCOUNTS or sum(balances) != self.total or min(balances) < 0:
            self.anomaly(
                f"{node.node_id} level={level}: balances {rows} "
                f"(sum {sum(balances)}, expected {self.ACCOUNTS} accounts summing to {self.total})"
            )


# -- set: every acknowledged insert must survive ----------------------------------
class AppendSet(Workload):
    name = "set"

    def __init__(self, nodes: list[ChaosNode], clients: int, seed: int) -> None:
        super().__init__(nodes, clients, seed)
        self.acked: set[int] = set()
        self.failed: set[int] = set()
        self.unknown: set[int] = set()

    def setup_statements(self) -> list[Any]:
        return ["CREATE TABLE items (v INTEGER PRIMARY KEY)"]

    def one_op(self, client: int, rng: random.Random, node: ChaosNode, s: requests.Session) -> None:
        value = next(self.values)
        reply = send(node, s, "/db/execute", [["INSERT INTO items(v) VALUES(?)", value]])
        res = first_result(reply)
        if reply.outcome == OK and res is not None and "error" not in res:
            outcome, bucket = OK, self.acked
        elif reply.outcome == FAIL or (res is not None and "error" in res):
            outcome, bucket = FAIL, self.failed
        else:
            outcome, bucket = UNKNOWN, self.unknown
        self.stats.add("insert", outcome)
        with self._lock:
            bucket.add(value)

    def check_final(self, present: set[int]) -> list[str]:
        problems = []
        lost = self.acked - present
        if lost:
            problems.append(f"{len(lost)} acknowledged inserts lost, e.g. {sorted(lost)[:10]}")
        ghosts = self.failed & present
        if ghosts:
            problems.append(
                f"{len(ghosts)} inserts reported failed are present: {sorted(ghosts)[:10]}"
            )
        # Negative values are the runner's own markers, not the clients'.
        strangers = {v for v in present if v >= 0} - self.acked - self.failed - self.unknown
        if strangers:
            problems.append(f"{len(strangers)} values nobody inserted: {sorted(strangers)[:10]}")
        return problems
