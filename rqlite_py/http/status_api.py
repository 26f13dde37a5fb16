"""Diagnostics: /status, /readyz, /nodes, /leader, /debug/vars and /metrics."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time

import apsw

from .. import __version__
from ..command import Statement
from ..metrics import CONTENT_TYPE
from ..raft.types import NodeId
from ..store import Store
from ..transport import TransportError
from . import params
from .messages import Reply, Request
from .responses import json_obj, text, text_error
from .routing import Context, Route


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the common ranges ("1.5s", "2m3s")."""
    if seconds < 1e-6:
        return f"{seconds * 1e9:g}ns" if seconds else "0s"
    if seconds < 1e-3:
        return f"{seconds * 1e6:g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:g}ms"
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    text = f"{s:.9f}".rstrip("0").rstrip(".") + "s"
    if h:
        return f"{int(h)}h{int(m)}m{text}"
    if m:
        return f"{int(m)}m{text}"
    return text


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def node_object(store: Store, node_id: str, timeout_s: float = 5.0) -> dict[str, object]:
    """rqlite's node object (http/nodes.go). Reachability is live: other
    nodes are asked for their metadata over the Raft port."""
    raft = store.raft
    is_self = node_id == store.cfg.node_id
    addr = raft.conf.addr(NodeId(node_id)) or (store.cfg.raft_addr if is_self else "")
    start = time.perf_counter()
    error = ""
    api_addr = ""
    if is_self:
        api_addr = store.cluster.api_addr
        reachable = store.driver.fatal is None
    else:
        try:
            api_addr = store.cluster.meta(addr, timeout_s, fresh=True).api_addr
            reachable = True
        except TransportError as e:
            reachable = False
            error = "timeout waiting for node to respond" if "timed out" in str(e) else str(e)
    elapsed = time.perf_counter() - start
    obj: dict[str, object] = {
        "id": node_id,
        "api_addr": api_addr,
        "addr": addr,
        "version": f"v{__version__}",
        "voter": node_id in raft.voters,
        "reachable": reachable,
        "leader": raft.leader == node_id,
        "time": elapsed,
        "time_s": go_duration(elapsed),
    }
    if error:
        obj["error"] = error
    return obj


def status(ctx: Context, req: Request) -> Reply:
    p = params.parse(req.args)
    doc = _sorted_maps(status_document(ctx.store, auth=ctx.auth is not None))
    if p.key:
        for part in p.key.split("."):
            if not isinstance(doc, dict) or part not in doc:
                return text_error(f"key {p.key} not found", 404)
            doc = doc[part]
    return json_obj(doc, p.pretty)


def _sorted_maps(obj: object) -> object:
    """rqlite builds /status from Go maps, which encode with sorted keys;
    node objects inside lists are structs and keep their field order."""
    if isinstance(obj, dict):
        return {k: _sorted_maps(obj[k]) for k in sorted(obj)}
    return obj


def status_document(store: Store, *, auth: bool = False) -> dict[str, object]:
    raft = store.raft
    now = time.time()
    leader_addr = store.cfg.raft_addr if raft.leader == store.cfg.node_id else raft.leader
    db_size = store.db_size()
    return {
        "build": {"version": f"v{__version__}", "compiler": sys.implementation.name},
        "cluster": {"addr": store.cfg.raft_addr, "api_addr": store.cluster.api_addr},
        "disco": {"mode": ""},
        "extensions": {"names": []},
        "http": {
            "auth": "enabled" if auth else "disabled",
            "bind_addr": store.cfg.http_addr,
            "queue": {"_default": store.queue_status()},
        },
        "last_backup_time": "",
        "node": {
            "start_time": _rfc3339(store.started_at),
            "current_time": _rfc3339(now),
            "uptime": go_duration(now - store.started_at),
        },
        "os": {
            "pid": os.getpid(),
            "hostname": platform.node(),
            "page_size": os.sysconf("SC_PAGE_SIZE"),
        },
        "runtime": {
            "GOOS": sys.platform,
            "GOARCH": platform.machine(),
            "num_cpu": os.cpu_count(),
            "version": f"python{platform.python_version()}",
        },
        "store": {
            "node_id": store.cfg.node_id,
            "addr": store.cfg.raft_addr,
            "dir": store.cfg.data_dir,
            "leader": {"node_id": raft.leader, "addr": leader_addr},
            "ready": store.is_ready(),
            "disk_error": str(store.driver.disk_error or ""),
            "fsm_index": raft.applied_index,
            "db_applied_index": raft.applied_index,
            "nodes": [node_object(store, n) for n in raft.voters + raft.learners],
            "raft": {
                "state": raft.role.value if raft.role.value != "PreCandidate" else "Candidate",
                "term": raft.term,
                "commit_index": raft.commit_index,
                "applied_index": raft.applied_index,
                "last_log_index": raft.last_log_index,
                "last_log_term": raft.last_log_term,
                "last_snapshot_index": store.logstore.snapshot_meta().index,
                "first_log_index": store.logstore.first_index(),
                "fsm_pending": max(0, raft.commit_index - raft.applied_index),
                "voter": store.cfg.node_id in raft.voters,
                "num_peers": max(0, len(raft.voters) - 1),
                "log_size": store.logstore.size_bytes(),
            },
            "snapshot_store": {
                "dir": store.snapshots.dir,
                "snapshots": [
                    {"index": f.meta.index, "term": f.meta.term, "size": f.size}
                    for f in store.snapshots.list()
                ],
            },
            "sqlite3": {
                "path": store.db_path,
                "db_size": db_size,
                "version": apsw.sqlite_lib_version(),
                "pragmas": {"ro": store.db.reader_pragmas(), "rw": store.db.writer_pragmas()},
            },
        },
    }


