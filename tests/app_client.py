"""Calls the HTTP application directly, without a server: requests in,
replies out, as the server would pass them (tests of the handlers).

With `via_loop`, a request takes the path the server gives it on its event
loop first (App.begin, then App.finish, App.finish_slow or App.error_reply once
the request's future is done), as http/server.py does; the others go to App.handle."""

from __future__ import annotations

import json
from concurrent.futures import wait
from dataclasses import dataclass, field
from typing import Any

from requests.structures import CaseInsensitiveDict

from rqlite_py.http.app import App
from rqlite_py.http.messages import Request


@dataclass
class TestReply:
    __test__ = False  # not a pytest class

    status_code: int
    data: bytes
    content_type: str
    headers: CaseInsensitiveDict[str] = field(default_factory=CaseInsensitiveDict)

    def get_json(self) -> Any:
        return json.loads(self.data)

    @property
    def text(self) -> str:
        return self.data.decode()


class AppClient:
    def __init__(self, app: App, *, via_loop: bool = False) -> None:
        self.app = app
        self.via_loop = via_loop

    def open(
        self,
        method: str,
        target: str,
        data: bytes | str = b"",
        content_type: str = "",
        headers: dict[str, str] | None = None,
    ) -> TestReply:
        path, _, query = target.partition("?")
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if content_type:
            hdrs["content-type"] = content_type
        body = data.encode() if isinstance(data, str) else data
        req = Request(method, path, query, hdrs, body)
        begun = self.app.begin(req) if self.via_loop else None
        if begun is None:
            reply = self.app.handle(req)
        else:
            if begun.future is not None:
                wait([begun.future], timeout=begun.timeout_s)
            try:
                got = self.app.finish(begun)
                reply = self.app.finish_slow(begun, req) if got is None else got
            except Exception as e:
                reply = self.app.error_reply(e, req)
        out = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
        got = CaseInsensitiveDict(dict(reply.headers))
        if reply.content_type:
            got["Content-Type"] = reply.content_type
        return TestReply(reply.status, out, reply.content_type, got)

    def get(self, target: str, **kw: Any) -> TestReply:
        return self.open("GET", target, **kw)

    def post(self, target: str, data: bytes | str = b"", **kw: Any) -> TestReply:
        return self.open("POST", target, data, **kw)

    def options(self, target: str, **kw: Any) -> TestReply:
        return self.open("OPTIONS", target, **kw)

    def delete(self, target: str, data: bytes | str = b"", **kw: Any) -> TestReply:
        return self.open("DELETE", target, data, **kw)
