"""rqlite-py-shell (also `rqlite-py shell`): an interactive SQL client in the
manner of rqlite's CLI (`rqlite`), with its connection flags, prompt, result
tables and dot-commands.

Where it departs from rqlite's CLI, and why:

- A statement ends at a `;` outside quotes and comments, as in sqlite3's
  shell, so that statements may span lines (SQLite's own tokenizer decides,
  sqlite3.complete_statement: `CREATE TRIGGER ... BEGIN ...; END;` is one
  statement). rqlite's CLI sends each line as it is. At the end of piped
  input, text without a final `;` is still sent.
- Reads go to /db/query at the level `.consistency` sets and everything else
  to /db/execute; rqlite's CLI (v10) sends every statement to
  /db/request and lets the node decide. /db/query reads through a read-only
  SQLite connection, so a statement taken for a read that is not one fails
  there instead of changing the database; that is what makes a read safe to
  send again to another node when its node is lost. A user holding only the
  `query` permission can also read, where /db/request needs `execute` too.
- When its node is lost the shell moves to another (those given with -a and
  those /nodes reported at start, the leader first), says so on stderr and
  changes its prompt; rqlite's CLI does the same for -a only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from .. import __version__
from . import backup, restore, table
from .client import (
    Client,
    ClientError,
    add_connection_arguments,
    options_from_args,
)

LEVELS = ("none", "weak", "linearizable", "strong", "auto")
HISTORY_ENV = "RQLITE_PY_HISTORY"
HISTORY_FILE = ".rqlite_py_history"
HISTORY_LENGTH = 1000

READ_PRAGMAS_WITH_ARG = frozenset(
    {
        "FOREIGN_KEY_CHECK",
        "FOREIGN_KEY_LIST",
        "INDEX_INFO",
        "INDEX_LIST",
        "INDEX_XINFO",
        "INTEGRITY_CHECK",
        "QUICK_CHECK",
        "TABLE_INFO",
        "TABLE_LIST",
        "TABLE_XINFO",
    }
)
"""PRAGMAs whose `name(arg)` form reads; for the others (`foreign_keys(1)`)
it sets, like `name = value`."""
WRITE_PRAGMAS = frozenset({"INCREMENTAL_VACUUM", "OPTIMIZE"})
"""PRAGMAs that change the database even without an argument."""
MAIN_VERBS = frozenset({"SELECT", "VALUES", "INSERT", "REPLACE", "UPDATE", "DELETE"})


# -- Statements: pure functions of the text typed -------------------------------


def split_statements(text: str) -> tuple[list[str], str]:
    """The complete statements at the start of `text` (without their final
    `;`, blank ones dropped), and the rest, still incomplete.

    A `;` ends a statement only where SQLite's tokenizer says the text up to
    it is complete: not inside a string, an identifier, a comment or a
    trigger's BEGIN ... END."""
    done: list[str] = []
    start = 0
    end = text.find(";")
    while end != -1:
        piece = text[start : end + 1]
        if sqlite3.complete_statement(piece):
            statement = piece[:-1].strip()
            if not is_blank(statement):
                done.append(statement)
            start = end + 1
        end = text.find(";", end + 1)
    return done, text[start:]


