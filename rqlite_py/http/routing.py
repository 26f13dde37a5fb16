"""What every handler is given (the node's Context) and how a module
declares its endpoints (Route)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..auth import CredentialStore
from ..store import Store
from .messages import Reply, Request
from .stats import HttpStats


@dataclass
class Context:
    store: Store
    stats: HttpStats = field(default_factory=HttpStats)
    max_body_bytes: int = 64 << 20
    allow_origin: str = ""
    auth: CredentialStore | None = None
    """-auth: who may do what; None lets everyone do everything."""


Handler = Callable[[Context, Request], Reply]


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    handler: Handler
    perms: tuple[str, ...]
    """With -auth, the permissions a client needs, all of them (API.md §a.6)."""
