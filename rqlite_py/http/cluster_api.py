"""Cluster and storage operations: leadership transfer (POST /leader),
user-requested snapshots (POST /snapshot) and reaping (POST /reap)."""

from __future__ import annotations

import time

from ..raft.types import NONE, NodeId
from . import params
from .body import BodyError, load_json
from .messages import Reply, Request
from .responses import empty, json_obj, text
from .routing import Context, Route


def transfer_leadership(ctx: Context, req: Request) -> Reply:
    """Hand leadership to `{"id": ...}` or to the most up-to-date voter;
    with `?wait`, answer once this node has seen the new leader."""
    p = params.parse(req.args)
    store = ctx.store
    target = NONE
    data = req.body
    if data.strip():
        obj = load_json(data)
        if not isinstance(obj, dict) or not isinstance(obj.get("id", ""), str):
            raise BodyError("invalid request")
        target = NodeId(obj.get("id", ""))
    chosen = store.transfer_leadership(target)
    if p.wait:
        deadline = time.monotonic() + (p.timeout_s or 30.0)
        while store.raft.leader != chosen and time.monotonic() < deadline:
            time.sleep(0.01)
        if store.raft.leader != chosen:
            return text("leadership transfer timed out\n", 503)
    return empty()


def snapshot(ctx: Context, req: Request) -> Reply:
    """Snapshot and compact now; 204 when nothing was applied since the last."""
    p = params.parse(req.args)
    index = ctx.store.snapshot(p.trailing_logs)
    return empty(200 if index else 204)


def reap(ctx: Context, req: Request) -> Reply:
    return json_obj({"snapshots_reaped": ctx.store.reap_snapshots(), "wals_checkpointed": 0})


def remove(ctx: Context, req: Request) -> Reply:
    """Remove a node from the cluster: exactly `{"id": "<node id>"}`."""
    obj = load_json(req.body)
    if not isinstance(obj, dict) or set(obj) != {"id"} or not isinstance(obj["id"], str):
        raise BodyError('body must be exactly {"id": "<node id>"}')
    ctx.store.remove(NodeId(obj["id"]))
    return empty()


ROUTES = [
    Route("/leader", ("POST",), transfer_leadership, ("leader-ops",)),
    Route("/snapshot", ("POST",), snapshot, ("snapshot",)),
    Route("/reap", ("POST",), reap, ("snapshot",)),
    Route("/remove", ("DELETE",), remove, ("remove",)),
]
