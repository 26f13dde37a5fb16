"""rqlite-py-restore: put a backup back into a running cluster (POST
/db/load, through the log, on every node) or into one fresh node (POST
/boot, which bypasses the log: the way back when no cluster is left).

The file is verified before anything is sent (the same checks as
rqlite-py-backup's), and, since the database it reaches is replaced,
nothing is sent without a "yes" typed at a terminal or --yes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .backup import SQLITE_HEADER, Progress, plural, verify
from .client import Client, ClientError, add_connection_arguments, options_from_args

PROG = "rqlite-py-restore"
_CHUNK_BYTES = 1 << 16
_CONTENT_TYPES = {"binary": "application/octet-stream", "sql": "text/plain"}


@dataclass(frozen=True, slots=True)
class Source:
    """A backup file, checked."""

    path: Path
    fmt: str
    """binary (a SQLite file) or sql (SQL text)."""
    size: int
    tables: dict[str, int]
    """Row counts, from verify()."""


def inspect(src: Path) -> Source:
    """Tell a SQLite file (by its 16-byte header, as the node does) from SQL
    text, and verify it. Raises ClientError (VerifyError for a bad file)."""
    try:
        size = src.stat().st_size
        with open(src, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise ClientError(f"cannot read {src}: {e.strerror or e}") from e
    if size == 0:
        raise ClientError(f"{src} is empty: nothing to restore")
    fmt = "binary" if head == SQLITE_HEADER else "sql"
    return Source(src, fmt, size, verify(src, fmt))


def load(client: Client, src: Path, *, progress: bool = False) -> None:
    """Replace the cluster's database with a SQLite file, or run an SQL
    dump (one statement string, undone if any part fails), through the
    leader. Raises ClientError."""
    _load(client, inspect(src), progress)


def boot(client: Client, src: Path, *, progress: bool = False) -> None:
    """Make a SQLite file the database of a single-node cluster, without the
    log (the node snapshots it at once). Raises ClientError."""
    _boot(client, inspect(src), progress)


class _Body:
    """A file as a request body: sent in pieces (never whole in memory),
    with its length declared. Each iteration starts again from the first
    byte, so that when the client fails over to another node the whole
    file goes there too."""

    def __init__(self, source: Source, meter: Progress | None) -> None:
        self.source = source
        self.meter = meter

    def __len__(self) -> int:
        return self.source.size

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        with open(self.source.path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                sent += len(chunk)
                if self.meter:
                    self.meter.update(sent)
                yield chunk
        if sent != self.source.size:
            raise ClientError(f"{self.source.path} changed while it was being sent")


def _post(client: Client, path: str, source: Source, progress: bool) -> dict[str, object]:
    meter = Progress(sys.stderr, f"sending {source.path.name}") if progress else None
    try:
        resp = client.checked(
            "POST",
            path,
            data=_Body(source, meter),
            headers={"Content-Type": _CONTENT_TYPES[source.fmt]},
        )
    finally:
        if meter:
            meter.finish()
    if not resp.content:
        return {}
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ClientError(f"POST {path}: unexpected answer: {resp.text[:200]!r}")
    return answer


def _load(client: Client, source: Source, progress: bool) -> None:
    answer = _post(client, "/db/load", source, progress)
    errors = [answer.get("error")]
    results = answer.get("results")
    if isinstance(results, list):
        errors += [r.get("error") for r in results if isinstance(r, dict)]
    found = [str(e) for e in errors if e]
    if found:
        raise ClientError(f"load failed: {'; '.join(found)}")


def _boot(client: Client, source: Source, progress: bool) -> None:
    _require_bootable(source)
    _post(client, "/boot", source, progress)


def _require_bootable(source: Source) -> None:
    if source.fmt != "binary":
        raise ClientError(
            f"{source.path} is SQL text; --boot takes a SQLite file "
            "(load SQL into a running node without --boot)"
        )


def confirm(node: str, stdin: TextIO, prompt_to: TextIO) -> None:
    """Ask at a terminal; refuse when there is no one to ask. Raises
    ClientError unless the answer is yes."""
    if not stdin.isatty():
        raise ClientError(
            f"not replacing the database at {node}: stdin is not a terminal to confirm at "
            "(pass --yes)"
        )
    prompt_to.write(f"type yes to replace the database at {node}: ")
    prompt_to.flush()
    if stdin.readline().strip() != "yes":
        raise ClientError("not confirmed; nothing was sent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Restore a backup (a SQLite file or SQL text) into a running rqlite-py "
        "cluster, or with --boot into a fresh single node. It replaces the database.",
    )
    add_connection_arguments(p)
    p.add_argument("file", type=Path, help="the backup: a SQLite file or SQL text")
    p.add_argument(
        "--boot", action="store_true", help="POST /boot: a single node, SQLite file only"
    )
    p.add_argument("--yes", action="store_true", help="replace without asking")
    return p


def run(args: argparse.Namespace) -> None:
    client = Client(options_from_args(args))
    source = inspect(args.file)
    kind = "SQLite file" if source.fmt == "binary" else "SQL text"
    tables = plural(len(source.tables), "table")
    print(f"{source.path}: {kind}, {source.size} bytes, integrity ok, {tables}")
    for name, rows in source.tables.items():
        print(f"  {name}: {plural(rows, 'row')}")
    if args.boot:
        _require_bootable(source)  # before asking anything
    node = client.url("")
    if not args.yes:
        sys.stdout.flush()
        confirm(node, sys.stdin, sys.stderr)
    progress = sys.stderr.isatty()
    if args.boot:
        _boot(client, source, progress)
        print(f"booted {client.url('')} from {source.path}")
    else:
        _load(client, source, progress)
        print(f"loaded {source.path} into {client.url('')}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args)
    except ClientError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
