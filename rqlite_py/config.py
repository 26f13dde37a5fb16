"""Node configuration from `rqlited`'s command line (shared/API.md §g).

Scripts written for rqlite nodes must run unchanged, so the command line is
parsed the way Go's `flag` package parses it, not the way argparse would:

- `-name value`, `--name value`, `-name=value` and `--name=value` are the same;
- a boolean flag is `-name` or `-name=<bool>`; it never takes the next
  argument, so `-fk false` sets `-fk` and makes `false` the data directory;
- flags stop at the first argument that is not a flag (or after `--`);
  what follows is the data directory, and nothing may follow it;
- `-h`/`-help` ask for the usage text (Go exits 0 for that);
- parse errors name the flag (Go exits 2 for those).

Every flag of rqlite v10 is accepted. A flag whose feature rqlite-py does not
implement yet is stored and reported as a warning by `parse_args` when set
to a non-default value; it never stops the node from starting.

rqlite-py extensions (not in rqlited):

- `-http-max-body-bytes` (default 64 MiB, 0 = no limit): the largest HTTP
  request body a node accepts;
- the data directory may be omitted: it defaults to `rqlite-data` in the
  current directory (rqlited requires it).

`-raft-log-level` is an rqlited flag; rqlite-py maps it onto Python logging
for its Raft modules and, unlike rqlited, rejects an unknown level.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "DEFAULT_DATA_DIR",
    "IMPLEMENTED_FLAGS",
    "FlagError",
    "HelpRequested",
    "NodeConfig",
    "flag_names",
    "format_duration",
    "parse_args",
    "parse_duration",
    "usage",
    "validate",
]

DEFAULT_DATA_DIR = "rqlite-data"

_MAX_INT64 = (1 << 63) - 1
_MAX_UINT64 = (1 << 64) - 1


class FlagError(ValueError):
    """A command line rqlited would refuse: unknown flag, bad value, or an
    invalid combination. The CLI prints the message and exits 2."""

    def __init__(self, message: str, flag: str | None = None) -> None:
        super().__init__(message)
        self.flag = flag
        """The flag at fault, without dashes, when there is a single one."""


class HelpRequested(Exception):
    """`-h` or `-help` was given: print `usage` and exit 0, as Go does."""

    def __init__(self, usage: str) -> None:
        super().__init__("help requested")
        self.usage = usage


# --------------------------------------------------------------------------
# Go durations
# --------------------------------------------------------------------------

_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def _duration_ns(text: str) -> int:
    """Go's `time.ParseDuration`, exact, in integer nanoseconds (may be < 0)."""
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise FlagError(f'invalid duration "{text}"')
    total = Fraction(0)
    while s:
        i = 0
        while i < len(s) and s[i].isascii() and s[i].isdigit():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s.startswith("."):
            j = 1
            while j < len(s) and s[j].isascii() and s[j].isdigit():
                j += 1
            frac, s = s[1:j], s[j:]
        if not whole and not frac:
            raise FlagError(f'invalid duration "{text}"')
        k = 0
        while k < len(s) and s[k] != "." and not (s[k].isascii() and s[k].isdigit()):
            k += 1
        unit, s = s[:k], s[k:]
        if not unit:
            raise FlagError(f'missing unit in duration "{text}"')
        if unit not in _UNIT_NS:
            raise FlagError(f'unknown unit "{unit}" in duration "{text}"')
        number = Fraction(int(whole or "0"))
        if frac:
            number += Fraction(int(frac), 10 ** len(frac))
        total += number * _UNIT_NS[unit]
        if total > _MAX_INT64:
            raise FlagError(f'invalid duration "{text}": out of range')
    ns = int(total)  # truncates below a nanosecond, like Go
    return -ns if negative else ns


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string: `500ms`, `1h30m`, `1.5s`, `300µs`, `0`.

    Units are ns, us (or µs/μs), ms, s, m, h; every number needs one, except a
    bare `0`. No flag of rqlited takes a negative duration, so a negative
    value raises `FlagError`, as does anything Go would reject.
    """
    ns = _duration_ns(text)
    if ns < 0:
        raise FlagError(f'negative duration "{text}" is not allowed')
    return ns / 1e9


def format_duration(seconds: float) -> str:
    """Go's `time.Duration.String`: `0s`, `50ms`, `1.5s`, `1m30s`, `24h0m0s`."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)

    def fixed(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        if not rest:
            return str(whole)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}"

    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{fixed(ns, 1_000)}\u00b5s"
    if ns < 1_000_000_000:
        return f"{sign}{fixed(ns, 1_000_000)}ms"
    hours, ns = divmod(ns, _UNIT_NS["h"])
    minutes, ns = divmod(ns, _UNIT_NS["m"])
    text = f"{hours}h" if hours else ""
    text += f"{minutes}m" if hours or minutes else ""
    return f"{sign}{text}{fixed(ns, 1_000_000_000)}s"


