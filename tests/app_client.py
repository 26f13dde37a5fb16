"""Calls the HTTP application directly, without a server: requests in,
replies out, as the server would pass them (tests of the handlers)."""

from __future__ import annotations

import json
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
    def __init__(self, app: App) -> None:
        self.app = app

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
        reply = self.app.handle(Request(method, path, query, hdrs, body))
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
