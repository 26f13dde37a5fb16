"""A follower's answer to a leader-bound request: forward it to the leader
(rqlite's default) or, with `?redirect`, send the client there (301)."""

from __future__ import annotations

import logging

import requests
from flask import Response, current_app, request

from ..cluster import FORWARDED_HEADER
from ..store import Store
from . import params
from .responses import json_error, text_error

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_PASSED_HEADERS = ("Content-Type", "Authorization")


def to_leader() -> Response:
    store: Store = current_app.extensions["store"]
    if request.headers.get(FORWARDED_HEADER):
        # The node that forwarded this believed we lead; we do not. Never
        # forward twice: the client retries once the cluster settles.
        return text_error("leader not found", 503)
    api = store.leader_api_addr()
    if not api:
        return text_error("leader not found", 503)
    query = request.query_string.decode()
    path = request.path + (f"?{query}" if query else "")
    if "redirect" in request.args:
        return Response(b"", status=301, headers={"Location": api + path})
    # Already validated by the handler that raised NotLeaderHere.
    p = params.parse(request.args.to_dict(flat=True))
    timeout_s = p.timeout_s or DEFAULT_TIMEOUT_S
    headers = {h: request.headers[h] for h in _PASSED_HEADERS if h in request.headers}
    try:
        r = store.cluster.forward(
            api, request.method, path, request.get_data(), headers, timeout_s, p.retries
        )
    except requests.RequestException as e:
        log.warning("forwarding %s to the leader at %s failed: %s", request.path, api, e)
        return json_error(f"forwarding to leader failed: {e}")
    out = Response(r.content, status=r.status_code)
    for h in ("Content-Type", "X-RQLITE-SERVED-BY", "Location"):
        if h in r.headers:
            out.headers[h] = r.headers[h]
    return out
