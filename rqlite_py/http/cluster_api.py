"""Cluster and storage operations: leadership transfer (POST /leader),
user-requested snapshots (POST /snapshot) and reaping (POST /reap)."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, request

from ..raft.types import NONE, NodeId
from ..store import Store
from . import params
from .body import BodyError
from .encoding import go_json
from .responses import JSON

bp = Blueprint("cluster", __name__)


@bp.route("/leader", methods=["POST"])
def transfer_leadership() -> Response:
    """Hand leadership to `{"id": ...}` or to the most up-to-date voter;
    with `?wait`, answer once this node has seen the new leader."""
    p = params.parse(request.args.to_dict(flat=True))
    store: Store = current_app.extensions["store"]
    target = NONE
    data = request.get_data()
    if data.strip():
        try:
            obj = json.loads(data)
        except ValueError as e:
            raise BodyError("invalid JSON body") from e
        if not isinstance(obj, dict) or not isinstance(obj.get("id", ""), str):
            raise BodyError("invalid request")
        target = NodeId(obj.get("id", ""))
    chosen = store.transfer_leadership(target)
    if p.wait:
        deadline = time.monotonic() + (p.timeout_s or 30.0)
        while store.raft.leader != chosen and time.monotonic() < deadline:
            time.sleep(0.01)
        if store.raft.leader != chosen:
            return Response(b"leadership transfer timed out\n", status=503)
    return Response(b"", status=200)


@bp.route("/snapshot", methods=["POST"])
def snapshot() -> Response:
    """Snapshot and compact now; 204 when nothing was applied since the last."""
    p = params.parse(request.args.to_dict(flat=True))
    store: Store = current_app.extensions["store"]
    index = store.snapshot(p.trailing_logs)
    return Response(b"", status=200 if index else 204)


@bp.route("/reap", methods=["POST"])
def reap() -> Response:
    store: Store = current_app.extensions["store"]
    body = {"snapshots_reaped": store.reap_snapshots(), "wals_checkpointed": 0}
    return Response(go_json(body), status=200, content_type=JSON)


@bp.route("/remove", methods=["DELETE"])
def remove() -> Response:
    """Remove a node from the cluster: exactly `{"id": "<node id>"}`."""
    store: Store = current_app.extensions["store"]
    try:
        obj = json.loads(request.get_data())
    except ValueError as e:
        raise BodyError("invalid JSON body") from e
    if not isinstance(obj, dict) or set(obj) != {"id"} or not isinstance(obj["id"], str):
        raise BodyError('body must be exactly {"id": "<node id>"}')
    store.remove(NodeId(obj["id"]))
    return Response(b"", status=200)