def readyz(ctx: Context, req: Request) -> Reply:
    p = params.parse(req.args)
    store = ctx.store
    lines = ["[+]node ok"]
    if p.noleader:
        return text("\n".join(lines), 200)
    if not store.raft.leader:
        lines.append("[+]leader does not exist")
        return text("\n".join(lines), 503)
    lines.append("[+]leader ok")
    if not store.is_ready():
        error = store.driver.disk_error
        lines.append(f"[+]store not ready: {error}" if error else "[+]store not ready")
        return text("\n".join(lines), 503)
    lines.append("[+]store ok")
    if p.sync:
        target = store.raft.commit_index
        if not store.driver.wait_applied(target, p.timeout_s or 30.0):
            lines.append(f"[+]sync timeout waiting for index {target}")
            return text("\n".join(lines), 503)
        lines.append("[+]sync ok")
    try:
        store.db.query([Statement("SELECT 1")], transaction=False, timeout_s=5.0)
    except Exception as e:  # the database itself is broken: not ready
        lines.append(f"[+]db {e}")
        return text("\n".join(lines), 503)
    lines.append("[+]db ok")
    return text("\n".join(lines), 200)


def nodes(ctx: Context, req: Request) -> Reply:
    p = params.parse(req.args)
    store = ctx.store
    ids = list(store.raft.voters) + (list(store.raft.learners) if p.nonvoters else [])
    objs = [node_object(store, n, p.timeout_s or 5.0) for n in sorted(ids)]
    if p.ver == "2":
        return json_obj({"nodes": objs}, p.pretty)
    return json_obj({o["id"]: {k: v for k, v in o.items() if k != "id"} for o in objs}, p.pretty)


def leader(ctx: Context, req: Request) -> Reply:
    p = params.parse(req.args)
    store = ctx.store
    if not store.raft.leader:
        return text_error("leader not found", 503)
    return json_obj(node_object(store, store.raft.leader, p.timeout_s or 5.0), p.pretty)


def debug_vars(ctx: Context, req: Request) -> Reply:
    p = params.parse(req.args)
    store = ctx.store
    raft = store.raft
    doc: dict[str, object] = {
        "cmdline": sys.argv,
        "http": ctx.stats.snapshot(),
        "transport": {
            "bad_frames": store.transport.bad_frames,
            "dropped_messages": store.transport.dropped_messages(),
        },
        "store": {
            "num_snapshots": store.driver.num_snapshots,
            "num_restores": store.driver.num_restores,
            "num_restores_start": int(store.restored_at_start),
            "num_restores_start_skipped": int(store.reused_at_start),
            "last_snapshot_write_pause_s": store.driver.last_snapshot_stall_s,
            "num_disk_stalls": store.driver.num_disk_stalls,
            "num_ignored_joins": store.stats["num_ignored_joins"],
            "num_removed_before_joins": store.stats["num_removed_before_joins"],
            "commit_index": raft.commit_index,
            "applied_index": raft.applied_index,
        },
    }
    if p.key:
        if p.key not in doc:
            return text_error(f"key {p.key} not found", 404)
        doc = {p.key: doc[p.key]}
    return json_obj(doc, p.pretty)


def metrics(ctx: Context, req: Request) -> Reply:
    """Prometheus's text format (an extension; docs/metrics.md)."""
    params.parse(req.args)
    return Reply(200, ctx.store.metrics.render(), content_type=CONTENT_TYPE)


ROUTES = [
    Route("/status", ("GET",), status, ("status",)),
    Route("/readyz", ("GET",), readyz, ("ready",)),
    Route("/nodes", ("GET",), nodes, ("status",)),
    Route("/leader", ("GET",), leader, ("leader-ops",)),
    Route("/debug/vars", ("GET",), debug_vars, ("status",)),
    Route("/metrics", ("GET",), metrics, ("status",)),
]