# --------------------------------------------------------------------------
# The configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One field per rqlited flag (§g), plus the data directory.

    Field names are the flag names in snake_case; durations are float
    seconds with an `_s` suffix (`-join-interval` -> `join_interval_s`,
    `-raft-snap-int` -> `raft_snap_interval_s`); `-version` is
    `show_version`; `-raft-snap-wal-size` is `raft_snap_wal_size_bytes`.
    Comma lists (`-join`, `-extensions-path`) are tuples.

    Derived defaults, as rqlited applies them: an empty `http_adv_addr` or
    `raft_adv_addr` becomes the bind address, and an empty `node_id`
    becomes the advertised Raft address. They are resolved at construction,
    so `dataclasses.replace(cfg, raft_addr=...)` keeps the old derived values
    unless they are passed too.
    """

    data_dir: str = DEFAULT_DATA_DIR
    show_version: bool = False
    # Identity and addresses
    node_id: str = ""
    http_addr: str = "localhost:4001"
    http_adv_addr: str = ""
    raft_addr: str = "localhost:4002"
    raft_adv_addr: str = ""
    http_allow_origin: str = ""
    # Cluster formation
    join: tuple[str, ...] = ()
    join_attempts: int = 5
    join_interval_s: float = 3.0
    join_as: str = ""
    bootstrap_expect: int = 0
    bootstrap_expect_timeout_s: float = 120.0
    disco_mode: str = ""
    disco_key: str = "rqlite"
    disco_config: str = ""
    # Raft
    raft_log_level: str = "WARN"
    raft_non_voter: bool = False
    raft_snap: int = 8192
    raft_snap_interval_s: float = 10.0
    raft_snap_wal_size_bytes: int = 4194304
    raft_heartbeat_timeout_s: float = 1.0
    raft_election_timeout_s: float = 1.0
    raft_commit_timeout_s: float = 0.05
    raft_leader_lease_timeout_s: float = 0.0
    raft_apply_timeout_s: float = 10.0
    raft_remove_shutdown: bool = False
    raft_cluster_remove_shutdown: bool = False
    raft_shutdown_stepdown: bool = True
    raft_reap_node_timeout_s: float = 0.0
    raft_reap_read_only_node_timeout_s: float = 0.0
    cluster_connect_timeout_s: float = 30.0
    compress_snap_transport: bool = False
    # Queued writes
    write_queue_capacity: int = 1024
    write_queue_batch_size: int = 128
    write_queue_timeout_s: float = 0.05
    write_queue_tx: bool = False
    # SQLite
    fk: bool = False
    db_max_ro_conns: int = 256
    auto_vacuum_interval_s: float = 0.0
    auto_optimize_interval_s: float = 86400.0
    extensions_path: tuple[str, ...] = ()
    # Security
    sql_allow_external: bool = False
    auth: str = ""
    http_cert: str = ""
    http_key: str = ""
    http_ca_cert: str = ""
    http_verify_client: bool = False
    http_verify_common_name: str = ""
    node_cert: str = ""
    node_key: str = ""
    node_ca_cert: str = ""
    node_no_verify: bool = False
    node_verify_client: bool = False
    node_verify_server_name: str = ""
    node_verify_common_name: str = ""
    # Backup, CDC, metrics, profiling
    auto_backup: str = ""
    auto_restore: str = ""
    cdc_config: str = ""
    otlp_endpoint: str = ""
    otlp_interval_s: float = 30.0
    otlp_ca_cert: str = ""
    otlp_cert: str = ""
    otlp_key: str = ""
    cpu_profile: str = ""
    mem_profile: str = ""
    trace_profile: str = ""
    # rqlite-py extensions
    http_max_body_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.http_adv_addr:
            object.__setattr__(self, "http_adv_addr", self.http_addr)
        if not self.raft_adv_addr:
            object.__setattr__(self, "raft_adv_addr", self.raft_addr)
        if not self.node_id:
            object.__setattr__(self, "node_id", self.raft_adv_addr)


# --------------------------------------------------------------------------
# The flags
# --------------------------------------------------------------------------


class _Kind(enum.Enum):
    STRING = "string"
    BOOL = ""
    INT = "int"
    UINT = "uint"
    DURATION = "duration"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    field: str
    kind: _Kind
    help: str


_S, _B, _I, _U, _D, _L = (
    _Kind.STRING,
    _Kind.BOOL,
    _Kind.INT,
    _Kind.UINT,
    _Kind.DURATION,
    _Kind.LIST,
)

_FLAGS: tuple[_Flag, ...] = (
    _Flag("version", "show_version", _B, "Show version information and exit"),
    _Flag(
        "node-id", "node_id", _S, "Unique ID for node. If not set, set to advertised Raft address"
    ),
    _Flag("http-addr", "http_addr", _S, "HTTP server bind address"),
    _Flag(
        "http-adv-addr", "http_adv_addr", _S, "Advertised HTTP address. If not set, same as bind"
    ),
    _Flag("raft-addr", "raft_addr", _S, "Raft communication bind address"),
    _Flag(
        "raft-adv-addr", "raft_adv_addr", _S, "Advertised Raft address. If not set, same as bind"
    ),
    _Flag("http-allow-origin", "http_allow_origin", _S, "Access-Control-Allow-Origin header value"),
    _Flag("join", "join", _L, "Comma-delimited list of Raft addresses (host:port) to join"),
    _Flag("join-attempts", "join_attempts", _I, "Number of join attempts per address"),
    _Flag("join-interval", "join_interval_s", _D, "Period between join attempts"),
    _Flag("join-as", "join_as", _S, "Username in the auth file to join as. If not set, anonymous"),
    _Flag("bootstrap-expect", "bootstrap_expect", _I, "Nodes required for a bootstrap (0 = off)"),
    _Flag("bootstrap-expect-timeout", "bootstrap_expect_timeout_s", _D, "Bootstrap time limit"),
    _Flag("disco-mode", "disco_mode", _S, "Discovery mode: dns, dns-srv, consul-kv or etcd-kv"),
    _Flag("disco-key", "disco_key", _S, "Key prefix for the cluster discovery service"),
    _Flag("disco-config", "disco_config", _S, "Discovery config, or path to its file"),
    _Flag(
        "raft-log-level", "raft_log_level", _S, "Minimum Raft log level: ERROR, WARN, INFO, DEBUG"
    ),
    _Flag("raft-non-voter", "raft_non_voter", _B, "Configure as a non-voting (read-only) node"),
    _Flag("raft-snap", "raft_snap", _U, "Outstanding log entries that trigger a snapshot"),
    _Flag("raft-snap-int", "raft_snap_interval_s", _D, "Snapshot threshold check interval"),
    _Flag(
        "raft-snap-wal-size", "raft_snap_wal_size_bytes", _U, "WAL bytes that trigger a snapshot"
    ),
    _Flag("raft-heartbeat-timeout", "raft_heartbeat_timeout_s", _D, "Raft heartbeat timeout"),
    _Flag("raft-election-timeout", "raft_election_timeout_s", _D, "Raft election timeout"),
    _Flag("raft-commit-timeout", "raft_commit_timeout_s", _D, "Raft commit timeout"),
    _Flag("raft-leader-lease-timeout", "raft_leader_lease_timeout_s", _D, "0s = Raft default"),
    _Flag("raft-apply-timeout", "raft_apply_timeout_s", _D, "Raft apply timeout"),
    _Flag("raft-remove-shutdown", "raft_remove_shutdown", _B, "Shut Raft down if node is removed"),
    _Flag(
        "raft-cluster-remove-shutdown",
        "raft_cluster_remove_shutdown",
        _B,
        "Node removes itself from the cluster on graceful shutdown",
    ),
    _Flag("raft-shutdown-stepdown", "raft_shutdown_stepdown", _B, "If leader, step down on exit"),
    _Flag(
        "raft-reap-node-timeout", "raft_reap_node_timeout_s", _D, "Reap unreachable voters after"
    ),
    _Flag(
        "raft-reap-read-only-node-timeout",
        "raft_reap_read_only_node_timeout_s",
        _D,
        "Reap unreachable non-voters after",
    ),
    _Flag("cluster-connect-timeout", "cluster_connect_timeout_s", _D, "Internode dial timeout"),
    _Flag("compress-snap-transport", "compress_snap_transport", _B, "Compress shipped snapshots"),
    _Flag("write-queue-capacity", "write_queue_capacity", _I, "Queued Writes queue capacity"),
    _Flag("write-queue-batch-size", "write_queue_batch_size", _I, "Queued Writes batch size"),
    _Flag("write-queue-timeout", "write_queue_timeout_s", _D, "Queued Writes batch timeout"),
    _Flag("write-queue-tx", "write_queue_tx", _B, "Use a transaction for each queued batch"),
    _Flag("fk", "fk", _B, "Enable SQLite foreign key constraints"),
    _Flag("db-max-ro-conns", "db_max_ro_conns", _I, "Read-only SQLite connections (0 = no limit)"),
    _Flag("auto-vacuum-int", "auto_vacuum_interval_s", _D, "Period between VACUUMs (0s = off)"),
    _Flag("auto-optimize-int", "auto_optimize_interval_s", _D, "PRAGMA optimize period (0h = off)"),
    _Flag("extensions-path", "extensions_path", _L, "Comma list of SQLite extension dirs/archives"),
    _Flag(
        "sql-allow-external",
        "sql_allow_external",
        _B,
        "Allow ATTACH, VACUUM INTO and load_extension() (set alike on every node)",
    ),
    _Flag("auth", "auth", _S, "Path to the authentication and authorization file"),
    _Flag("http-cert", "http_cert", _S, "Path to the HTTPS X.509 certificate"),
    _Flag("http-key", "http_key", _S, "Path to the HTTPS X.509 private key"),
    _Flag("http-ca-cert", "http_ca_cert", _S, "Path to the X.509 CA certificate for HTTPS"),
    _Flag("http-verify-client", "http_verify_client", _B, "Enable mutual TLS for HTTPS"),
    _Flag(
        "http-verify-common-name",
        "http_verify_common_name",
        _S,
        "Common Name required on HTTPS client certificates",
    ),
    _Flag("node-cert", "node_cert", _S, "Path to the X.509 certificate for node-to-node TLS"),
    _Flag("node-key", "node_key", _S, "Path to the X.509 private key for node-to-node TLS"),
    _Flag("node-ca-cert", "node_ca_cert", _S, "Path to the X.509 CA certificate for node-to-node"),
    _Flag("node-no-verify", "node_no_verify", _B, "Skip verification of node certificates"),
    _Flag("node-verify-client", "node_verify_client", _B, "Enable mutual TLS between nodes"),
    _Flag(
        "node-verify-server-name",
        "node_verify_server_name",
        _S,
        "Hostname to verify on node certificates",
    ),
    _Flag(
        "node-verify-common-name",
        "node_verify_common_name",
        _S,
        "Common Name required on node certificates",
    ),
    _Flag("auto-backup", "auto_backup", _S, "Path to the automatic backup config file"),
    _Flag("auto-restore", "auto_restore", _S, "Path to the automatic restore config file"),
    _Flag("cdc-config", "cdc_config", _S, "CDC endpoint URL, stdout, or path to a config file"),
    _Flag("otlp-endpoint", "otlp_endpoint", _S, "OTLP metrics endpoint. If not set, not enabled"),
    _Flag("otlp-interval", "otlp_interval_s", _D, "Period between OTLP metrics exports"),
    _Flag("otlp-ca-cert", "otlp_ca_cert", _S, "Path to the X.509 CA certificate for OTLP"),
    _Flag("otlp-cert", "otlp_cert", _S, "Path to the X.509 client certificate for OTLP"),
    _Flag("otlp-key", "otlp_key", _S, "Path to the X.509 client private key for OTLP"),
    _Flag("cpu-profile", "cpu_profile", _S, "Path to file for CPU profiling information"),
    _Flag("mem-profile", "mem_profile", _S, "Path to file for memory profiling information"),
    _Flag("trace-profile", "trace_profile", _S, "Path to file for trace profiling information"),
    _Flag(
        "http-max-body-bytes",
        "http_max_body_bytes",
        _I,
        "Largest HTTP request body accepted (0 = no limit; rqlite-py extension)",
    ),
)

_BY_NAME: dict[str, _Flag] = {f.name: f for f in _FLAGS}
_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(NodeConfig)}

_REMOVED: dict[str, str] = {
    "raft-timeout": "renamed -raft-heartbeat-timeout in rqlite v10",
    "on-disk": "removed in rqlite v10",
    "on-disk-path": "removed in rqlite v10",
}

IMPLEMENTED_FLAGS: frozenset[str] = frozenset(
    {
        "node-id",
        "http-addr",
        "http-adv-addr",
        "raft-addr",
        "raft-adv-addr",
        "raft-heartbeat-timeout",
        "raft-election-timeout",
        "raft-apply-timeout",
        "raft-log-level",
        "http-max-body-bytes",
        "fk",
        "db-max-ro-conns",
        "http-allow-origin",
        "join",
        "join-attempts",
        "join-interval",
        "raft-shutdown-stepdown",
        "cluster-connect-timeout",
        "raft-non-voter",
        "bootstrap-expect",
        "bootstrap-expect-timeout",
        "raft-snap",
        "raft-snap-int",
        "raft-snap-wal-size",
        "compress-snap-transport",
        "raft-reap-node-timeout",
        "raft-reap-read-only-node-timeout",
        "raft-cluster-remove-shutdown",
        "write-queue-capacity",
        "write-queue-batch-size",
        "write-queue-timeout",
        "write-queue-tx",
        "version",
        "auth",
        "join-as",
        "sql-allow-external",
        "http-cert",
        "http-key",
        "http-ca-cert",
        "http-verify-client",
        "http-verify-common-name",
        "node-cert",
        "node-key",
        "node-ca-cert",
        "node-no-verify",
        "node-verify-client",
        "node-verify-server-name",
        "node-verify-common-name",
    }
)
"""Flags whose feature rqlite-py implements; any other flag set to a
non-default value draws a warning. The data directory is always honoured."""


_RAFT_LOG_LEVELS = frozenset({"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF"})
_DISCO_MODES = ("dns", "dns-srv", "consul-kv", "etcd-kv")


def flag_names() -> tuple[str, ...]:
    """Every accepted flag name, without dashes, in usage order."""
    return tuple(sorted(_BY_NAME))


# --------------------------------------------------------------------------
# Parsing values
# --------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _parse_bool(flag: _Flag, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise FlagError(f'invalid boolean value "{text}" for -{flag.name}: parse error', flag.name)


def _go_int(text: str, signed: bool) -> int | None:
    """strconv.ParseInt/ParseUint with base 0: 0x, 0o, 0b, leading-0 octal,
    underscores between digits. None when Go would not parse it."""
    s = text
    negative = False
    if signed and s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    base = 10
    digits = s
    if len(s) > 1 and s[0] == "0":
        prefix = s[1].lower()
        if prefix in ("x", "o", "b"):
            base = {"x": 16, "o": 8, "b": 2}[prefix]
            digits = s[2:]
        else:
            base = 8
            digits = s[1:]
    # Underscores: only with base 0 syntax, each between two digits (a base
    # prefix counts as a digit).
    marked = ("0" if base != 10 else "") + digits
    if "_" in marked and ("__" in marked or marked.startswith("_") or marked.endswith("_")):
        return None
    digits = digits.replace("_", "")
    if not digits or not all(c.isascii() and c.isalnum() for c in digits):
        return None
    try:
        value = int(digits, base)
    except ValueError:
        return None
    return -value if negative else value


def _parse_int(flag: _Flag, text: str) -> int:
    signed = flag.kind is _Kind.INT
    value = _go_int(text, signed)
    if value is None:
        raise FlagError(f'invalid value "{text}" for flag -{flag.name}: parse error', flag.name)
    if value > (_MAX_INT64 if signed else _MAX_UINT64) or value < -_MAX_INT64 - 1:
        raise FlagError(
            f'invalid value "{text}" for flag -{flag.name}: value out of range', flag.name
        )
    if value < 0:
        raise FlagError(
            f'invalid value "{text}" for flag -{flag.name}: must not be negative', flag.name
        )
    return value


def _parse_value(flag: _Flag, text: str) -> object:
    if flag.kind is _Kind.BOOL:
        return _parse_bool(flag, text)
    if flag.kind in (_Kind.INT, _Kind.UINT):
        return _parse_int(flag, text)
    if flag.kind is _Kind.DURATION:
        try:
            return parse_duration(text)
        except FlagError as exc:
            raise FlagError(
                f'invalid value "{text}" for flag -{flag.name}: {exc}', flag.name
            ) from None
    if flag.kind is _Kind.LIST:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> tuple[NodeConfig, list[str]]:
    """Parse `rqlited [flags] [<data directory>]` (argv without the program).

    Returns the validated config and one warning per flag that was set to a
    non-default value although rqlite-py does not implement it yet. With
    `-version` the config is returned unvalidated, so the version prints
    whatever else is on the line. Raises `HelpRequested` for `-h`/`-help`
    and `FlagError` for anything rqlited would refuse.
    """
    values: dict[str, object] = {}
    set_flags: dict[str, None] = {}  # insertion-ordered set of flag names
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            rest = argv[i:]
            break
        if arg == "--":
            rest = argv[i + 1 :]
            break
        body = arg[2:] if arg.startswith("--") else arg[1:]
        if not body or body[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, has_value, text = body.partition("=")
        flag = _BY_NAME.get(name)
        if flag is None:
            if name in ("h", "help"):
                raise HelpRequested(usage())
            hint = f" ({_REMOVED[name]})" if name in _REMOVED else ""
            raise FlagError(f"flag provided but not defined: -{name}{hint}", name)
        if flag.kind is _Kind.BOOL:
            value = _parse_bool(flag, text) if has_value else True
        else:
            if not has_value:
                if i + 1 >= len(argv):
                    raise FlagError(f"flag needs an argument: -{name}", name)
                i += 1
                text = argv[i]
            value = _parse_value(flag, text)
        values[flag.field] = value
        set_flags[name] = None
        i += 1

    if len(rest) > 1:
        raise FlagError(
            f"arguments after data directory ({rest[0]}) are not accepted ({' '.join(rest[1:])});"
            " flags must come before the data directory"
        )
    if rest:
        values["data_dir"] = rest[0]
    cfg = NodeConfig(**values)  # type: ignore[arg-type]  # values are typed per flag
    if not cfg.show_version:
        validate(cfg)
    warnings = [
        f"flag -{name} is accepted but not implemented yet; ignored"
        for name in set_flags
        if name not in IMPLEMENTED_FLAGS
        and getattr(cfg, _BY_NAME[name].field) != _DEFAULTS[_BY_NAME[name].field]
    ]
    return cfg, warnings


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _split_host_port(addr: str) -> tuple[str, str] | None:
    """Go's net.SplitHostPort: `host:port` or `[v6]:port`; None if malformed."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0 or addr[end + 1 : end + 2] != ":":
            return None
        host, port = addr[1:end], addr[end + 2 :]
        if "[" in host or "]" in port or "[" in port:
            return None
        return host, port
    host, sep, port = addr.rpartition(":")
    if not sep or ":" in host or "[" in host or "]" in host or "]" in port:
        return None
    return host, port


