"""rqlite-py-backup: a verified copy of the cluster's database in a
directory, and a retention policy over the copies there, for cron or a
systemd timer.

A run fetches /db/backup (gzip on the wire, decompressed while it streams),
writes it under a hidden name, verifies it (integrity_check, row counts),
only then gives it its final name, and prunes older copies. So a file
named like a backup is always one that was verified, and the policy never
counts a bad copy as the one to keep.

Names carry the UTC time of the run (rqlite-py-backup-20261129T221500Z.sqlite3,
or .sql for a dump), so retention is computed from names alone, never from
mtimes, which copying or restoring a directory changes.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import secrets
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

import apsw
import requests
import urllib3

from .. import authorizer
from ..db import SQLITE_HEADER
from ..disk import fsync_dir
from .client import Client, ClientError, add_connection_arguments, options_from_args

PROG = "rqlite-py-backup"
EXTENSIONS = {"binary": "sqlite3", "sql": "sql"}
"""The file name's extension for each --format."""
PREFIX = "rqlite-py-backup-"
_STAMP = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"rqlite-py-backup-(\d{8}T\d{6}Z)\.(sqlite3|sql)")
_CHUNK_BYTES = 1 << 16


class VerifyError(ClientError):
    """The file is not a sound database: corrupt, truncated, not SQLite/SQL."""


# -- names and retention ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    taken: datetime
    """UTC, from the name."""
    fmt: str


def backup_name(taken: datetime, fmt: str) -> str:
    return f"{PREFIX}{taken.astimezone(UTC).strftime(_STAMP)}.{EXTENSIONS[fmt]}"


def parse_name(path: Path) -> Backup | None:
    """The backup a file name denotes, or None when the name is not exactly
    one this tool gives (so that prune never touches anything else)."""
    m = _NAME.fullmatch(path.name)
    if m is None:
        return None
    try:
        taken = datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:  # the shape of a name, not a real time (month 13)
        return None
    fmt = next(f for f, ext in EXTENSIONS.items() if ext == m.group(2))
    return Backup(path, taken, fmt)


