"""/metrics: the Prometheus series a node keeps, read back through the
library's own parser (so the text is what a scraper accepts), against a
real single-node store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rqlite_py import command
from rqlite_py.command import Command, Kind, Statement
from rqlite_py.db import Database
from rqlite_py.driver import Driver, Timing
from rqlite_py.fsm import StateMachine
from rqlite_py.http.app import create_app
from rqlite_py.logstore import LogStore
from rqlite_py.metrics import NodeMetrics, Reading
from rqlite_py.raft.core import RaftError
from rqlite_py.raft.storage import bootstrap_entry
from rqlite_py.raft.types import ConfState, HardState, Index, NodeId, Term
from rqlite_py.store import Store
from tests.app_client import AppClient


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_readings_are_read_at_each_scrape_as_gauges_or_counters() -> None:
    m = NodeMetrics()
    depth = [3]
    m.read_at_scrape(
        lambda: [
            Reading("q_depth", "queue depth", depth[0]),
            Reading("role", "role", 1, {"state": "Leader"}),
            Reading("role", "role", 0, {"state": "Follower"}),
            Reading("restores", "restores", 2, counter=True),
        ]
    )
    first = parse(m.render().decode())
    depth[0] = 7
    second = parse(m.render().decode())
    assert sample(first, "q_depth") == 3
    assert sample(second, "q_depth") == 7
    assert sample(second, "role", state="Leader") == 1
    assert sample(second, "role", state="Follower") == 0
    assert sample(second, "restores_total") == 2
    types = {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}
    assert types["q_depth"] == "gauge"
    assert types["restores"] == "counter"


def test_http_requests_are_counted_by_endpoint_and_code_never_by_path() -> None:
    m = NodeMetrics()
    m.observe_http("execute", 200, 0.002)
    m.observe_http("execute", 200, 0.004)
    m.observe_http("execute", 400, 0.001)
    m.observe_http("", 404, 0.0001)  # an unrouted path: its label is not the client's
    s = parse(m.render().decode())
    assert sample(s, "rqlite_http_requests_total", endpoint="execute", code="200") == 2
    assert sample(s, "rqlite_http_requests_total", endpoint="execute", code="400") == 1
    assert sample(s, "rqlite_http_requests_total", endpoint="none", code="404") == 1
    assert sample(s, "rqlite_http_request_seconds_count", endpoint="execute") == 3
    assert abs(sample(s, "rqlite_http_request_seconds_sum", endpoint="execute") - 0.007) < 1e-9


def test_histogram_buckets_are_cumulative_and_a_bound_holds_its_own_value() -> None:
    m = NodeMetrics()
    for seconds in (0.0001, 0.0002, 0.001, 7.0):
        m.apply_seconds.observe(seconds)
    s = parse(m.render().decode())

    def le(bound: str) -> float:
        return sample(s, "rqlite_fsm_apply_seconds_bucket", le=bound)

    assert le("0.0001") == 1  # le is "less than or equal"
    assert le("0.00025") == 2
    assert le("0.001") == 3
    assert le("5.0") == 3
    assert le("+Inf") == 4
    assert sample(s, "rqlite_fsm_apply_seconds_count") == 4
    assert abs(sample(s, "rqlite_fsm_apply_seconds_sum") - 7.0013) < 1e-9


def test_a_store_counts_proposals_fsyncs_applies_and_snapshots(store: Store) -> None:
    client = AppClient(create_app(store))
    before = parse(client.get("/metrics").text)
    writes = [["CREATE TABLE t (x)"]] + [[f"INSERT INTO t VALUES({i})"] for i in range(5)]
    for w in writes:
        r = client.post("/db/execute", data=json.dumps(w))
        assert r.status_code == 200, r.data
    assert client.post("/snapshot").status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.content_type.startswith("text/plain; version=0.0.4")
    after = parse(r.text)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("rqlite_raft_proposals_total") == len(writes)
    assert grew("rqlite_fsm_apply_seconds_count") == len(writes)
    # Each write is its own Ready on a single node: one save, one fsync.
    assert grew("rqlite_raft_log_fsync_seconds_count") >= len(writes)
    assert grew("rqlite_snapshot_seconds_count") == 1
    assert grew("rqlite_snapshot_write_pause_seconds_count") == 1
    raft = store.raft
    assert sample(after, "rqlite_raft_term") == raft.term
    assert sample(after, "rqlite_raft_commit_index") == raft.commit_index
    assert sample(after, "rqlite_raft_applied_index") == raft.applied_index
    assert sample(after, "rqlite_raft_last_snapshot_index") == raft.applied_index
    assert sample(after, "rqlite_raft_state", state="Leader") == 1
    assert sample(after, "rqlite_raft_state", state="Follower") == 0
    assert sample(after, "rqlite_raft_leader_changes_total") == 1
    assert sample(after, "rqlite_raft_voters") == 1
    assert sample(after, "rqlite_ready") == 1
    assert sample(after, "rqlite_db_size_bytes") == store.db_size() > 0


def test_a_proposal_refused_by_a_follower_is_counted_apart(tmp_path: Path) -> None:
    storage = LogStore(str(tmp_path / "raft.db"))
    conf = ConfState.of(["n1", "n2", "n3"], addrs={"n1": "a:1", "n2": "a:2", "n3": "a:3"})
    storage.bootstrap(bootstrap_entry(conf), HardState(Term(1), commit=Index(1)))
    machine = StateMachine(Database(str(tmp_path / "db.sqlite")))
    d = Driver(
        NodeId("n1"),
        storage,
        machine,
        Timing(tick_s=0.01, election_ticks=1000, heartbeat_ticks=1),
        send=lambda m: None,
    )
    d.start()
    try:
        data = command.encode(Command(Kind.EXECUTE, (Statement("INSERT INTO t VALUES(1)"),)))
        fut = d.propose(data)
        with pytest.raises(RaftError):
            fut.result(5)
        s = parse(d.metrics.render().decode())
        assert sample(s, "rqlite_raft_proposals_refused_total") == 1
        assert sample(s, "rqlite_raft_proposals_total") == 0
    finally:
        d.stop()
        machine.db.close()
        storage.close()
