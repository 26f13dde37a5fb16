"""Three (and four) real nodes on loopback: election, forwarding, read
levels, failover and restarts."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import requests

from tests.system.node import FAST, LocalCluster, Node, wait_for


def rows(node: Node, sql: str, level: str = "weak") -> list[list[object]]:
    body = node.query(sql, f"?level={level}")
    assert "error" not in body["results"][0], body
    return body["results"][0].get("values", [])


def add_non_voter(cluster: LocalCluster, tmp_path: Path) -> Node:
    """Start a read-only node "ro" that joins `cluster` as a non-voter."""
    first = cluster.nodes[0]
    ro = Node(
        tmp_path / "ro",
        *FAST,
        "-raft-non-voter",
        "-join",
        f"127.0.0.1:{first.raft_port}",
        node_id="ro",
    )
    cluster.nodes.append(ro)
    return ro.start()


def maybe_rows(node: Node, sql: str, level: str = "none") -> list[list[object]] | None:
    """For polling: None while the statement still fails (e.g. the table has
    not reached this node yet)."""
    body = node.query(sql, f"?level={level}")
    return None if "error" in body["results"][0] else body["results"][0].get("values", [])


def test_cluster_forms_and_every_node_serves(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    nodes = leader.get("/nodes?ver=2").json()["nodes"]
    assert [n["id"] for n in nodes] == ["n1", "n2", "n3"]
    assert all(n["reachable"] and n["voter"] for n in nodes)
    assert sum(n["leader"] for n in nodes) == 1
    cluster3.nodes[0].execute("CREATE TABLE foo (id INTEGER PRIMARY KEY, name TEXT)")
    for i, n in enumerate(cluster3.nodes):  # writes through every node
        r = n.execute(["INSERT INTO foo(name) VALUES(?)", f"via-{n.node_id}"], params="?raft_index")
        assert r["results"][0]["rows_affected"] == 1 and r["raft_index"] > 0, (i, r)
    for n in cluster3.nodes:
        for level in ("weak", "linearizable", "strong"):
            assert len(rows(n, "SELECT * FROM foo", level)) == 3
        wait_for(
            f"{n.node_id} to apply",
            lambda n=n: len(maybe_rows(n, "SELECT * FROM foo", "none") or []) == 3,
        )


def test_follower_redirects_when_asked(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    follower = cluster3.followers()[0]
    r = follower.post("/db/execute?redirect", json=["CREATE TABLE t (x)"], allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == f"{leader.url}/db/execute?redirect"


def test_kill_leader_under_write_load_loses_nothing(cluster3: LocalCluster) -> None:
    cluster3.nodes[0].execute("CREATE TABLE w (n INTEGER NOT NULL)")
    acked: list[int] = []
    stop = threading.Event()

    def writer(node: Node, first: int) -> None:
        s = requests.Session()
        i = first
        while not stop.is_set():
            try:
                r = s.post(
                    node.url + "/db/execute", json=[["INSERT INTO w(n) VALUES(?)", i]], timeout=5
                )
                if r.status_code == 200 and "error" not in r.text:
                    acked.append(i)
            except requests.RequestException:
                pass
            i += 3

    old = cluster3.leader()
    survivors = [n for n in cluster3.nodes if n is not old]
    threads = [threading.Thread(target=writer, args=(n, k)) for k, n in enumerate(survivors)]
    for t in threads:
        t.start()
    wait_for("writes before the crash", lambda: len(acked) >= 50)
    old.kill()
    before = len(acked)
    wait_for("writes acknowledged by a new leader", lambda: len(acked) >= before + 50, 30)
    new = cluster3.leader()
    assert new is not old
    stop.set()
    for t in threads:
        t.join(10)
    have = [v[0] for v in rows(new, "SELECT n FROM w", "strong")]
    assert len(have) == len(set(have)), "a write was applied twice"
    missing = set(acked) - set(have)
    assert not missing, f"acknowledged writes lost: {sorted(missing)[:10]}"
    old.start()  # the old leader comes back and catches up
    wait_for(
        "the old leader to catch up",
        lambda: sorted(v[0] for v in maybe_rows(old, "SELECT n FROM w") or []) == sorted(have),
        30,
    )


def test_whole_cluster_restart_keeps_everything(cluster3: LocalCluster) -> None:
    cluster3.nodes[1].execute(
        "CREATE TABLE t (x)", *[["INSERT INTO t VALUES(?)", i] for i in range(20)]
    )
    for n in cluster3.nodes:
        n.stop()
    for n in cluster3.nodes:
        n.start(wait=False)
    for n in cluster3.nodes:
        n.wait_ready()
    cluster3.leader()
    for n in cluster3.nodes:
        wait_for(
            f"{n.node_id} data",
            lambda n=n: len(maybe_rows(n, "SELECT x FROM t", "none") or []) == 20,
        )


def test_isolated_leader_never_answers_linearizable_reads(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    leader.execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 1])
    others = [n for n in cluster3.nodes if n is not leader]
    for n in others:
        assert n.proc is not None
        n.proc.send_signal(signal.SIGSTOP)
    try:
        r = leader.get(
            "/db/query",
            params={"q": "SELECT x FROM t", "level": "linearizable", "linearizable_timeout": "1s"},
            timeout=20,
        )
        assert r.status_code != 200 or "error" in r.json(), r.text
    finally:
        for n in others:
            n.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    cluster3.leader()


def test_fourth_node_joins_and_catches_up(cluster3: LocalCluster, tmp_path: Path) -> None:
    cluster3.nodes[0].execute(
        "CREATE TABLE t (x)", *[["INSERT INTO t VALUES(?)", i] for i in range(50)]
    )
    n4 = Node(
        tmp_path / "n4", *FAST, "-join", f"127.0.0.1:{cluster3.nodes[1].raft_port}", node_id="n4"
    )
    cluster3.nodes.append(n4)
    n4.start()
    cluster3.wait_members(4)
    wait_for(
        "n4 to catch up", lambda: len(maybe_rows(n4, "SELECT x FROM t", "none") or []) == 50, 30
    )
    assert n4.get("/nodes").json()["n4"]["voter"] is True


def test_join_with_an_http_address_is_a_clear_error(cluster3: LocalCluster, tmp_path: Path) -> None:
    bad = Node(
        tmp_path / "bad",
        *FAST,
        "-join",
        f"127.0.0.1:{cluster3.nodes[0].http_port}",
        "-join-attempts",
        "1",
        node_id="bad",
    )
    bad.start(wait=False)
    assert bad.proc is not None
    assert bad.proc.wait(30) == 1
    assert "Raft address" in bad.logs()


def test_garbage_on_the_raft_port_is_survived(cluster3: LocalCluster) -> None:
    import socket

    for payload in (b"\x00" * 64, b"\xff\xff\xff\xff\x01garbage", b"GET / HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", cluster3.nodes[0].raft_port), timeout=5) as s:
            s.sendall(payload)
    cluster3.nodes[0].execute("CREATE TABLE ok (x)")
    assert len(cluster3.leader().get("/nodes").json()) == 3


def test_leadership_transfer_via_post_leader(cluster3: LocalCluster) -> None:
    old = cluster3.leader()
    target = next(n for n in cluster3.nodes if n is not old)
    follower = next(n for n in cluster3.nodes if n is not old and n is not target)
    # Sent to a follower: forwarded to the leader, which hands over to target.
    r = follower.post("/leader?wait", json={"id": target.node_id})
    assert r.status_code == 200, r.text
    assert cluster3.leader() is target
    assert target.get("/leader").json()["id"] == target.node_id


def test_none_reads_with_freshness_on_a_follower(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    leader.execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 1])
    follower = cluster3.followers()[0]
    wait_for(
        "the follower to apply", lambda: maybe_rows(follower, "SELECT x FROM t", "none") == [[1]]
    )
    fresh = follower.query("SELECT x FROM t", "?level=none&freshness=5s")
    assert fresh["results"][0]["values"] == [[1]]
    others = [n for n in cluster3.nodes if n is not follower]
    for n in others:  # the follower loses contact with everyone
        n.proc.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:

        def stale() -> bool:
            body = follower.query("SELECT x FROM t", "?level=none&freshness=300ms")
            return body == {"results": [], "error": "stale read"}

        wait_for("the follower to report a stale read", stale, 10)
        # Without a freshness bound, `none` still reads locally with no leader.
        assert rows(follower, "SELECT x FROM t", "none") == [[1]]
    finally:
        for n in others:
            n.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    cluster3.leader()


def test_joins_are_idempotent_and_replace_changed_members(cluster3: LocalCluster) -> None:
    from rqlite_py.transport import call

    leader = cluster3.leader()
    n3 = cluster3.nodes[2]
    same = {"op": "join", "id": "n3", "addr": f"127.0.0.1:{n3.raft_port}", "voter": True}
    assert call(f"127.0.0.1:{leader.raft_port}", same, 5) == {"ok": True}
    assert leader.get("/nodes").json().keys() == {"n1", "n2", "n3"}
    # Asked of a follower: the answer names the leader instead.
    follower = cluster3.followers()[0]
    answer = call(f"127.0.0.1:{follower.raft_port}", same, 5)
    assert answer["leader"] == f"127.0.0.1:{leader.raft_port}"


def test_single_node_with_data_refuses_to_join_another(
    cluster3: LocalCluster, tmp_path: Path
) -> None:
    lone = Node(tmp_path / "lone", *FAST, node_id="lone").start()
    lone.execute("CREATE TABLE mine (x)")
    lone.stop()
    lone.extra += ["-join", f"127.0.0.1:{cluster3.nodes[0].raft_port}"]
    lone.start(wait=False)
    assert lone.proc is not None and lone.proc.wait(30) == 1
    assert "cannot join another" in lone.logs()


def test_non_voter_receives_everything_and_does_not_vote(
    cluster3: LocalCluster, tmp_path: Path
) -> None:
    ro = add_non_voter(cluster3, tmp_path)
    cluster3.nodes[0].execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 7])
    wait_for("the non-voter to apply", lambda: maybe_rows(ro, "SELECT x FROM t", "none") == [[7]])
    assert rows(ro, "SELECT x FROM t", "auto") == [[7]]  # auto = none on a non-voter
    nodes = cluster3.nodes[0].get("/nodes?nonvoters").json()
    assert nodes["ro"]["voter"] is False and "ro" not in cluster3.nodes[0].get("/nodes").json()
    ro.execute(["INSERT INTO t VALUES(?)", 8])  # writes are forwarded
    assert len(rows(cluster3.leader(), "SELECT x FROM t", "strong")) == 2


def test_bootstrap_expect_forms_one_cluster(tmp_path: Path) -> None:
    nodes = [Node(tmp_path / f"b{i}", *FAST, node_id=f"b{i}") for i in range(1, 4)]
    targets = ",".join(f"127.0.0.1:{n.raft_port}" for n in nodes)
    for n in nodes:
        n.extra += ["-bootstrap-expect", "3", "-join", targets, "-join-interval", "200ms"]
    c = LocalCluster.of(nodes)
    try:
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready(30)
        c.wait_members(3)
        leader = c.leader()
        leader.execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 1])
        for n in nodes:
            wait_for(
                f"{n.node_id} to apply",
                lambda n=n: maybe_rows(n, "SELECT x FROM t", "none") == [[1]],
            )
        # Restarted with the same flags, they come back as the same cluster.
        c.stop()
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready(30)
        assert rows(c.leader(), "SELECT x FROM t", "strong") == [[1]]
    finally:
        c.stop()


def test_a_member_that_never_answers_does_not_stop_the_cluster(cluster3: LocalCluster) -> None:
    """A peer that accepts connections and never reads: its queue is bounded
    and the others keep a quorum (3 of 4)."""
    import socket

    from rqlite_py.transport import call

    hole = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads
    try:
        leader = cluster3.leader()
        ghost = {
            "op": "join",
            "id": "ghost",
            "addr": f"127.0.0.1:{hole.getsockname()[1]}",
            "voter": True,
        }
        assert call(f"127.0.0.1:{leader.raft_port}", ghost, 10) == {"ok": True}
        leader.execute("CREATE TABLE t (x)")
        for i in range(200):
            leader.execute(["INSERT INTO t VALUES(?)", "x" * 1000 + str(i)])
        assert rows(leader, "SELECT count(*) FROM t", "linearizable") == [[200]]
        nodes = leader.get("/nodes?timeout=1s").json()
        assert nodes["ghost"]["reachable"] is False and nodes["ghost"]["error"]
    finally:
        hole.close()


def test_rolling_restart_under_write_load_loses_nothing(cluster3: LocalCluster) -> None:
    cluster3.nodes[0].execute("CREATE TABLE w (n INTEGER NOT NULL)")
    acked: list[int] = []
    stop = threading.Event()

    def writer(k: int) -> None:
        s = requests.Session()
        i = k
        while not stop.is_set():
            for n in cluster3.alive():
                try:
                    r = s.post(
                        n.url + "/db/execute?retries=2",
                        json=[["INSERT INTO w(n) VALUES(?)", i]],
                        timeout=5,
                    )
                except requests.ConnectionError as e:
                    if "refused" in str(e):
                        continue  # never reached that node: safe to try the next
                    break  # it may have been applied: never send it twice
                except requests.RequestException:
                    break
                if r.status_code == 200 and '"rows_affected":1' in r.text:
                    acked.append(i)
                break
            i += 2

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        for n in cluster3.nodes:  # one at a time, SIGTERM then start again
            before = len(acked)
            n.stop()
            n.start()
            cluster3.wait_members(3)
            wait_for("writes to continue", lambda before=before: len(acked) >= before + 20, 30)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    have = [v[0] for v in rows(cluster3.leader(), "SELECT n FROM w", "strong")]
    assert len(have) == len(set(have))
    assert not set(acked) - set(have)


def test_same_node_id_from_a_new_address_replaces_the_member(
    cluster3: LocalCluster, tmp_path: Path
) -> None:
    old = cluster3.nodes[2]
    if cluster3.leader() is old:
        cluster3.leader().post("/leader?wait", json={"id": "n1"})
    new = Node(
        tmp_path / "n3-new",
        *FAST,
        "-join",
        f"127.0.0.1:{cluster3.nodes[0].raft_port}",
        node_id="n3",
    )
    new.start()
    old.stop()  # the replaced process is no longer a member
    cluster3.nodes[2] = new
    cluster3.wait_members(3)
    nodes = cluster3.leader().get("/nodes").json()
    assert nodes["n3"]["addr"] == f"127.0.0.1:{new.raft_port}" and nodes["n3"]["reachable"]
    cluster3.nodes[0].execute("CREATE TABLE t (x)", ["INSERT INTO t VALUES(?)", 1])
    wait_for("the new n3 to apply", lambda: maybe_rows(new, "SELECT x FROM t", "none") == [[1]])


def test_sigterm_on_the_leader_hands_leadership_over(cluster3: LocalCluster) -> None:
    old = cluster3.leader()
    assert old.terminate() == 0
    assert "handed leadership over" in old.logs()
    new = cluster3.leader(timeout_s=5)
    assert new is not old
    new.execute("CREATE TABLE after (x)")


def test_no_quorum_means_leader_not_found(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    survivor = next(n for n in cluster3.nodes if n is not leader)
    for n in cluster3.nodes:
        if n is not survivor:
            n.kill()

    def no_leader() -> bool:
        r = survivor.post("/db/execute", json=["CREATE TABLE t (x)"], timeout=10)
        return (r.status_code, r.text) == (503, "leader not found\n")

    wait_for("writes to be refused with 503", no_leader, 15)
    assert survivor.get("/leader").status_code == 503
    r = survivor.get("/readyz")
    assert r.status_code == 503 and "leader does not exist" in r.text
    assert survivor.get("/readyz?noleader").status_code == 200


def test_remove_nodes_including_the_leader(cluster3: LocalCluster) -> None:
    leader = cluster3.leader()
    f1, f2 = cluster3.followers()
    # Asked of a follower, forwarded to the leader.
    r = f1.session.delete(f1.url + "/remove", json={"id": f2.node_id}, timeout=15)
    assert r.status_code == 200, r.text
    assert set(leader.get("/nodes").json()) == {leader.node_id, f1.node_id}
    assert f1.session.delete(f1.url + "/remove", data=b'{"id": 1}', timeout=5).status_code == 400
    f2.stop()
    # The leader removes itself: it hands over, and the survivor leads alone.
    r = leader.session.delete(leader.url + "/remove", json={"id": leader.node_id}, timeout=15)
    assert r.status_code == 200, r.text
    wait_for(
        "the survivor to lead",
        lambda: f1.get("/status?key=store.raft.state").json() == "Leader",
        15,
    )
    f1.execute("CREATE TABLE alone (x)")
    assert set(f1.get("/nodes").json()) == {f1.node_id}


def test_cluster_remove_shutdown_leaves_on_sigterm(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 3, "-raft-cluster-remove-shutdown")
    try:
        c.start()
        leaving = c.followers()[0]
        assert leaving.terminate() == 0
        assert "removed this node from the cluster" in leaving.logs()
        assert set(c.leader().get("/nodes").json()) == {n.node_id for n in c.alive()}
        c.leader().execute("CREATE TABLE t (x)")  # 2 of 2 now
    finally:
        c.stop()


def test_dead_nodes_are_reaped(tmp_path: Path) -> None:
    c = LocalCluster(
        tmp_path, 3, "-raft-reap-node-timeout", "2s", "-raft-reap-read-only-node-timeout", "1s"
    )
    try:
        c.start()
        ro = add_non_voter(c, tmp_path)
        leader = c.leader()
        wait_for("the non-voter to be known", lambda: "ro" in leader.get("/nodes?nonvoters").json())
        ro.kill()
        wait_for(
            "the non-voter to be reaped",
            lambda: "ro" not in leader.get("/nodes?nonvoters").json(),
            15,
        )
        victim = c.followers()[0]
        victim.kill()
        wait_for(
            "the dead voter to be reaped",
            lambda: victim.node_id not in leader.get("/nodes").json(),
            15,
        )
        leader.execute("CREATE TABLE t (x)")  # 2 of 2
    finally:
        c.stop()


def test_quorum_loss_recovered_with_peers_json(cluster3: LocalCluster) -> None:
    import json

    leader = cluster3.leader()
    leader.execute("CREATE TABLE t (x)", *[["INSERT INTO t VALUES(?)", i] for i in range(10)])
    survivor = cluster3.followers()[0]
    wait_for(
        "the survivor to apply",
        lambda: len(maybe_rows(survivor, "SELECT x FROM t", "none") or []) == 10,
    )
    for n in cluster3.nodes:
        n.kill()  # two of three are gone for good: no quorum
    peers = [
        {"id": survivor.node_id, "address": f"127.0.0.1:{survivor.raft_port}", "non_voter": False}
    ]
    (survivor.data_dir / "raft").mkdir(exist_ok=True)
    (survivor.data_dir / "raft" / "peers.json").write_text(json.dumps(peers))
    survivor.start()
    wait_for(
        "the survivor to lead alone",
        lambda: survivor.get("/status?key=store.raft.state").json() == "Leader",
        15,
    )
    assert len(rows(survivor, "SELECT x FROM t", "strong")) == 10
    survivor.execute(["INSERT INTO t VALUES(?)", 10])
    assert (survivor.data_dir / "raft" / "peers.info").exists()
    assert not (survivor.data_dir / "raft" / "peers.json").exists()
    assert list(survivor.get("/nodes").json()) == [survivor.node_id]


def test_non_voter_follows_a_new_leader(cluster3: LocalCluster, tmp_path: Path) -> None:
    ro = add_non_voter(cluster3, tmp_path)
    old = cluster3.leader()
    old.execute("CREATE TABLE t (x)")
    old.kill()
    new = cluster3.leader()
    assert new is not old and new is not ro
    new.execute(["INSERT INTO t VALUES(?)", 1])
    wait_for(
        "the non-voter to follow the new leader",
        lambda: maybe_rows(ro, "SELECT x FROM t") == [[1]],
        20,
    )
    assert ro.get("/status?key=store.leader.node_id").json() == new.node_id
