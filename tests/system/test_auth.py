"""-auth and -join-as on real nodes: joins with credentials, permissions on
the wire, and a leader that checks forwarded credentials again."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from rqlite_py import auth
from rqlite_py.auth import ScryptHash
from rqlite_py.http import cluster_api, db_api, status_api
from rqlite_py.http.routing import Route
from tests.system.node import FAST, LocalCluster, Node, wait_for

ADMIN = ("admin", "admin-pw")
ROUTES = db_api.ROUTES + status_api.ROUTES + cluster_api.ROUTES
USERS = [
    {"username": "admin", "password": "admin-pw", "perms": ["all"]},
    {"username": "joiner", "password": "join-pw", "perms": ["join", "remove"]},
    {"username": "bob", "password_hash": str(ScryptHash.make("bob-pw")), "perms": ["query"]},
    {"username": "*", "perms": ["ready"]},
]


def auth_file(path: Path, users: list[dict[str, object]]) -> str:
    path.write_text(json.dumps(users))
    return str(path)


def test_a_cluster_with_auth_joins_as_a_user_and_guards_every_node(tmp_path: Path) -> None:
    users = auth_file(tmp_path / "users.json", USERS)
    cluster = LocalCluster(tmp_path, 3, "-auth", users, "-join-as", "joiner")
    for n in cluster.nodes:
        n.session.auth = ADMIN
    cluster.start()
    try:
        leader = cluster.leader()
        follower = next(n for n in cluster.nodes if n is not leader)
        assert leader.get("/status").json()["http"]["auth"] == "enabled"

        anonymous = requests.post(
            follower.url + "/db/execute", json=["CREATE TABLE t(x)"], timeout=10
        )
        assert anonymous.status_code == 401
        # A write sent to a follower is forwarded with its credentials.
        follower.execute("CREATE TABLE t(x)", ["INSERT INTO t VALUES(?)", 1])

        bob = ("bob", "bob-pw")
        read = requests.get(
            follower.url + "/db/query",
            params={"q": "SELECT x FROM t", "level": "strong"},
            auth=bob,
            timeout=10,
        )
        assert read.status_code == 200 and read.json()["results"][0]["values"] == [[1]]
        refused = requests.post(
            follower.url + "/db/execute", json=["INSERT INTO t VALUES(2)"], auth=bob, timeout=10
        )
        assert refused.status_code == 401
        wrong = requests.get(
            leader.url + "/db/query", params={"q": "SELECT 1"}, auth=("bob", "nope"), timeout=10
        )
        assert wrong.status_code == 401
        assert requests.get(leader.url + "/readyz", timeout=10).status_code == 200  # "*": ready
        assert requests.get(leader.url + "/status", timeout=10).status_code == 401
        assert leader.query("SELECT count(*) FROM t", "?level=strong")["results"][0]["values"] == [
            [1]
        ]
    finally:
        for n in cluster.nodes:
            n.stop()


def test_a_node_without_join_credentials_is_refused(tmp_path: Path) -> None:
    users = auth_file(tmp_path / "users.json", USERS)
    first = Node(tmp_path / "n1", *FAST, "-auth", users, node_id="n1")
    first.session.auth = ADMIN
    first.start()
    anonymous = Node(
        tmp_path / "n2",
        *FAST,
        "-auth",
        users,
        "-join",
        f"127.0.0.1:{first.raft_port}",
        "-join-attempts",
        "1",
        node_id="n2",
    )
    try:
        anonymous.start(wait=False)
        assert anonymous.proc is not None
        assert anonymous.proc.wait(30) != 0
        assert "unauthorized" in anonymous.logs()
        assert len(first.get("/nodes").json()) == 1
    finally:
        anonymous.stop()
        first.stop()


def test_the_leader_checks_forwarded_credentials_again(tmp_path: Path) -> None:
    """A follower whose own file lets bob write forwards his write; the
    leader's file does not, and its 401 is what bob gets."""
    strict = auth_file(tmp_path / "strict.json", USERS)
    lax_users = [*USERS[:2], {"username": "bob", "password": "bob-pw", "perms": ["all"]}]
    lax = auth_file(tmp_path / "lax.json", lax_users)
    first = Node(tmp_path / "n1", *FAST, "-auth", strict, node_id="n1")
    second = Node(
        tmp_path / "n2",
        *FAST,
        "-auth",
        lax,
        "-join-as",
        "joiner",
        "-join",
        f"127.0.0.1:{first.raft_port}",
        node_id="n2",
    )
    for n in (first, second):
        n.session.auth = ADMIN
    cluster = LocalCluster.of([first, second])
    try:
        cluster.start()
        leader = cluster.leader()
        assert leader is first
        first.execute("CREATE TABLE t(x)")
        r = requests.post(
            second.url + "/db/execute",
            json=["INSERT INTO t VALUES(1)"],
            auth=("bob", "bob-pw"),
            timeout=10,
        )
        assert r.status_code == 401
        wait_for(
            "the table on n2",
            lambda: "error" not in second.query("SELECT count(*) FROM t")["results"][0],
        )
        assert first.query("SELECT count(*) FROM t", "?level=strong")["results"][0]["values"] == [
            [0]
        ]
    finally:
        for n in (first, second):
            n.stop()


def test_every_endpoint_checks_its_permissions_on_a_real_node(tmp_path: Path) -> None:
    """Each route with a user holding exactly its permissions (allowed), one
    lacking the first of them, a wrong password and no credentials (401)."""
    routes = [(r, m) for r in ROUTES for m in r.methods]
    users: list[dict[str, object]] = [{"username": "admin", "password": "a", "perms": ["all"]}]
    for i, (route, _) in enumerate(routes):
        lacking = sorted(auth.PERMS - {auth.ALL, route.perms[0]})
        users.append({"username": f"exact{i}", "password": "p", "perms": list(route.perms)})
        users.append({"username": f"lacks{i}", "password": "p", "perms": lacking})
    node = Node(tmp_path / "n1", "-auth", auth_file(tmp_path / "users.json", users))
    node.session.auth = ("admin", "a")
    node.start()
    try:
        node.execute("CREATE TABLE t(x)")
        for i, (route, method) in enumerate(routes):
            where = (route.path, method)
            assert ask(node, route, method, (f"exact{i}", "p")) != 401, where
            assert ask(node, route, method, (f"lacks{i}", "p")) == 401, where
            assert ask(node, route, method, (f"exact{i}", "wrong")) == 401, where
            assert ask(node, route, method, None) == 401, where
    finally:
        node.stop()


def ask(node: Node, route: Route, method: str, who: tuple[str, str] | None) -> int:
    body = b'["SELECT 1"]' if method == "POST" and route.path.startswith("/db/") else b""
    query = "?q=SELECT%201" if method == "GET" and "query" in route.perms else ""
    r = requests.request(
        method,
        node.url + route.path + query,
        data=body,
        auth=who,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    return r.status_code