def expired(
    backups: Sequence[Backup], keep_daily: int, keep_weekly: int, now: datetime
) -> list[Backup]:
    """The backups the policy lets go: all but the newest of each of the
    last `keep_daily` UTC days (today included) and the newest of each of
    the last `keep_weekly` ISO weeks (this one included).

    A backup dated after `now` is kept and takes no day's or week's place:
    the clock has gone back (or was ahead when it was taken), and deleting
    by a clock that is wrong one way or the other could delete the newest
    good copy, or the one this run just made."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    today = now.date()
    days = {today - timedelta(days=i) for i in range(keep_daily)}
    monday = today - timedelta(days=today.weekday())
    # Weeks by their Mondays, so that year ends (ISO week 53, week 1 that
    # starts in December) need no arithmetic on week numbers.
    weeks = {monday - timedelta(weeks=i) for i in range(keep_weekly)}
    newest_of_day: dict[date, Backup] = {}
    newest_of_week: dict[date, Backup] = {}
    kept: set[Path] = set()
    for b in sorted(backups, key=lambda b: b.taken):
        if b.taken > now:
            kept.add(b.path)
            continue
        day = b.taken.date()
        newest_of_day[day] = b
        newest_of_week[day - timedelta(days=day.weekday())] = b
    kept |= {b.path for d, b in newest_of_day.items() if d in days}
    kept |= {b.path for w, b in newest_of_week.items() if w in weeks}
    return sorted((b for b in backups if b.path not in kept), key=lambda b: b.taken)


def prune(dir: Path, keep_daily: int, keep_weekly: int, now: datetime) -> list[Path]:
    """Delete the backups in `dir` that the policy lets go, each format on
    its own (a daily dump does not push out the daily binary copy); files
    not named by this tool are never touched. Returns what was removed."""
    found: dict[str, list[Backup]] = {}
    for entry in sorted(dir.iterdir()):
        b = parse_name(entry)
        if b is not None and entry.is_file() and not entry.is_symlink():
            found.setdefault(b.fmt, []).append(b)
    removed: list[Path] = []
    for fmt in sorted(found):
        for b in expired(found[fmt], keep_daily, keep_weekly, now):
            b.path.unlink()
            removed.append(b.path)
    if removed:
        fsync_dir(dir)
    return removed


# -- verification ---------------------------------------------------------------


def verify(path: Path, fmt: str) -> dict[str, int]:
    """Check that `path` holds a sound database and count each table's rows.
    binary: the SQLite file itself, opened read-only; sql: the dump, run
    into an in-memory database under the node's own authorizer (so a dump
    that would be refused by /db/load, or that reaches for files, fails
    here too). Raises VerifyError."""
    if fmt == "binary":
        return _verify_sqlite(path)
    if fmt == "sql":
        return _verify_sql(path)
    raise ValueError(f"unknown format {fmt!r}")


def _verify_sqlite(path: Path) -> dict[str, int]:
    with _reading(path), open(path, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        raise VerifyError(f"{path}: not a SQLite database file")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    size = path.stat().st_size
    # The header's page count is valid when its version-valid-for number
    # matches the change counter (SQLite file format, 1.3.7).
    declared = int.from_bytes(header[28:32], "big") * page_size
    if header[92:96] != header[24:28]:
        declared = 0
    if size % page_size or size < declared:
        raise VerifyError(
            f"{path}: truncated: {size} bytes, the header says {max(declared, page_size)}"
        )
    # immutable: no -wal or -shm beside the copy, and no lock to take.
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error as e:
        raise VerifyError(f"{path}: cannot open: {e}") from e
    try:
        return _check(conn, path)
    finally:
        conn.close()


def _verify_sql(path: Path) -> dict[str, int]:
    with _reading(path):
        data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VerifyError(f"{path}: not SQL text (not UTF-8 at byte {e.start})") from e
    conn = apsw.Connection(":memory:")
    try:
        if text.strip():
            if not apsw.complete(text):
                raise VerifyError(f"{path}: truncated: the SQL ends inside a statement")
            conn.authorizer = authorizer.make(allow_external=False)
            try:
                conn.execute(text)
            except apsw.Error as e:
                raise VerifyError(f"{path}: {authorizer.explain(str(e))}") from e
            if conn.in_transaction:
                raise VerifyError(f"{path}: truncated: the dump's transaction never commits")
            conn.authorizer = None
        return _check(conn, path)
    finally:
        conn.close()


def _check(conn: apsw.Connection, path: Path) -> dict[str, int]:
    try:
        problems = [" ".join(str(r[0]).split()) for r in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            found = "; ".join(problems)
            raise VerifyError(f"{path}: integrity_check: {found[:300].rstrip()}")
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            )
        ]
        counts: dict[str, int] = {}
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            counts[name] = int(conn.execute(f"SELECT count(*) FROM {quoted}").fetchall()[0][0])
        return counts
    except apsw.Error as e:
        raise VerifyError(f"{path}: {type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise VerifyError(f"cannot read {path}: {e.strerror or e}") from e


# -- download ---------------------------------------------------------------------


class Progress:
    """Bytes so far and the rate, on one line of `out` rewritten in place.
    Silent for the first `quiet_s`, so that small databases print nothing."""

    def __init__(
        self,
        out: TextIO,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        quiet_s: float = 1.0,
        every_s: float = 0.25,
    ) -> None:
        self.out = out
        self.what = what
        self.clock = clock
        self.start = clock()
        self.quiet_s = quiet_s
        self.every_s = every_s
        self.shown_at: float | None = None

    def update(self, done: int) -> None:
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.quiet_s:
            return
        if self.shown_at is not None and now - self.shown_at < self.every_s:
            return
        self.shown_at = now
        rate = done / elapsed if elapsed > 0 else 0.0
        self.out.write(f"\r{self.what}: {_size(done)} ({_size(int(rate))}/s)   ")
        self.out.flush()

    def finish(self) -> None:
        if self.shown_at is not None:
            self.out.write("\n")
            self.out.flush()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n} {unit}"
        n //= 1024
    return f"{n} GiB"


class _Gunzip:
    """gzip decoding that fails on a stream that ends early (zlib's own
    decoder returns what it has and says nothing)."""

    def __init__(self) -> None:
        self.d = zlib.decompressobj(31)  # 31: gzip framing

    def feed(self, data: bytes) -> bytes:
        out = []
        while data:
            try:
                out.append(self.d.decompress(data))
            except zlib.error as e:
                raise ClientError(f"backup stream is not valid gzip: {e}") from e
            # A gzip file may be several members one after the other (RFC 1952).
            data = self.d.unused_data if self.d.eof else b""
            if data:
                self.d = zlib.decompressobj(31)
        return b"".join(out)

    def finish(self) -> None:
        if not self.d.eof:
            raise ClientError("backup truncated: the gzip stream ended early")


def download(
    client: Client,
    dest: Path,
    *,
    fmt: str = "binary",
    noleader: bool = False,
    progress: bool = False,
) -> int:
    """Fetch the database from the cluster (the leader's, through whichever
    node `client` uses; with `noleader`, that node's own) and write it to
    `dest` atomically: the file appears whole and synced, or not at all.
    Returns the bytes written. Does not verify: see verify()."""
    if fmt not in EXTENSIONS:
        raise ClientError(f"unknown backup format {fmt!r} (binary or sql)")
    params = {"fmt": fmt, "compress": ""}
    if noleader:
        params["noleader"] = ""
    resp = client.checked("GET", "/db/backup", params=params, stream=True)
    with resp:
        # Trust the header: a node that forwards as older rqlite-py did
        # answers with the body already decoded and no Content-Encoding.
        encoding = resp.headers.get("Content-Encoding", "").lower()
        gunzip = _Gunzip() if encoding == "gzip" else None
        meter = Progress(sys.stderr, f"backup from {client.current}") if progress else None
        written = 0
        try:
            with atomic_file(dest) as out:
                for chunk in _wire_chunks(resp):
                    data = gunzip.feed(chunk) if gunzip else chunk
                    out.write(data)
                    written += len(data)
                    if meter:
                        meter.update(written)
                if gunzip:
                    gunzip.finish()
        except OSError as e:
            raise ClientError(_write_error(dest, e)) from e
        finally:
            if meter:
                meter.finish()
    return written


def _wire_chunks(resp: requests.Response) -> Iterator[bytes]:
    """The body as it came (still gzip, if sent so), failing if it ends
    before its Content-Length (a forwarded backup has one; the leader's
    own is chunked, and its gzip end is what shows it whole)."""
    resp.raw.enforce_content_length = True  # urllib3 2 does by default, 1.x does not
    expected = resp.headers.get("Content-Length")
    received = 0
    try:
        for chunk in resp.raw.stream(_CHUNK_BYTES, decode_content=False):
            received += len(chunk)
            yield chunk
    except (urllib3.exceptions.HTTPError, requests.RequestException) as e:
        of = f" of {expected}" if expected else ""
        raise ClientError(
            f"backup truncated: the download stopped after {received}{of} bytes "
            f"({type(e).__name__})"
        ) from e


def _write_error(path: Path, e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return f"cannot write {path}: no space left on the device"
    return f"cannot write {path}: {e.strerror or e}"


@contextlib.contextmanager
def atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A file that becomes `dest` only when the block ends without an error:
    written beside it (same file system, so the rename is atomic), synced,
    renamed, and the directory synced so that the rename survives a crash.
    On an error, Ctrl-C or SIGTERM included, the temporary file is removed."""
    # Named before it is created, not by mkstemp: an interruption that lands
    # between the file's creation and mkstemp's return would leave it unknown.
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(dest.parent)


# -- the command --------------------------------------------------------------------


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Back up an rqlite-py cluster into a directory, verify the copy and "
        "keep the newest of each of the last days and weeks.",
    )
    add_connection_arguments(p)
    p.add_argument("--dest", required=True, type=Path, help="directory of the backups")
    p.add_argument(
        "--keep-daily", type=_count, default=7, help="keep the newest of each of the last N days"
    )
    p.add_argument(
        "--keep-weekly", type=_count, default=4, help="and of each of the last M ISO weeks"
    )
    p.add_argument("--format", choices=tuple(EXTENSIONS), default="binary", dest="fmt")
    p.add_argument("--noleader", action="store_true", help="back up this node, not the leader")
    return p


