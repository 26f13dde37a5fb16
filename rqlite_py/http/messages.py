"""An HTTP request and its reply, as the handlers see them.

The handlers are plain functions from a Request to a Reply: no framework
objects, no globals, so that they run the same behind the server
(http/server.py) and in tests that call the application directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""
    endpoint: str = ""  # the handler's name, set by the router (for counters)

    @cached_property
    def args(self) -> dict[str, str]:
        """Query parameters, the first value of each name; `?pretty` is
        present with an empty value."""
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.query_string, keep_blank_values=True):
            out.setdefault(k, v)
        return out

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    @property
    def target(self) -> str:
        """The path and query, as a client would send them again."""
        return self.path + (f"?{self.query_string}" if self.query_string else "")


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterator[bytes] = b""
    content_type: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


class HttpError(Exception):
    """A request the router cannot take: not authorized (401), unknown path
    (404), wrong method (405), body over the limit (413)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
