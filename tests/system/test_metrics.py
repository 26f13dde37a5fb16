"""/metrics on real nodes: every request counted where the server answers
it, and Raft's view of a cluster as a scraper sees it."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.system.conftest import NodeFactory
from tests.system.node import LocalCluster, Node, wait_for


def scrape(node: Node) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = node.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_endpoint_and_status(node_factory: NodeFactory) -> None:
    node = node_factory()
    node.execute("CREATE TABLE t (x)")
    for i in range(4):
        node.execute(["INSERT INTO t VALUES(?)", i])
    assert node.post("/db/execute", data=b"{not json").status_code == 400
    assert node.get("/no/such/path").status_code == 404
    assert node.query("SELECT COUNT(*) FROM t")["results"][0]["values"] == [[4]]
    s = scrape(node)
    assert value(s, "rqlite_http_requests_total", endpoint="execute", code="200") == 5
    assert value(s, "rqlite_http_requests_total", endpoint="execute", code="400") == 1
    assert value(s, "rqlite_http_requests_total", endpoint="none", code="404") == 1
    assert value(s, "rqlite_http_requests_total", endpoint="query", code="200") == 1
    assert value(s, "rqlite_http_request_seconds_count", endpoint="execute") == 6
    assert value(s, "rqlite_raft_proposals_total") == 5
    assert value(s, "rqlite_raft_state", state="Leader") == 1
    # Process figures come with it (Linux).
    assert value(s, "process_resident_memory_bytes") > 0
    # The node's log lines carry its id.
    assert f"[{node.node_id}]" in node.logs()


def test_metrics_need_the_status_permission(node_factory: NodeFactory, tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text(
        '[{"username": "ops", "password": "pw1", "perms": ["status"]},'
        ' {"username": "app", "password": "pw2", "perms": ["execute", "query"]},'
        ' {"username": "*", "perms": ["ready"]}]'
    )
    node = node_factory("-auth", str(users))
    assert node.get("/metrics", auth=("app", "pw2")).status_code == 401
    assert node.get("/metrics").status_code == 401
    r = node.get("/metrics", auth=("ops", "pw1"))
    assert r.status_code == 200
    assert "rqlite_raft_term" in r.text


def test_a_cluster_reports_roles_indexes_and_leader_changes(cluster3: LocalCluster) -> None:
    old = cluster3.leader()
    old.execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(1)"])
    target = next(n for n in cluster3.nodes if n is not old)

    def applied_everywhere() -> bool:
        indexes = {value(scrape(n), "rqlite_raft_applied_index") for n in cluster3.nodes}
        return len(indexes) == 1

    wait_for("every node to apply the same index", applied_everywhere)
    before = {n.node_id: scrape(n) for n in cluster3.nodes}
    for n in cluster3.nodes:
        s = before[n.node_id]
        assert value(s, "rqlite_raft_state", state="Leader") == (n is old)
        assert value(s, "rqlite_raft_voters") == 3
        assert value(s, "rqlite_raft_has_leader") == 1
        assert value(s, "rqlite_raft_commit_index") >= value(s, "rqlite_raft_applied_index")
    r = old.post("/leader?wait", json={"id": target.node_id})
    assert r.status_code == 200, r.text
    assert cluster3.leader() is target

    def every_node_saw_the_change() -> bool:
        for n in cluster3.nodes:
            was = value(before[n.node_id], "rqlite_raft_leader_changes_total")
            if value(scrape(n), "rqlite_raft_leader_changes_total") <= was:
                return False
        return True

    wait_for("every node to count the new leader", every_node_saw_the_change)
    after = scrape(target)
    assert value(after, "rqlite_raft_state", state="Leader") == 1
    assert value(after, "rqlite_raft_term") > value(before[target.node_id], "rqlite_raft_term")
