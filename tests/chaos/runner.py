"""A chaos run: a real cluster, concurrent clients, one fault after another,
then healing and the checks. `run()` returns a Report; `scripts/chaos.py`
prints it and tests/chaos/test_chaos.py runs a short one in CI.

The fault schedule (which fault, which victim, how long) comes from the
seed; what the processes do in between is real time and real scheduling,
so a seed names a run's faults, not every interleaving of it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.chaos.cluster import ChaosCluster, ChaosNode, can_mount_tmpfs
from tests.chaos.faults import ALL_FAULTS, Fault, make_fault
from tests.chaos.linearizability import Operation, check_registers, summary
from tests.chaos.net import Network
from tests.chaos.workloads import AppendSet, Bank, Registers, Workload
from tests.system.node import wait_for

FATAL_LOG_MARKS = ("Raft loop stopped", "Traceback (most recent call last)")


@dataclass
class RunConfig:
    voters: int = 3
    non_voters: int = 1
    duration_s: float = 60.0
    seed: int = 1
    faults: tuple[str, ...] = ALL_FAULTS
    register_clients: int = 6
    # Read levels of the register clients. Only linearizable and strong
    # promise linearizability; the others are here to show that the checker
    # catches the stale reads they allow.
    register_levels: tuple[str, ...] = ("linearizable", "strong")
    bank_clients: int = 2
    set_clients: int = 2
    hold_s: tuple[float, float] = (1.5, 5.0)
    quiet_s: tuple[float, float] = (0.5, 2.0)
    use_netns: bool = True
    base: Path | None = None
    log: Callable[[str], None] = print


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class Report:
    config: RunConfig
    base: Path
    netns: str = ""
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[str] = field(default_factory=list)
    ops: Counter[str] = field(default_factory=Counter)
    checks: list[Check] = field(default_factory=list)
    fault_seconds: float = 0.0

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not self.failed

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append(Check(name, passed, detail))

    def render(self) -> str:
        cfg = self.config
        lines = [
            f"chaos run: seed {cfg.seed}, {cfg.voters} voters + {cfg.non_voters} non-voters, "
            f"{self.fault_seconds:.0f} s under faults, network faults: {self.netns}",
            f"data and logs: {self.base}",
            "faults injected:",
        ]
        lines += [f"  {name:20} {n}" for name, n in sorted(self.faults.items())]
        lines.append("operations:")
        lines += [f"  {name:32} {n}" for name, n in sorted(self.ops.items())]
        lines.append("checks:")
        for c in self.checks:
            lines.append(f"  {'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        passed = len(self.checks) - len(self.failed)
        lines.append(f"{passed} passed, {len(self.failed)} failed")
        return "\n".join(lines)


class Runner:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        base = cfg.base or Path(tempfile.mkdtemp(prefix=f"rqlite-chaos-{cfg.seed}-"))
        self.report = Report(cfg, base)
        self.cluster: ChaosCluster | None = None
        self.workloads: list[Workload] = []
        self.registers: Registers | None = None
        self.bank: Bank | None = None
        self.set: AppendSet | None = None
        self.unexpected_exits: list[str] = []
        self.liveness: list[str] = []

    @property
    def c(self) -> ChaosCluster:
        assert self.cluster is not None
        return self.cluster

    def run(self) -> Report:
        cfg = self.cfg
        netns = cfg.use_netns and any(f.startswith("partition-") for f in cfg.faults)
        if netns:
            netns, why = Network.available()
            self.report.netns = why if netns else f"skipped ({why})"
        else:
            self.report.netns = "not asked for"
        disk = "disk-full" in cfg.faults and can_mount_tmpfs()
        try:
            self.cluster = ChaosCluster(
                self.report.base,
                cfg.voters,
                cfg.non_voters,
                use_netns=netns,
                disk_node=cfg.voters - 1 if disk else None,
            )
            self.c.start()
            self._setup()
            for w in self.workloads:
                w.start()
            self._inject()
            for w in self.workloads:
                w.stop()
            self._heal_all()
            self._final_checks()
        finally:
            if self.cluster is not None:
                self._scan_logs()
                self.cluster.destroy()
            self._save_history()
        return self.report

    # -- phases ----------------------------------------------------------------------
    def _setup(self) -> None:
        cfg, nodes = self.cfg, self.c.nodes
        self.registers = Registers(
            nodes, cfg.register_clients, cfg.seed, levels=cfg.register_levels
        )
        self.bank = Bank(nodes, cfg.bank_clients, cfg.seed)
        self.set = AppendSet(nodes, cfg.set_clients, cfg.seed)
        self.workloads = [self.registers, self.bank, self.set]
        stmts = [s for w in self.workloads for s in w.setup_statements()]
        leader = self.c.wait_leader()
        r = leader.post("/db/execute?transaction", json=stmts, timeout=15)
        assert r.status_code == 200 and not any("error" in x for x in r.json()["results"]), r.text
        wait_for("the schema on every node", lambda: all(self._has_accounts(n) for n in nodes), 30)

    def _has_accounts(self, node: ChaosNode) -> bool:
        rows = self._query(node, "SELECT COUNT(*) FROM accounts", "none")
        return rows is not None and rows[0][0] == Bank.ACCOUNTS

    def _inject(self) -> None:
        cfg = self.cfg
        usable = []
        for name in cfg.faults:
            probe = make_fault(name, self.c, self.rng)
            if probe.usable():
                usable.append(name)
            else:
                cfg.log(f"fault {name} is not possible here: skipped")
        if not usable:
            raise ValueError("no usable fault")
        start = time.monotonic()
        deadline = start + cfg.duration_s
        while time.monotonic() < deadline:
            fault = make_fault(self.rng.choice(usable), self.c, self.rng)
            hold = self.rng.uniform(*cfg.hold_s)
            began = time.monotonic()
            try:
                what = fault.begin()
            except Exception as e:  # noqa: BLE001 - a fault that could not start is reported
                what = f"could not start: {type(e).__name__}: {e}"
            self._log_fault(fault, what, began - start)
            end = time.monotonic() + hold
            while time.monotonic() < end:
                fault.step()
                self._watch_exits()
                time.sleep(0.2)  # the fault's hold time: pacing, not waiting for a result
            try:
                seen = fault.end()
                if seen:
                    self.report.fault_log.append(f"          {fault.name}: {seen}")
                    cfg.log(f"          {fault.name}: {seen}")
            except Exception as e:  # noqa: BLE001
                self.liveness.append(f"{fault.name}: could not undo ({type(e).__name__}: {e})")
            self.report.fault_seconds += time.monotonic() - began
            self._await_leader(f"after {fault.name}")
            time.sleep(self.rng.uniform(*cfg.quiet_s))  # calm between faults, by design

    def _log_fault(self, fault: Fault, what: str, at: float) -> None:
        self.report.faults[fault.name] += 1
        line = f"[{at:7.1f}s] {fault.name}: {what}"
        self.report.fault_log.append(line)
        self.cfg.log(line)

    def _await_leader(self, when: str) -> None:
        try:
            self.c.wait_leader(30)
        except TimeoutError:
            self.liveness.append(f"no leader within 30 s {when}")

    def _watch_exits(self) -> None:
        for n in self.c.nodes:
            if n.proc is not None and not n.alive() and not n.expected_down:
                code = n.proc.returncode
                self.unexpected_exits.append(f"{n.node_id} exited by itself (code {code})")
                self.cfg.log(f"!! {n.node_id} exited by itself (code {code}); restarting it")
                n.start()

    def _heal_all(self) -> None:
        if self.c.net is not None:
            self.c.net.heal()
        for n in self.c.nodes:
            n.resume()
            n.free_disk()
        self._watch_exits()
        for n in self.c.nodes:
            if not n.alive():
                n.start()
        try:
            wait_for(
                "every node ready after healing", lambda: all(n.ready() for n in self.c.nodes), 60
            )
        except TimeoutError as e:
            self.liveness.append(str(e))

    # -- checks ----------------------------------------------------------------------
    def _final_checks(self) -> None:
        rep = self.report
        for w in self.workloads:
            rep.ops.update({f"{w.name} {k}": v for k, v in w.stats.counts.items()})
        rep.check(
            "nodes stay up",
            not self.unexpected_exits,
            "; ".join(self.unexpected_exits) or "no node exited unless the runner stopped it",
        )
        converged, dumps = self._converge()
        rep.check(
            "liveness",
            not self.liveness and converged is not None,
            "; ".join(self.liveness) or "a leader after every fault; a final write went through",
        )
        if converged is None:
            rep.check("convergence", False, "no final write could be made")
        else:
            rep.check("convergence", converged[0], converged[1])
        assert self.registers is not None and self.bank is not None and self.set is not None
        regs = dumps.get("registers") if dumps else None
        log = dumps.get("register_writes") if dumps else None
        if regs is None or log is None:
            rep.check("linearizable registers", False, "no final data to settle the history with")
        else:
            history, problems = self.registers.resolved_history({v for (v,) in log})
            # The final state, read after everything else, is part of the history.
            now = time.monotonic()
            values = dict(regs)
            history += [
                Operation(-1, k, "read", None, values.get(k), now, now)
                for k in sorted(self.registers.keys_used)
            ]
            result = check_registers(history, budget_s=60)
            rep.check(
                "linearizable registers",
                result.ok and not result.unknown,
                summary(result) + "".join(f"\n      {k.explanation}" for k in result.failures[:3]),
            )
            rep.check(
                "register writes durable",
                not problems,
                "; ".join(problems[:5]) or "every acknowledged write in the log, no refused one",
            )
        bank_problems = list(self.bank.anomalies)
        if dumps and "accounts" in dumps:
            total = sum(b for _, b in dumps["accounts"])
            if total != self.bank.total:
                bank_problems.append(f"final total {total}, expected {self.bank.total}")
        rep.check(
            "bank total constant",
            not bank_problems,
            "; ".join(bank_problems[:5])
            or f"{self.bank.reads_checked} reads all summed to {self.bank.total}",
        )
        if dumps and "items" in dumps:
            present = {v for (v,) in dumps["items"]}
            problems = self.set.check_final(present)
            rep.check(
                "acknowledged inserts survive",
                not problems,
                "; ".join(problems)
                or f"{len(self.set.acked)} acknowledged, {len(self.set.unknown)} unknown, "
                f"{len(self.set.failed)} failed; all acknowledged present",
            )
        else:
            rep.check("acknowledged inserts survive", False, "no final data to check")

    def _converge(self) -> tuple[tuple[bool, str] | None, dict[str, list[Any]]]:
        """Make a final write through the leader, wait until every node has
        applied it, then compare every table on every node."""
        marker = self.rng.randrange(1 << 40)
        deadline = time.monotonic() + 60
        written = False
        while not written and time.monotonic() < deadline:
            leader = self.c.leader()
            if leader is None:
                time.sleep(0.1)  # poll interval while an election settles
                continue
            try:
                r = leader.post(
                    "/db/execute", json=[["INSERT INTO items(v) VALUES(?)", -marker]], timeout=10
                )
                written = r.status_code == 200 and "error" not in r.json()["results"][0]
            except (requests.RequestException, ValueError, KeyError):
                pass
        if not written:
            return None, {}

        def everywhere() -> bool:
            for n in self.c.nodes:
                rows = self._query(n, f"SELECT COUNT(*) FROM items WHERE v = {-marker}", "none")
                if rows != [[1]]:
                    return False
            return True

        try:
            wait_for("every node to apply the final write", everywhere, 60)
        except TimeoutError:
            behind = [
                n.node_id
                for n in self.c.nodes
                if self._query(n, f"SELECT COUNT(*) FROM items WHERE v = {-marker}", "none")
                != [[1]]
            ]
            return (False, f"nodes never applied the final write: {behind}"), {}
        tables = {
            "registers": "SELECT k, v FROM registers ORDER BY k",
            "register_writes": "SELECT v FROM register_writes ORDER BY v",
            "accounts": "SELECT id, balance FROM accounts ORDER BY id",
            "items": "SELECT v FROM items ORDER BY v",
        }
        dumps: dict[str, dict[str, Any]] = {}
        for n in self.c.nodes:
            dumps[n.node_id] = {t: self._query(n, sql, "none") for t, sql in tables.items()}
        first = dumps[self.c.nodes[0].node_id]
        differ = [nid for nid, d in dumps.items() if d != first]
        sizes = ", ".join(f"{t} {len(first[t] or [])} rows" for t in tables)
        if differ:
            return (False, f"{differ} differ from {self.c.nodes[0].node_id} ({sizes})"), first
        return (True, f"{len(dumps)} nodes identical: {sizes}"), first

    @staticmethod
    def _query(node: ChaosNode, sql: str, level: str) -> list[Any] | None:
        try:
            r = node.post(f"/db/query?level={level}", json=[sql], timeout=10)
            res = r.json()["results"][0]
        except (requests.RequestException, ValueError, KeyError, IndexError):
            return None
        if "error" in res:
            return None
        return res.get("values") or []

    def _scan_logs(self) -> None:
        found = []
        for n in self.c.nodes:
            text = n.log_path.read_text(errors="replace") if n.log_path.exists() else ""
            for mark in FATAL_LOG_MARKS:
                if mark in text:
                    found.append(f"{n.node_id}: {mark!r} in {n.log_path}")
        self.report.check(
            "no crashes in node logs",
            not found,
            "; ".join(found) or "no fatal error or traceback logged",
        )

    def _save_history(self) -> None:
        if self.registers is None:
            return
        path = self.report.base / "history.jsonl"
        with open(path, "w") as f:
            for op in self.registers.history:
                f.write(json.dumps(dataclasses.asdict(op)) + "\n")
        with open(self.report.base / "faults.log", "w") as f:
            f.write("\n".join(self.report.fault_log) + "\n")


def run(cfg: RunConfig) -> Report:
    return Runner(cfg).run()