def run(args: argparse.Namespace, now: datetime) -> None:
    client = Client(options_from_args(args))
    dest_dir: Path = args.dest
    try:
        dest_dir.mkdir(exist_ok=True)  # not its parents: a mistyped path fails here
    except OSError as e:
        raise ClientError(f"cannot use {dest_dir} for backups: {e.strerror or e}") from e
    final = dest_dir / backup_name(now, args.fmt)
    # Hidden, and not a name prune() knows: the final name is only ever
    # given to a copy that passed verify().
    staging = dest_dir / f".{final.name}.unverified"
    try:
        size = download(
            client, staging, fmt=args.fmt, noleader=args.noleader, progress=sys.stderr.isatty()
        )
        counts = verify(staging, args.fmt)
        os.replace(staging, final)
        fsync_dir(dest_dir)
    except OSError as e:
        raise ClientError(_write_error(final, e)) from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    print(f"{final}: {size} bytes, integrity ok, {plural(len(counts), 'table')}")
    for name, rows in counts.items():
        print(f"  {name}: {plural(rows, 'row')}")
    try:
        removed = prune(dest_dir, args.keep_daily, args.keep_weekly, now)
    except OSError as e:
        raise ClientError(f"backup kept, but pruning {dest_dir} failed: {e}") from e
    for path in removed:
        print(f"removed {path}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.keep_daily + args.keep_weekly == 0:
        parser().error("--keep-daily and --keep-weekly cannot both be 0 (nothing would be kept)")
    # systemd stops a run that outlives TimeoutStartSec= with SIGTERM: unwind
    # as for Ctrl-C, so that the temporary and unverified files are removed.
    before = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(args, datetime.now(UTC))
    except ClientError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, before)
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
