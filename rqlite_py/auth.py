"""Who may do what: rqlite's users file (-auth) and its check (API.md §f).

The file is a JSON array of {"username", "password", "perms"}; the user "*"
stands for everyone, anonymous clients included. A permission is granted
when "*" holds it (or "all"); otherwise the request must name a user whose
password matches and who holds it (or "all").

Beyond rqlite, an entry may give "password_hash" instead of "password": a
salted scrypt hash (hashlib.scrypt, from the standard library) that
`rqlite-py-passwd` makes, so that the file need not hold passwords in the
clear. Passwords of either kind are compared in constant time. Checking an
scrypt hash costs tens of milliseconds by design, so a password found good
is remembered (by its SHA-256, never in the clear) for the next requests.

Pure: no IO but `load`, which reads the file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

ANYONE = "*"
ALL = "all"

PERMS = frozenset(
    {
        ALL,
        "execute",
        "query",
        "load",
        "backup",
        "status",
        "ready",
        "join",
        "join-read-only",
        "join-read-replica",
        "remove",
        "snapshot",
        "leader-ops",
        "ui",
    }
)

SCRYPT_PREFIX = "scrypt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1  # 16 MiB and ~50 ms per check
SCRYPT_MAXMEM = 64 << 20
"""No file may make one check take more memory than this."""

_REMEMBERED_MAX = 4096


class AuthFileError(Exception):
    """The users file cannot be read or is not rqlite's format."""


@dataclass(frozen=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def __str__(self) -> str:
        b64 = base64.b64encode
        return "$".join(
            (
                SCRYPT_PREFIX,
                str(self.n),
                str(self.r),
                str(self.p),
                b64(self.salt).decode(),
                b64(self.key).decode(),
            )
        )

    @classmethod
    def parse(cls, text: str) -> ScryptHash:
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != SCRYPT_PREFIX:
            raise ValueError("not of the form scrypt$N$r$p$salt$key")
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt = base64.b64decode(parts[4], validate=True)
            key = base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error) as e:
            raise ValueError(f"bad number or base64: {e}") from e
        if n < 2 or n & (n - 1) or r < 1 or p < 1 or 128 * n * r * p > SCRYPT_MAXMEM:
            raise ValueError(f"scrypt parameters out of range (N={n}, r={r}, p={p})")
        if len(salt) < 8 or len(key) < 16:
            raise ValueError("salt or key too short")
        return cls(n, r, p, salt, key)

    @classmethod
    def make(cls, password: str, salt: bytes | None = None) -> ScryptHash:
        salt = os.urandom(16) if salt is None else salt
        key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
        return cls(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, key)

    def matches(self, password: str) -> bool:
        got = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(got, self.key)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM + (1 << 20), dklen=length
    )


@dataclass(frozen=True)
class User:
    name: str
    perms: frozenset[str]
    password: str | None = None
    password_hash: ScryptHash | None = None

    def has(self, perm: str) -> bool:
        return perm in self.perms or ALL in self.perms


class CredentialStore:
    def __init__(self, users: Iterable[User]) -> None:
        self._users: dict[str, User] = {}
        for u in users:
            self._users[u.name] = u  # a later entry for the same name wins, as in rqlite
        anyone = self._users.get(ANYONE)
        self._anyone = anyone.perms if anyone is not None else frozenset()
        self._remembered: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str) -> CredentialStore:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise AuthFileError(f"cannot read the auth file {path}: {e.strerror or e}") from e
        return cls.parse(data, path)

    @classmethod
    def parse(cls, data: bytes | str, where: str = "auth file") -> CredentialStore:
        try:
            entries = json.loads(data)
        except (ValueError, RecursionError) as e:
            raise AuthFileError(f"{where} is not valid JSON: {e}") from e
        if not isinstance(entries, list):
            raise AuthFileError(f"{where} must hold a JSON array of users")
        return cls(_user(e, i, where) for i, e in enumerate(entries))

    @property
    def unknown_perms(self) -> list[tuple[str, str]]:
        """(user, permission) pairs this version does not know: a typo, or
        a permission of a newer rqlite. They grant nothing here."""
        return sorted((u.name, p) for u in self._users.values() for p in u.perms - PERMS)

    def allowed(self, username: str | None, password: str | None, *perms: str) -> bool:
        """Every one of `perms` is granted, to everyone or to this user."""
        needed = [p for p in perms if p not in self._anyone and ALL not in self._anyone]
        if not needed:
            return True
        if username is None or password is None or not self.authenticate(username, password):
            return False
        user = self._users[username]
        return all(user.has(p) for p in needed)

    def allowed_quickly(self, username: str | None, password: str | None) -> bool:
        """Can `allowed` answer for these credentials without an scrypt
        check (so on an event loop)?"""
        if username is None or password is None:
            return True
        user = self._users.get(username)
        if user is None or user.password_hash is None:
            return True
        with self._lock:
            return (username, _digest(password)) in self._remembered

    def authenticate(self, username: str, password: str) -> bool:
        user = self._users.get(username)
        if user is None or username == ANYONE:
            return False
        if user.password is not None:
            return hmac.compare_digest(user.password.encode(), password.encode())
        if user.password_hash is None:
            return False
        key = (username, _digest(password))
        with self._lock:
            if key in self._remembered:
                return True
        if not user.password_hash.matches(password):
            return False
        with self._lock:
            if len(self._remembered) >= _REMEMBERED_MAX:
                self._remembered.clear()
            self._remembered.add(key)
        return True

    def password_of(self, username: str) -> str | None:
        """The clear password of a user (for -join-as), if the file holds one."""
        user = self._users.get(username)
        return None if user is None else user.password


def _digest(password: str) -> bytes:
    return hashlib.sha256(password.encode()).digest()


def _user(entry: object, i: int, where: str) -> User:
    what = f"{where}: entry {i}"
    if not isinstance(entry, dict):
        raise AuthFileError(f"{what} is not a JSON object")
    name = entry.get("username")
    if not isinstance(name, str) or not name:
        raise AuthFileError(f"{what} has no username")
    perms = entry.get("perms", [])
    if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
        raise AuthFileError(f"{what} ({name}): perms must be a list of strings")
    password, hashed = entry.get("password"), entry.get("password_hash")
    if password is not None and not isinstance(password, str):
        raise AuthFileError(f"{what} ({name}): password must be a string")
    if password is not None and hashed is not None:
        raise AuthFileError(f"{what} ({name}): give password or password_hash, not both")
    parsed = None
    if hashed is not None:
        if not isinstance(hashed, str):
            raise AuthFileError(f"{what} ({name}): password_hash must be a string")
        try:
            parsed = ScryptHash.parse(hashed)
        except ValueError as e:
            raise AuthFileError(f"{what} ({name}): bad password_hash: {e}") from e
    return User(name, frozenset(perms), password, parsed)


def basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    """(username, password) from an Authorization header's Basic scheme;
    (None, None) when there is none or it cannot be decoded."""
    if not header:
        return None, None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None, None
    return username, password


def basic_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return f"Basic {token}"