def _port(text: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= 65535 else None


def _has_scheme(addr: str) -> bool:
    return "://" in addr


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check_addr(flag: str, addr: str, *, advertised: bool) -> None:
    what = f"-{flag} address {addr!r}"
    if _has_scheme(addr):
        raise FlagError(f"{what} should not include a scheme (http:// or https://)", flag)
    parts = _split_host_port(addr)
    if parts is None:
        raise FlagError(f"{what} is not valid: want host:port", flag)
    host, port_text = parts
    port = _port(port_text)
    if port is None:
        raise FlagError(f"{what} has an invalid port {port_text!r}", flag)
    if advertised:
        bind = flag.replace("-adv-addr", "-addr")
        if _is_unspecified(host):
            raise FlagError(
                f"advertised address {addr!r} is not routable ({host}), "
                f"specify it via -{bind} or -{flag}",
                flag,
            )
        if port == 0:
            raise FlagError(f"advertised address {addr!r} has port 0; specify -{flag}", flag)


def validate(cfg: NodeConfig) -> None:
    """Refuse the combinations rqlited refuses (cmd/rqlited flags.go), plus
    the Raft timing limits hashicorp/raft enforces when the node starts."""
    if not cfg.data_dir:
        raise FlagError("data directory must not be empty")
    for flag in _FLAGS:
        value = getattr(cfg, flag.field)
        if flag.kind in (_Kind.INT, _Kind.UINT, _Kind.DURATION) and value < 0:
            raise FlagError(f"-{flag.name} must not be negative", flag.name)
    _validate_tls(cfg)
    _validate_addresses(cfg)
    _validate_cluster(cfg)
    _validate_raft(cfg)


def _validate_tls(cfg: NodeConfig) -> None:
    for cert, key in (("http-cert", "http-key"), ("node-cert", "node-key")):
        has_cert = bool(getattr(cfg, _BY_NAME[cert].field))
        has_key = bool(getattr(cfg, _BY_NAME[key].field))
        if has_cert != has_key:
            raise FlagError(
                f"either both -{cert} and -{key} must be set, or neither",
                cert if has_key else key,
            )
    for needs, flags in (
        ("http-cert", ("http-ca-cert", "http-verify-client")),
        (
            "node-cert",
            (
                "node-ca-cert",
                "node-no-verify",
                "node-verify-client",
                "node-verify-server-name",
                "node-verify-common-name",
            ),
        ),
    ):
        for flag in flags:
            if getattr(cfg, _BY_NAME[flag].field) and not getattr(cfg, _BY_NAME[needs].field):
                raise FlagError(f"-{flag} requires -{needs}", flag)
    if cfg.join_as and not cfg.auth:
        raise FlagError(
            "-join-as requires -auth: its password is read from the auth file", "join-as"
        )
    if cfg.http_verify_common_name and not cfg.http_verify_client:
        raise FlagError(
            "-http-verify-common-name requires -http-verify-client", "http-verify-common-name"
        )


def _validate_addresses(cfg: NodeConfig) -> None:
    _check_addr("http-addr", cfg.http_addr, advertised=False)
    _check_addr("http-adv-addr", cfg.http_adv_addr, advertised=True)
    _check_addr("raft-addr", cfg.raft_addr, advertised=False)
    _check_addr("raft-adv-addr", cfg.raft_adv_addr, advertised=True)
    if cfg.http_addr == cfg.raft_addr:
        raise FlagError(f"HTTP and Raft addresses must differ (both {cfg.http_addr})", "raft-addr")
    if cfg.http_adv_addr == cfg.raft_adv_addr:
        raise FlagError(
            f"advertised HTTP and Raft addresses must differ (both {cfg.http_adv_addr})",
            "raft-adv-addr",
        )


def _validate_cluster(cfg: NodeConfig) -> None:
    if cfg.bootstrap_expect > 0 and cfg.raft_non_voter:
        raise FlagError(
            "-bootstrap-expect is only applicable to voting nodes (-raft-non-voter is set)",
            "bootstrap-expect",
        )
    for addr in cfg.join:
        if _has_scheme(addr):
            raise FlagError(
                f"join address {addr!r} should not include a scheme: -join takes Raft "
                "addresses (host:port)",
                "join",
            )
        parts = _split_host_port(addr)
        if parts is None or _port(parts[1]) is None:
            raise FlagError(f"{addr} is an invalid join address: want host:port", "join")
        if cfg.bootstrap_expect == 0 and addr in (cfg.raft_addr, cfg.raft_adv_addr):
            raise FlagError("node cannot join with itself unless bootstrapping", "join")
    if cfg.join and cfg.disco_mode:
        raise FlagError(
            "-disco-mode cannot be used when also explicitly joining a cluster (-join)",
            "disco-mode",
        )
    if cfg.join and cfg.auto_restore and cfg.bootstrap_expect == 0:
        raise FlagError("auto-restoring cannot be used when joining a cluster", "auto-restore")
    if cfg.disco_mode and cfg.disco_mode not in _DISCO_MODES:
        raise FlagError(
            f"-disco-mode {cfg.disco_mode!r} is not one of {', '.join(_DISCO_MODES)}",
            "disco-mode",
        )
    if cfg.disco_mode in ("consul-kv", "etcd-kv") and cfg.bootstrap_expect > 0:
        raise FlagError(
            f"bootstrapping not applicable when using {cfg.disco_mode}", "bootstrap-expect"
        )
    is_voter = not cfg.raft_non_voter
    if cfg.disco_mode in ("dns", "dns-srv") and cfg.bootstrap_expect == 0 and is_voter:
        raise FlagError(
            f"-bootstrap-expect value required when using {cfg.disco_mode} with a voting node",
            "bootstrap-expect",
        )
    if cfg.cdc_config and cfg.raft_non_voter:
        raise FlagError("CDC cannot be enabled on a non-voting node", "cdc-config")


def _validate_raft(cfg: NodeConfig) -> None:
    if cfg.raft_log_level.upper() not in _RAFT_LOG_LEVELS:
        raise FlagError(
            f"-raft-log-level {cfg.raft_log_level!r} is not one of ERROR, WARN, INFO, DEBUG",
            "raft-log-level",
        )
    minimum = 0.005  # hashicorp/raft ValidateConfig
    if cfg.raft_heartbeat_timeout_s < minimum:
        raise FlagError("-raft-heartbeat-timeout must be at least 5ms", "raft-heartbeat-timeout")
    if cfg.raft_election_timeout_s < minimum:
        raise FlagError("-raft-election-timeout must be at least 5ms", "raft-election-timeout")
    if cfg.raft_election_timeout_s < cfg.raft_heartbeat_timeout_s:
        raise FlagError(
            "-raft-election-timeout must be equal to or greater than -raft-heartbeat-timeout",
            "raft-election-timeout",
        )
    if cfg.raft_commit_timeout_s < 0.001:
        raise FlagError("-raft-commit-timeout must be at least 1ms", "raft-commit-timeout")
    lease = cfg.raft_leader_lease_timeout_s
    if lease and not minimum <= lease <= cfg.raft_heartbeat_timeout_s:
        raise FlagError(
            "-raft-leader-lease-timeout must be 0s or between 5ms and -raft-heartbeat-timeout",
            "raft-leader-lease-timeout",
        )


# --------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------


def _default_text(flag: _Flag) -> str:
    default = _DEFAULTS[flag.field]
    if flag.kind is _Kind.DURATION:
        assert isinstance(default, float)
        return format_duration(default)
    if flag.kind is _Kind.BOOL:
        return "true" if default else "false"
    if flag.kind is _Kind.LIST:
        assert isinstance(default, tuple)
        return f'"{",".join(default)}"'
    if flag.kind is _Kind.STRING:
        return f'"{default}"'
    return str(default)


_DERIVED = {
    "node-id": "advertised Raft address",
    "http-adv-addr": "same as -http-addr",
    "raft-adv-addr": "same as -raft-addr",
}


def usage() -> str:
    """The help text: every flag, its default, a one-line description."""
    lines = [
        "rqlite-py: a replicated SQLite database service, compatible with rqlite.",
        "",
        "Usage: rqlite-py [flags] [<data directory>]",
        "       rqlite-py shell [shell flags]   (the interactive client; rqlite-py shell -h)",
        "",
        f"The data directory defaults to ./{DEFAULT_DATA_DIR} (an rqlite-py extension).",
        "Flags take one or two dashes; booleans are -flag or -flag=false.",
        "",
    ]
    for name in flag_names():
        flag = _BY_NAME[name]
        type_name = "value" if flag.kind is _Kind.LIST else flag.kind.value
        head = f"  -{name} {type_name}" if type_name else f"  -{name}"
        default = _DERIVED.get(name, _default_text(flag))
        lines.append(head)
        lines.append(f"    \t{flag.help} (default {default})")
    return "\n".join(lines) + "\n"
