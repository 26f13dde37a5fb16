"""Failures of the node's own storage, told apart from SQL errors here only.

A SQL error (no such table, a constraint) is a property of the statement and
the data: every replica meets it at the same entry, so it is a result. A full
disk, an I/O error or a file that cannot be opened is a property of this one
machine at this one moment: turning it into a result would record, on this
node only, an outcome the others never saw, and the replicas would differ for
ever. Such failures become `DiskError`, which is never a result: the operation
is undone and retried (the Raft log, the state machine) or refused (HTTP).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import apsw

FULL = "database or disk is full"
IO = "disk I/O error"
CANT_OPEN = "unable to open database file"

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_IO_ERRNOS = frozenset({errno.EIO, errno.EROFS, errno.ENOMEM})

_APSW_ENVIRONMENTAL: tuple[type[apsw.Error], ...] = (
    apsw.FullError,  # SQLITE_FULL: the disk (max_page_count is a disallowed pragma)
    apsw.IOError,  # SQLITE_IOERR_*: read, write, fsync, truncate, locking...
    apsw.CantOpenError,  # a journal, WAL or temporary file cannot be created
    apsw.NoMemError,
    apsw.ReadOnlyError,  # the file system went read-only under us
    apsw.ProtocolError,  # WAL locking race
    apsw.BusyError,  # another process holds the file: the writer is alone otherwise
)
"""Not here: CorruptError and NotADBError are about a file's contents, which
may be a client's (a loaded file that is not a database fails the same way on
every node), and retrying would not change them."""


class DiskError(Exception):
    """The node's storage failed: full, an I/O error, a file that cannot be
    opened. Not a SQL error: never a result, never replicated."""


def environmental(e: BaseException) -> DiskError | None:
    """The DiskError that `e` amounts to, or None when `e` is not about this
    machine's storage (a SQL error, a bug)."""
    if isinstance(e, DiskError):
        return e
    if isinstance(e, apsw.Error):
        if not isinstance(e, _APSW_ENVIRONMENTAL):
            return None
        if isinstance(e, apsw.CantOpenError) and str(e).startswith("unable to open database: "):
            return None  # ATTACH of a path the statement names: the statement's fault
        if isinstance(e, apsw.FullError):
            return DiskError(FULL)
        if isinstance(e, apsw.IOError):
            return DiskError(IO)
        if isinstance(e, apsw.CantOpenError):
            return DiskError(CANT_OPEN)
        return DiskError(str(e) or type(e).__name__)
    if isinstance(e, OSError):
        if e.errno in _FULL_ERRNOS:
            return DiskError(FULL)
        if e.errno in _IO_ERRNOS:
            return DiskError(IO)
    return None


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Raise the environmental failures of the block as DiskError."""
    try:
        yield
    except (apsw.Error, OSError) as e:
        d = environmental(e)
        if d is None or d is e:
            raise
        raise d from e


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a directory's entries durable: a file renamed into it survives
    a crash only once the directory itself is synced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


PACE_BYTES = 1 << 20
"""How much of a large file is written back at a time (copy_paced)."""
SHRINK_BYTES = 4 << 20
"""How much of a large file one truncation frees (remove_gradually)."""


def copy_paced(src: str, dst: str) -> None:
    """Copy `src` into a new file `dst`, writing it back a MiB at a time:
    left to one fsync at the end, a 100 MB copy held the Raft log's fsyncs
    (on the same ext4 journal) for 40-60 ms; paced, for under 2 ms. The
    caller's fsync of `dst` (SnapshotStore.commit) then finds little to do."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        offset = 0
        while sent := os.sendfile(fout.fileno(), fin.fileno(), offset, PACE_BYTES):
            offset += sent
            os.fdatasync(fout.fileno())


def remove_gradually(path: str) -> None:
    """Remove a large file by shrinking it a few MiB at a time first: freeing
    100 MB of blocks in one unlink held the Raft log's fsyncs for 20-25 ms;
    in 4 MiB steps, for under 3 ms. A missing file is not an error."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        while size > 0:
            size = max(0, size - SHRINK_BYTES)
            os.ftruncate(fd, size)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
