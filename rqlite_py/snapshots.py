"""Snapshot files: a copy of the SQLite database at a log index.

Written safely: to a temporary file, fsynced, checksummed, renamed into
place, and the directory fsynced, so a crash leaves either the old snapshot
or the new one, never half of one. Each snapshot has a JSON sidecar with its
metadata and SHA-256; the newest few are kept and the rest reaped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass

from .disk import fsync_dir, remove_gradually
from .raft.types import ConfState, Index, SnapshotMeta, Term

log = logging.getLogger(__name__)

KEEP = 2
_CHUNK = 1 << 20


class SnapshotError(Exception):
    """A snapshot file is missing or does not match its checksum."""


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    meta: SnapshotMeta
    path: str
    size: int
    sha256: str


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class SnapshotStore:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        names = set(os.listdir(directory))
        for name in names:  # leftovers of a crash mid-write or mid-reap
            orphan = name.endswith(".sqlite") and name[: -len(".sqlite")] + ".json" not in names
            if name.endswith(".tmp") or orphan:
                remove_gradually(os.path.join(directory, name))

    def _name(self, meta: SnapshotMeta) -> str:
        return os.path.join(self.dir, f"{meta.index:020d}-{meta.term:010d}")

    def tmp_path(self, meta: SnapshotMeta) -> str:
        return self._name(meta) + ".sqlite.tmp"

    def commit(self, meta: SnapshotMeta, tmp: str) -> SnapshotFile:
        """Make the fully written `tmp` the snapshot for `meta`. On failure
        (OSError: a full disk, an I/O error) nothing of it is left in the
        store and `tmp` is where it was: the caller keeps or removes it."""
        base = self._name(meta)
        try:
            return self._commit(meta, tmp, base)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(base + ".json.tmp")
            raise

    def _commit(self, meta: SnapshotMeta, tmp: str, base: str) -> SnapshotFile:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        size = os.path.getsize(tmp)
        sidecar = {
            "index": meta.index,
            "term": meta.term,
            "voters": list(meta.conf.voters),
            "learners": list(meta.conf.learners),
            "addrs": dict(meta.conf.addrs),
            "size": size,
            "sha256": digest,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(sidecar, f)
            f.flush()
            os.fsync(f.fileno())
        # The data first, then its description: a sidecar never names a
        # file that is not fully there.
        os.replace(tmp, base + ".sqlite")
        try:
            os.replace(base + ".json.tmp", base + ".json")
            fsync_dir(self.dir)
        except OSError:
            with contextlib.suppress(FileNotFoundError):
                os.remove(base + ".json")
            with contextlib.suppress(OSError):
                os.replace(base + ".sqlite", tmp)
            raise
        return SnapshotFile(meta, base + ".sqlite", size, digest)

    def discard(self, meta: SnapshotMeta) -> None:
        """Remove the snapshot for `meta` (description first, then data)."""
        base = self._name(meta)
        with contextlib.suppress(FileNotFoundError):
            os.remove(base + ".json")
        remove_gradually(base + ".sqlite")

    def list(self) -> list[SnapshotFile]:
        """Complete snapshots, newest first."""
        out = []
        for name in sorted(os.listdir(self.dir), reverse=True):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    obj = json.load(f)
                conf = ConfState.of(obj["voters"], obj["learners"], obj.get("addrs"))
                meta = SnapshotMeta(Index(obj["index"]), Term(obj["term"]), conf)
            except (OSError, ValueError, KeyError) as e:
                log.warning("ignoring unreadable snapshot sidecar %s: %s", name, e)
                continue
            path = os.path.join(self.dir, name[: -len(".json")] + ".sqlite")
            if os.path.exists(path):
                out.append(SnapshotFile(meta, path, obj["size"], obj["sha256"]))
        return out

    def find(self, meta: SnapshotMeta) -> SnapshotFile:
        for s in self.list():
            if s.meta.index == meta.index and s.meta.term == meta.term:
                return s
        raise SnapshotError(f"no snapshot at index {meta.index} term {meta.term}")

    def verify(self, snap: SnapshotFile) -> None:
        if file_sha256(snap.path) != snap.sha256:
            raise SnapshotError(f"snapshot {snap.path} does not match its checksum")

    def reap(self, keep: int = KEEP) -> int:
        """Delete all but the newest `keep` snapshots; returns how many went."""
        gone = 0
        for snap in self.list()[keep:]:
            # The description first: a sidecar never names a file that is
            # half removed (a crash between leaves data without one, which
            # the next start removes).
            with contextlib.suppress(FileNotFoundError):
                os.remove(snap.path[: -len(".sqlite")] + ".json")
            remove_gradually(snap.path)
            gone += 1
        if gone:
            fsync_dir(self.dir)
        return gone