def tokens(sql: str) -> Iterator[str]:
    """SQL's significant tokens, enough to tell a statement's kind: words
    upper-cased, a string as `'`, a quoted identifier as `"`, any other
    character as itself; whitespace and comments skipped. An unterminated
    block comment is `/*` (so text inside one is not blank)."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline == -1 else newline + 1
        elif sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            if close == -1:
                yield "/*"
                return
            i = close + 2
        elif ch in "'\"`[":
            closer = "]" if ch == "[" else ch
            i += 1
            while i < n:
                if sql[i] == closer:
                    # A doubled quote is one quote character inside the quotes.
                    if closer != "]" and sql.startswith(closer * 2, i):
                        i += 2
                        continue
                    break
                i += 1
            i += 1
            yield "'" if ch == "'" else '"'
        elif ch.isalnum() or ch in "_$" or ord(ch) > 127:
            start = i
            while i < n and (sql[i].isalnum() or sql[i] in "_$" or ord(sql[i]) > 127):
                i += 1
            yield sql[start:i].upper()
        else:
            i += 1
            yield ch


def is_blank(sql: str) -> bool:
    """Nothing but whitespace and complete comments."""
    return next(tokens(sql), None) is None


def is_query(sql: str) -> bool:
    """Does this statement only read, so that it goes to /db/query? SELECT,
    VALUES, EXPLAIN, a PRAGMA that reads, and WITH ... SELECT. A statement
    wrongly taken for a read fails on /db/query's read-only connection; it
    cannot change anything there."""
    toks = list(tokens(sql))
    if not toks:
        return False
    first = toks[0]
    if first in ("SELECT", "VALUES", "EXPLAIN"):
        return True
    if first == "PRAGMA":
        return _pragma_reads(toks[1:])
    if first == "WITH":
        return _main_verb(toks[1:]) in ("SELECT", "VALUES")
    return False


def _pragma_reads(toks: list[str]) -> bool:
    if "=" in toks:
        return False
    # [schema .] name
    name = toks[2] if len(toks) > 2 and toks[1] == "." else (toks[0] if toks else "")
    if name in WRITE_PRAGMAS:
        return False
    return "(" not in toks or name in READ_PRAGMAS_WITH_ARG


def _main_verb(toks: list[str]) -> str:
    """The statement a WITH clause leads to: the first verb outside the
    parentheses of its common table expressions."""
    depth = 0
    for tok in toks:
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif depth == 0 and tok in MAIN_VERBS:
            return tok
    return ""


@dataclass(frozen=True, slots=True)
class DotCommand:
    name: str
    """Lower case, without the dot."""
    args: list[str] = field(default_factory=list)


def parse_dot(line: str) -> DotCommand:
    """`.name arg ...`; arguments split as a POSIX shell does, so that a
    file name with spaces can be quoted. Raises ValueError on an open quote."""
    words = shlex.split(line.strip())
    return DotCommand(words[0][1:].lower(), words[1:])


# -- The session ------------------------------------------------------------------


class Exit(Exception):
    """.exit, .quit: leave the shell."""


@dataclass(frozen=True, slots=True)
class Command:
    usage: str
    help: str
    run: Callable[[Shell, list[str]], None]


class Shell:
    def __init__(
        self, client: Client, out: TextIO, err: TextIO, *, interactive: bool = False
    ) -> None:
        self.client = client
        self.out = out
        self.err = err
        self.interactive = interactive
        """At a terminal, Ctrl-C abandons one statement; a script it stops."""
        self.level = "weak"
        self.timer = False
        self.failures = 0
        self.node = client.current
        """The node the prompt names; compared with the client's after each
        command to tell the operator that it moved."""

    # -- output ---------------------------------------------------------------
    def say(self, text: str) -> None:
        print(text, file=self.out)

    def error(self, message: str) -> None:
        self.failures += 1
        self.out.flush()  # so that a terminal shows the two in order
        print(f"ERR! {message}", file=self.err)
        self.err.flush()

    @property
    def prompt(self) -> str:
        return f"{self.node}> "

    @property
    def continuation(self) -> str:
        return "...> ".rjust(len(self.prompt))

    # -- running what was typed -------------------------------------------------
    def run(self, read: Callable[[str], str | None]) -> None:
        """Read lines until EOF or .exit, running each statement as its `;`
        arrives and each dot-command as its line ends. `read` returns None
        at EOF and raises KeyboardInterrupt on Ctrl-C, which drops the
        statement being typed."""
        buffer = ""
        while True:
            try:
                line = read(self.continuation if buffer else self.prompt)
            except KeyboardInterrupt:
                if not self.interactive:
                    raise
                buffer = ""
                self.say("")
                continue
            if line is None:
                if not is_blank(buffer):
                    self.guarded(self.statement, buffer.strip().removesuffix(";"))
                return
            word = line.strip()
            if not buffer and word.startswith("."):
                try:
                    self.guarded(self.dot, word)
                except Exit:
                    return
                continue
            if not buffer and word.lower() in ("exit", "quit"):  # as rqlite's CLI takes them
                return
            statements, buffer = split_statements(buffer + line + "\n")
            if is_blank(buffer):
                buffer = ""
            for sql in statements:
                self.guarded(self.statement, sql)

    def guarded(self, action: Callable[[str], None], arg: str) -> None:
        """Run one command: its failure is a message, never the end of the
        session; Ctrl-C while it waits on the node abandons it."""
        try:
            action(arg)
        except ClientError as e:
            self.error(str(e))
        except KeyboardInterrupt:
            if not self.interactive:
                raise
            self.error("interrupted (a write in flight may or may not have been applied)")
        except requests.RequestException as e:  # beyond the client's own: a broken answer
            self.error(f"request failed: {e}")
        except BrokenPipeError:  # whoever read the output is gone: so is the session
            raise
        except OSError as e:  # anything else the system refused: one line, not a traceback
            self.error(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
        self.follow()

    def follow(self) -> None:
        """The client moved to another node (its own was lost): say so, and
        name the new one in the prompt."""
        now = self.client.current
        if now != self.node:
            self.out.flush()
            print(f"node {self.node} lost, now connected to {now}", file=self.err)
            self.err.flush()
            self.node = now

    # -- SQL ------------------------------------------------------------------------
    def statement(self, sql: str) -> None:
        timings = {"timings": ""} if self.timer else {}
        if is_query(sql):
            # Sent again to another node if its node is lost, whenever the
            # failure happened: /db/query cannot change the database.
            resp = self.client.request(
                "POST",
                "/db/query",
                params={"level": self.level, **timings},
                json=[sql],
                resend=True,
            )
        else:
            # Sent to another node only if no connection was ever made to
            # the first (refused, unresolvable, connect timeout). Once sent,
            # the write may have been applied, even committed by the cluster
            # after its node died: sending it again could apply it twice, so
            # the operator is told instead (Client.request).
            resp = self.client.request("POST", "/db/execute", params=timings, json=[sql])
        self.show(resp)

    def show(self, resp: requests.Response) -> None:
        self.follow()  # before the result, which came from the new node
        result = self.result(resp)
        if result is None:
            return
        if "error" in result:
            self.failures += 1
            self.say(f"Error: {result['error']}")
        elif "columns" in result:  # a query, or a write with RETURNING
            self.say(table.table(result["columns"], result.get("values", [])))
            if self.timer:
                self.say(table.run_time(float(result.get("time", 0))))
        else:
            time_s = float(result.get("time", 0)) if self.timer else None
            self.say(table.rows_affected(int(result.get("rows_affected", 0)), time_s))

    def result(self, resp: requests.Response) -> dict[str, Any] | None:
        """The single statement's result; a failure of the whole request
        (no leader, unauthorized, ...) raised as ClientError."""
        if resp.status_code == 401:
            raise ClientError("unauthorized")
        if resp.status_code != 200:
            body = resp.text.strip()
            raise ClientError(
                f"server responded with {resp.status_code} {resp.reason}"
                + (f": {body}" if body else "")
            )
        try:
            doc = json.loads(resp.text, parse_float=table.Number)
        except ValueError:
            doc = None
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise ClientError(f"unexpected answer from the node: {resp.text[:200]!r}")
        if doc.get("error"):
            raise ClientError(str(doc["error"]))
        return results[0] if results else None

    # -- dot-commands -------------------------------------------------------------
    def dot(self, line: str) -> None:
        try:
            cmd = parse_dot(line)
        except ValueError as e:
            raise ClientError(f"cannot read {line!r}: {e}") from e
        command = COMMANDS.get(cmd.name)
        if command is None:
            raise ClientError(f'unknown command ".{cmd.name}"; enter ".help" for usage hints')
        command.run(self, cmd.args)

    def query(self, sql: str) -> None:
        self.show(
            self.client.request(
                "POST", "/db/query", params={"level": self.level}, json=[sql], resend=True
            )
        )

    def get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        resp = self.client.checked("GET", path, params=params)
        self.follow()
        try:
            doc = json.loads(resp.text, parse_float=table.Number)
        except ValueError as e:
            raise ClientError(f"GET {path}: the node's answer is not JSON") from e
        if not isinstance(doc, dict):
            raise ClientError(f"GET {path}: expected a JSON object")
        return doc

    def show_tree(self, path: str, args: list[str]) -> None:
        """A JSON document, or one part of it: `.status store.raft`."""
        doc = self.get_json(path)
        if args:
            part: Any = doc
            for key in args[0].split("."):
                if not isinstance(part, dict) or key not in part:
                    raise ClientError(f"{path} has no {args[0]}")
                part = part[key]
            doc = {args[0]: part}
        for line in table.tree(doc):
            self.say(line)


def one_arg(args: list[str], what: str) -> str:
    if len(args) != 1:
        raise ClientError(f"please give {what}")
    return args[0]


def cmd_help(sh: Shell, _args: list[str]) -> None:
    width = max(len(c.usage) for c in COMMANDS.values()) + 2
    for name in sorted(COMMANDS):
        sh.say(COMMANDS[name].usage.ljust(width) + COMMANDS[name].help)


def cmd_tables(sh: Shell, _args: list[str]) -> None:
    sh.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name ASC")


def cmd_indexes(sh: Shell, _args: list[str]) -> None:
    sh.query("SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name ASC")


def cmd_schema(sh: Shell, _args: list[str]) -> None:
    sh.query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid ASC")


def cmd_status(sh: Shell, args: list[str]) -> None:
    sh.show_tree("/status", args)


def cmd_expvar(sh: Shell, args: list[str]) -> None:
    sh.show_tree("/debug/vars", args)


def cmd_nodes(sh: Shell, args: list[str]) -> None:
    if args not in ([], ["all"]):
        raise ClientError("usage: .nodes [all]")
    doc = sh.get_json("/nodes", {"nonvoters": ""} if args else None)
    for line in table.tree(doc):
        sh.say(line)


def cmd_ready(sh: Shell, _args: list[str]) -> None:
    resp = sh.client.request("GET", "/readyz")
    if resp.status_code == 401:
        raise ClientError("unauthorized")
    if resp.status_code == 200:
        sh.say("ready")
    else:
        # The node's own lines say what is missing ("[+]leader does not exist").
        sh.say("not ready: " + "; ".join(resp.text.split("\n")[1:]).strip())


def cmd_consistency(sh: Shell, args: list[str]) -> None:
    if not args:
        sh.say(sh.level)
        return
    level = args[0].lower()
    if len(args) != 1 or level not in LEVELS:
        raise ClientError(
            f"invalid consistency {' '.join(args)!r}: use " + ", ".join(repr(v) for v in LEVELS)
        )
    sh.level = level


def cmd_timer(sh: Shell, args: list[str]) -> None:
    if not args:
        sh.say("on" if sh.timer else "off")
    elif args in (["on"], ["off"]):
        sh.timer = args == ["on"]
    else:
        raise ClientError(f"invalid option {' '.join(args)!r}: use 'on' or 'off'")


def cmd_remove(sh: Shell, args: list[str]) -> None:
    node_id = one_arg(args, "the ID of the node to remove")
    sh.client.checked("DELETE", "/remove", json={"id": node_id})


def cmd_backup(sh: Shell, args: list[str]) -> None:
    dest = Path(one_arg(args, "the file to write the backup to")).expanduser()
    backup.download(sh.client, dest, progress=sh.err.isatty())
    sh.follow()
    sh.say("backup file written successfully")


def cmd_dump(sh: Shell, args: list[str]) -> None:
    dest = Path(one_arg(args, "the file to write the SQL text to")).expanduser()
    backup.download(sh.client, dest, fmt="sql", progress=sh.err.isatty())
    sh.follow()
    sh.say("SQL text file written successfully")


def cmd_restore(sh: Shell, args: list[str]) -> None:
    src = Path(one_arg(args, "the SQLite file or SQL dump to load")).expanduser()
    restore.load(sh.client, src, progress=sh.err.isatty())
    sh.follow()
    sh.say("Database restored successfully.")


def cmd_boot(sh: Shell, args: list[str]) -> None:
    src = Path(one_arg(args, "the SQLite file to boot the node with")).expanduser()
    restore.boot(sh.client, src, progress=sh.err.isatty())
    sh.follow()
    sh.say("Node booted successfully.")


def cmd_exit(_sh: Shell, _args: list[str]) -> None:
    raise Exit


COMMANDS: dict[str, Command] = {
    "backup": Command(
        ".backup FILE", "Write a backup of the database (a SQLite file) to FILE", cmd_backup
    ),
    "boot": Command(
        ".boot FILE", "Boot a single node with the SQLite file FILE, bypassing the log", cmd_boot
    ),
    "consistency": Command(
        ".consistency [LEVEL]",
        "Show or set the read consistency level: " + "|".join(LEVELS),
        cmd_consistency,
    ),
    "dump": Command(".dump FILE", "Dump the database in SQL text to FILE", cmd_dump),
    "exit": Command(".exit", "Exit this program", cmd_exit),
    "expvar": Command(
        ".expvar [KEY]", "Show expvar information (/debug/vars) of the connected node", cmd_expvar
    ),
    "help": Command(".help", "Show this message", cmd_help),
    "indexes": Command(".indexes", "Show names of all indexes", cmd_indexes),
    "nodes": Command(
        ".nodes [all]",
        "Show the voting nodes and whether they are reachable; all: every node",
        cmd_nodes,
    ),
    "quit": Command(".quit", "Exit this program", cmd_exit),
    "ready": Command(".ready", "Show whether the connected node is ready", cmd_ready),
    "remove": Command(".remove NODEID", "Remove node NODEID from the cluster", cmd_remove),
    "restore": Command(
        ".restore FILE", "Load the SQLite file or SQL dump FILE into the database", cmd_restore
    ),
    "schema": Command(".schema", "Show CREATE statements for all tables", cmd_schema),
    "status": Command(
        ".status [KEY]", "Show status and diagnostics of the connected node", cmd_status
    ),
    "tables": Command(".tables", "List names of tables", cmd_tables),
    "timer": Command(".timer [on|off]", "Show or set the display of run times", cmd_timer),
}


# -- Start-up ---------------------------------------------------------------------


def check_node(client: Client) -> str:
    """Is the node there, and will it serve us? Its version if so.

    /status needs the `status` permission; a user without it may still be
    allowed to query, so a 401 there is checked again with a read before
    the credentials are called wrong."""
    resp = client.request("GET", "/status")
    if resp.status_code == 401:
        probe = client.request(
            "POST", "/db/query", params={"level": "none"}, json=["SELECT 1"], resend=True
        )
        if probe.status_code == 401:
            raise ClientError(
                "unauthorized: check -u user:password (the user needs the status "
                "or the query permission)"
            )
    return resp.headers.get("X-RQLITE-VERSION", "unknown")


def history_path() -> Path:
    return Path(os.environ.get(HISTORY_ENV) or Path.home() / HISTORY_FILE)


def read_terminal(shell: Shell) -> None:
    """An interactive session: line editing and history through readline."""
    try:
        import readline
    except ImportError:  # a Python built without it: no editing, no history
        readline = None
    path = history_path()
    if readline is not None:
        readline.set_history_length(HISTORY_LENGTH)
        with contextlib.suppress(OSError):  # none yet, or unreadable: start a new one
            readline.read_history_file(path)

    def read(prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            shell.say("")
            return None

    try:
        shell.run(read)
    finally:
        if readline is not None:
            try:
                readline.write_history_file(path)
            except OSError as e:
                print(f"cannot save history to {path}: {e.strerror}", file=shell.err)
    shell.say("bye~")


def read_pipe(shell: Shell, stream: TextIO) -> None:
    """Statements from a pipe or a file: no prompt, no history."""

    def read(_prompt: str) -> str | None:
        line = stream.readline()
        return line.removesuffix("\n") if line else None

    shell.run(read)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rqlite-py-shell",
        description="Interactive SQL client for rqlite-py and rqlite nodes.",
    )
    add_connection_arguments(parser)
    parser.add_argument("-v", "--version", action="store_true", help="show the version")
    args = parser.parse_args(argv)
    if args.version:
        print(f"rqlite-py-shell v{__version__}")
        return 0
    try:
        return session(args)
    except ClientError as e:
        print(f"ERR! {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into a reader that stopped (head): end quietly, and
        # keep Python's own flush at exit from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def session(args: argparse.Namespace) -> int:
    client = Client(options_from_args(args))
    version = check_node(client)
    client.discover()
    interactive = sys.stdin.isatty()
    shell = Shell(client, sys.stdout, sys.stderr, interactive=interactive)
    if not interactive:
        read_pipe(shell, sys.stdin)
        return 1 if shell.failures else 0
    shell.say('Welcome to the rqlite-py shell. Enter ".help" for usage hints.')
    shell.say(f"Connected to {client.url('')} running version {version}")
    read_terminal(shell)
    return 0


if __name__ == "__main__":
    sys.exit(main())
