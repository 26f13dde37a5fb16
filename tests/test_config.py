"""`rqlited` command-line parsing (shared/API.md §g), Go `flag` semantics."""

from __future__ import annotations

import dataclasses

import pytest

from rqlite_py.config import (
    DEFAULT_DATA_DIR,
    IMPLEMENTED_FLAGS,
    FlagError,
    HelpRequested,
    NodeConfig,
    flag_names,
    format_duration,
    parse_args,
    parse_duration,
    usage,
    validate,
)

# --------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("300us", 0.0003),
        ("300\u00b5s", 0.0003),  # micro sign
        ("300\u03bcs", 0.0003),  # greek mu
        ("10ns", 1e-8),
        ("0", 0.0),
        ("0s", 0.0),
        ("0h", 0.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("+2s", 2.0),
        ("1h1m1.5s", 3661.5),
        ("24h", 86400.0),
    ],
)
def test_parse_duration_valid(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("1", "missing unit"),
        ("1.5", "missing unit"),
        ("1d", 'unknown unit "d"'),
        ("1ss", 'unknown unit "ss"'),
        ("s", "invalid duration"),
        (".s", "invalid duration"),
        (" 1s", "invalid duration"),
        ("1s ", 'unknown unit "s "'),
        ("-1s", "negative"),
        ("-500ms", "negative"),
        ("-1ns", "negative"),
        ("9999999999h", "out of range"),
    ],
)
def test_parse_duration_invalid(text: str, message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_duration(text)


def test_flag_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration("bogus")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (1e-9, "1ns"),
        (1.5e-6, "1.5\u00b5s"),
        (0.05, "50ms"),
        (1.5, "1.5s"),
        (90.0, "1m30s"),
        (120.0, "2m0s"),
        (86400.0, "24h0m0s"),
    ],
)
def test_format_duration_matches_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


# --------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------

EXPECTED_DEFAULTS: dict[str, object] = {
    "data_dir": "rqlite-data",
    "show_version": False,
    "http_addr": "localhost:4001",
    "raft_addr": "localhost:4002",
    "http_allow_origin": "",
    "join": (),
    "join_attempts": 5,
    "join_interval_s": 3.0,
    "join_as": "",
    "sql_allow_external": False,
    "bootstrap_expect": 0,
    "bootstrap_expect_timeout_s": 120.0,
    "disco_mode": "",
    "disco_key": "rqlite",
    "disco_config": "",
    "raft_log_level": "WARN",
    "raft_non_voter": False,
    "raft_snap": 8192,
    "raft_snap_interval_s": 10.0,
    "raft_snap_wal_size_bytes": 4194304,
    "raft_heartbeat_timeout_s": 1.0,
    "raft_election_timeout_s": 1.0,
    "raft_commit_timeout_s": 0.05,
    "raft_leader_lease_timeout_s": 0.0,
    "raft_apply_timeout_s": 10.0,
    "raft_remove_shutdown": False,
    "raft_cluster_remove_shutdown": False,
    "raft_shutdown_stepdown": True,
    "raft_reap_node_timeout_s": 0.0,
    "raft_reap_read_only_node_timeout_s": 0.0,
    "cluster_connect_timeout_s": 30.0,
    "compress_snap_transport": False,
    "write_queue_capacity": 1024,
    "write_queue_batch_size": 128,
    "write_queue_timeout_s": 0.05,
    "write_queue_tx": False,
    "fk": False,
    "db_max_ro_conns": 256,
    "auto_vacuum_interval_s": 0.0,
    "auto_optimize_interval_s": 86400.0,
    "extensions_path": (),
    "auth": "",
    "http_cert": "",
    "http_key": "",
    "http_ca_cert": "",
    "http_verify_client": False,
    "http_verify_common_name": "",
    "node_cert": "",
    "node_key": "",
    "node_ca_cert": "",
    "node_no_verify": False,
    "node_verify_client": False,
    "node_verify_server_name": "",
    "node_verify_common_name": "",
    "auto_backup": "",
    "auto_restore": "",
    "cdc_config": "",
    "otlp_endpoint": "",
    "otlp_interval_s": 30.0,
    "otlp_ca_cert": "",
    "otlp_cert": "",
    "otlp_key": "",
    "cpu_profile": "",
    "mem_profile": "",
    "trace_profile": "",
    "http_max_body_bytes": 64 * 1024 * 1024,
    # derived
    "http_adv_addr": "localhost:4001",
    "raft_adv_addr": "localhost:4002",
    "node_id": "localhost:4002",
}


def test_defaults_match_the_contract() -> None:
    cfg, warnings = parse_args([])
    assert warnings == []
    assert {f.name for f in dataclasses.fields(cfg)} == set(EXPECTED_DEFAULTS)
    for name, value in EXPECTED_DEFAULTS.items():
        assert getattr(cfg, name) == value, name
    assert cfg.data_dir == DEFAULT_DATA_DIR


def test_node_config_is_frozen() -> None:
    cfg = NodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.http_addr = "x:1"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["-raft-addr", "10.0.0.1:4002"],
            {"raft_adv_addr": "10.0.0.1:4002", "node_id": "10.0.0.1:4002"},
        ),
        (
            ["-raft-addr", "0.0.0.0:4002", "-raft-adv-addr", "host1:4002"],
            {"raft_adv_addr": "host1:4002", "node_id": "host1:4002"},
        ),
        (
            ["-raft-adv-addr", "host1:4002", "-node-id", "n1"],
            {"node_id": "n1", "raft_addr": "localhost:4002"},
        ),
        (
            ["-http-addr", "0.0.0.0:4001", "-http-adv-addr", "host1:4001"],
            {"http_addr": "0.0.0.0:4001", "http_adv_addr": "host1:4001"},
        ),
        (["-http-addr", "127.0.0.1:5001"], {"http_adv_addr": "127.0.0.1:5001"}),
    ],
)
def test_derived_defaults(argv: list[str], expected: dict[str, str]) -> None:
    cfg, _ = parse_args(argv)
    for name, value in expected.items():
        assert getattr(cfg, name) == value, name


# --------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["-http-addr", "h:1", "data"],
        ["--http-addr", "h:1", "data"],
        ["-http-addr=h:1", "data"],
        ["--http-addr=h:1", "data"],
        ["-http-addr", "x:9", "-http-addr=h:1", "data"],  # last one wins
        ["-http-addr=h:1", "--", "data"],
    ],
)
def test_flag_syntax_forms(argv: list[str]) -> None:
    cfg, _ = parse_args(argv)
    assert cfg.http_addr == "h:1"
    assert cfg.data_dir == "data"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-fk"], True),
        (["--fk"], True),
        (["-fk=true"], True),
        (["-fk=1"], True),
        (["-fk=t"], True),
        (["-fk=T"], True),
        (["-fk=TRUE"], True),
        (["-fk=True"], True),
        (["-fk=false"], False),
        (["-fk=0"], False),
        (["-fk=f"], False),
        (["-fk=F"], False),
        (["-fk=FALSE"], False),
        (["-fk=False"], False),
        (["-fk", "-fk=false"], False),
    ],
)
def test_booleans(argv: list[str], expected: bool) -> None:
    cfg, _ = parse_args(argv)
    assert cfg.fk is expected


def test_default_true_boolean_can_be_turned_off() -> None:
    cfg, _ = parse_args(["-raft-shutdown-stepdown=false"])
    assert cfg.raft_shutdown_stepdown is False


def test_bare_boolean_never_consumes_the_next_argument() -> None:
    cfg, _ = parse_args(["-fk", "false"])
    assert cfg.fk is True
    assert cfg.data_dir == "false"


def test_flags_stop_at_the_first_positional() -> None:
    with pytest.raises(FlagError, match="flags must come before the data directory"):
        parse_args(["data", "-fk"])


def test_double_dash_ends_flags() -> None:
    cfg, _ = parse_args(["--", "-data"])
    assert cfg.data_dir == "-data"
    assert cfg.fk is False


def test_single_dash_is_a_positional() -> None:
    cfg, _ = parse_args(["-"])
    assert cfg.data_dir == "-"


def test_value_may_start_with_a_dash() -> None:
    cfg, _ = parse_args(["-node-id", "-n1"])
    assert cfg.node_id == "-n1"


def test_empty_value_with_equals() -> None:
    cfg, _ = parse_args(["-node-id=", "-raft-addr", "h:2"])
    assert cfg.node_id == "h:2"


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["-join-attempts", "7"], "join_attempts", 7),
        (["-join-attempts=0x10"], "join_attempts", 16),
        (["-join-attempts=017"], "join_attempts", 15),  # Go base 0: octal
        (["-join-attempts=0b11"], "join_attempts", 3),
        (["-join-attempts=1_000"], "join_attempts", 1000),
        (["-join-attempts=+3"], "join_attempts", 3),
        (["-raft-snap", "100"], "raft_snap", 100),
        (["-raft-snap-wal-size=0"], "raft_snap_wal_size_bytes", 0),
        (["-db-max-ro-conns=0"], "db_max_ro_conns", 0),
        (["-http-max-body-bytes=1024"], "http_max_body_bytes", 1024),
        (["-join-interval", "500ms"], "join_interval_s", 0.5),
        (["-raft-snap-int=1m"], "raft_snap_interval_s", 60.0),
        (["-auto-optimize-int=0h"], "auto_optimize_interval_s", 0.0),
        (["-write-queue-timeout=10ms"], "write_queue_timeout_s", 0.01),
        (["-raft-log-level", "DEBUG"], "raft_log_level", "DEBUG"),
        (["-disco-key=k"], "disco_key", "k"),
        (["-version"], "show_version", True),
        (["-sql-allow-external"], "sql_allow_external", True),
        (["-otlp-interval=1m"], "otlp_interval_s", 60.0),
    ],
)
def test_typed_values(argv: list[str], field: str, value: object) -> None:
    cfg, _ = parse_args(argv)
    assert getattr(cfg, field) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a:4002", ("a:4002",)),
        ("a:4002,b:4002,c:4002", ("a:4002", "b:4002", "c:4002")),
        ("a:4002, b:4002", ("a:4002", "b:4002")),
        ("a:4002,", ("a:4002",)),
        ("", ()),
    ],
)
def test_join_list_splitting(text: str, expected: tuple[str, ...]) -> None:
    cfg, _ = parse_args(["-join", text])
    assert cfg.join == expected


def test_extensions_path_is_a_list() -> None:
    cfg, _ = parse_args(["-extensions-path=/a,/b.zip"])
    assert cfg.extensions_path == ("/a", "/b.zip")


# --------------------------------------------------------------------------
# Parse errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message", "flag"),
    [
        (["-no-such-flag"], "flag provided but not defined: -no-such-flag", "no-such-flag"),
        (["--no-such-flag=1"], "flag provided but not defined: -no-such-flag", "no-such-flag"),
        (["-raft-timeout=1s"], "renamed -raft-heartbeat-timeout", "raft-timeout"),
        (["-on-disk"], "removed in rqlite v10", "on-disk"),
        (["-http-addr"], "flag needs an argument: -http-addr", "http-addr"),
        (["-fk", "-join-interval"], "flag needs an argument: -join-interval", "join-interval"),
        (
            ["-join-attempts", "five"],
            'invalid value "five" for flag -join-attempts',
            "join-attempts",
        ),
        (["-join-attempts="], 'invalid value "" for flag -join-attempts', "join-attempts"),
        (["-join-attempts=1.5"], "parse error", "join-attempts"),
        (["-join-attempts=08"], "parse error", "join-attempts"),
        (["-join-attempts=1__0"], "parse error", "join-attempts"),
        (["-join-attempts=-1"], "must not be negative", "join-attempts"),
        (["-join-attempts=9223372036854775808"], "out of range", "join-attempts"),
        (["-raft-snap=+5"], "parse error", "raft-snap"),
        (["-raft-snap=-5"], "parse error", "raft-snap"),
        (["-join-interval", "3"], "missing unit", "join-interval"),
        (["-join-interval=3x"], 'unknown unit "x"', "join-interval"),
        (["-raft-apply-timeout=-1s"], "negative", "raft-apply-timeout"),
        (["-fk=yes"], 'invalid boolean value "yes" for -fk', "fk"),
        (["-fk="], 'invalid boolean value "" for -fk', "fk"),
        (["-fk=tRuE"], "invalid boolean value", "fk"),
    ],
)
def test_parse_errors_name_the_flag(argv: list[str], message: str, flag: str) -> None:
    with pytest.raises(FlagError, match=message) as info:
        parse_args(argv)
    assert info.value.flag == flag
    assert f"-{flag}" in str(info.value)


@pytest.mark.parametrize("arg", ["---http-addr=x", "-=x", "--=x"])
def test_bad_flag_syntax(arg: str) -> None:
    with pytest.raises(FlagError, match="bad flag syntax"):
        parse_args([arg])


def test_two_positionals_rejected() -> None:
    with pytest.raises(FlagError, match=r"arguments after data directory \(d1\).*\(d2\)"):
        parse_args(["d1", "d2"])


def test_empty_data_dir_rejected() -> None:
    with pytest.raises(FlagError, match="data directory"):
        parse_args([""])


@pytest.mark.parametrize("arg", ["-h", "-help", "--help", "--h", "-h=false"])
def test_help_requested(arg: str) -> None:
    with pytest.raises(HelpRequested) as info:
        parse_args(["-fk", arg, "-no-such-flag"])
    assert info.value.usage == usage()
    assert "Usage: rqlite-py [flags]" in info.value.usage
    assert "rqlite-py shell" in info.value.usage


def test_help_is_not_a_flag_error() -> None:
    assert not issubclass(HelpRequested, FlagError)


def test_version_skips_validation() -> None:
    cfg, _ = parse_args(["-version", "-http-addr", "localhost:4002"])
    assert cfg.show_version is True
    with pytest.raises(FlagError):
        parse_args(["-http-addr", "localhost:4002"])


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-http-addr", "localhost:4002"], "HTTP and Raft addresses must differ"),
        (
            ["-http-adv-addr", "h:1", "-raft-adv-addr", "h:1"],
            "advertised HTTP and Raft addresses must differ",
        ),
        (["-http-addr", "http://localhost:4001"], "should not include a scheme"),
        (["-http-adv-addr", "https://h:4001"], "should not include a scheme"),
        (["-raft-addr", "http://localhost:4002"], "should not include a scheme"),
        (["-raft-adv-addr", "HTTP://h:4002"], "should not include a scheme"),
        (["-http-addr", "0.0.0.0:4001"], r"not routable \(0.0.0.0\).*-http-adv-addr"),
        (["-raft-addr", "0.0.0.0:4002"], r"not routable \(0.0.0.0\).*-raft-adv-addr"),
        (["-raft-addr", "[::]:4002"], r"not routable \(::\)"),
        (["-raft-adv-addr", "0.0.0.0:4002"], "not routable"),
        (["-http-adv-addr", "[::]:4001"], "not routable"),
        (["-raft-addr", "localhost"], "want host:port"),
        (["-http-addr", "a:b:4001"], "want host:port"),
        (["-http-addr", "[::1:4001"], "want host:port"),
        (["-raft-addr", "localhost:http"], "invalid port"),
        (["-raft-addr", "localhost:65536"], "invalid port"),
        (["-http-addr", "localhost:"], "invalid port"),
        (["-raft-addr", "localhost:0"], "port 0"),
        (["-raft-non-voter", "-bootstrap-expect", "3"], "only applicable to voting nodes"),
        (["-join", "a:4002", "-disco-mode", "dns"], "-disco-mode cannot be used"),
        (["-join", "http://a:4001"], "should not include a scheme"),
        (["-join", "a"], "invalid join address"),
        (["-join", "a:x"], "invalid join address"),
        (["-join", "localhost:4002"], "cannot join with itself"),
        (["-join", "a:4002", "-auto-restore", "r.json"], "auto-restoring cannot be used"),
        (["-disco-mode", "zookeeper"], "is not one of"),
        (["-disco-mode", "etcd-kv", "-bootstrap-expect", "3"], "not applicable"),
        (["-disco-mode", "dns"], "-bootstrap-expect value required"),
        (["-http-cert", "c.pem"], "both -http-cert and -http-key"),
        (["-http-key", "k.pem"], "both -http-cert and -http-key"),
        (["-node-cert", "c.pem"], "both -node-cert and -node-key"),
        (["-node-key", "k.pem"], "both -node-cert and -node-key"),
        (["-http-verify-common-name", "cn"], "requires -http-verify-client"),
        (["-join-as", "bob"], "-join-as requires -auth"),
        (["-node-ca-cert", "ca.pem"], "-node-ca-cert requires -node-cert"),
        (["-node-no-verify"], "-node-no-verify requires -node-cert"),
        (["-http-verify-client"], "-http-verify-client requires -http-cert"),
        (["-http-ca-cert", "ca.pem"], "-http-ca-cert requires -http-cert"),
        (["-raft-non-voter", "-cdc-config", "stdout"], "CDC cannot be enabled"),
        (["-raft-log-level", "LOUD"], "-raft-log-level"),
        (["-raft-heartbeat-timeout", "1ms"], "at least 5ms"),
        (["-raft-election-timeout", "0s"], "at least 5ms"),
        (["-raft-heartbeat-timeout", "2s"], "equal to or greater than"),
        (["-raft-commit-timeout", "0s"], "at least 1ms"),
        (["-raft-leader-lease-timeout", "2s"], "-raft-leader-lease-timeout"),
    ],
)
def test_validation_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError, match=message):
        parse_args(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["-http-addr", "0.0.0.0:4001", "-http-adv-addr", "h:4001"],
        ["-raft-addr", "[::]:4002", "-raft-adv-addr", "[2001:db8::1]:4002"],
        ["-http-addr", ":4001"],
        ["-raft-addr", "127.0.0.1:0", "-raft-adv-addr", "127.0.0.1:4002"],
        ["-join", "localhost:4002", "-bootstrap-expect", "3"],
        ["-join", "[2001:db8::1]:4002"],
        ["-disco-mode", "dns", "-bootstrap-expect", "3"],
        ["-disco-mode", "dns-srv", "-raft-non-voter"],
        ["-disco-mode", "consul-kv"],
        ["-raft-log-level", "debug"],
        ["-raft-leader-lease-timeout", "500ms"],
        ["-raft-heartbeat-timeout", "100ms", "-raft-election-timeout", "100ms"],
        ["-raft-non-voter"],
    ],
)
def test_valid_combinations(argv: list[str]) -> None:
    parse_args(argv)


@pytest.mark.parametrize(
    "cfg",
    [
        NodeConfig(http_cert="c.pem", http_key="k.pem"),
        NodeConfig(node_cert="c.pem", node_key="k.pem"),
        NodeConfig(
            http_cert="c.pem",
            http_key="k.pem",
            http_verify_client=True,
            http_verify_common_name="cn",
        ),
    ],
)
def test_valid_tls_combinations(cfg: NodeConfig) -> None:
    validate(cfg)


def test_validate_catches_directly_built_configs() -> None:
    validate(NodeConfig())
    with pytest.raises(FlagError, match="-join-interval must not be negative"):
        validate(NodeConfig(join_interval_s=-1.0))
    with pytest.raises(FlagError, match="HTTP and Raft addresses must differ"):
        validate(NodeConfig(http_addr="h:1", raft_addr="h:1"))


# --------------------------------------------------------------------------
# Warnings for flags rqlite-py does not implement yet
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["-disco-mode", "dns", "-bootstrap-expect", "3"], "disco-mode"),
        (["-auto-optimize-int", "1h"], "auto-optimize-int"),
        (["-extensions-path", "ext"], "extensions-path"),
        (["-auto-vacuum-int", "1h"], "auto-vacuum-int"),
        (["-raft-commit-timeout", "10ms"], "raft-commit-timeout"),
        (["-cdc-config", "stdout"], "cdc-config"),
        (["-otlp-endpoint", "http://collector:4318"], "otlp-endpoint"),
        (["-cpu-profile", "cpu.out"], "cpu-profile"),
    ],
)
def test_warning_for_unimplemented_flag(argv: list[str], flag: str) -> None:
    _, warnings = parse_args(argv)
    assert warnings == [f"flag -{flag} is accepted but not implemented yet; ignored"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-raft-snap", "8192", "-join-interval", "3s", "-raft-shutdown-stepdown"],
        ["-disco-key=rqlite", "-auto-optimize-int=24h", "-write-queue-timeout=50ms"],
        ["-write-queue-capacity=10", "-write-queue-batch-size=2", "-write-queue-timeout=1s"],
        ["-write-queue-tx"],
        ["-node-id", "n1", "-http-addr", "h:1", "-raft-addr", "h:2", "-fk"],
        ["-raft-heartbeat-timeout=2s", "-raft-election-timeout=2s", "-raft-apply-timeout=1s"],
        ["-raft-log-level=INFO", "-http-max-body-bytes=1", "-db-max-ro-conns=1", "d"],
    ],
)
def test_no_warning_for_defaults_or_implemented_flags(argv: list[str]) -> None:
    _, warnings = parse_args(argv)
    assert warnings == []


def test_one_warning_per_flag_in_command_line_order() -> None:
    _, warnings = parse_args(["-cdc-config=a", "-extensions-path=a", "-cdc-config=b", "-fk"])
    assert warnings == [
        "flag -cdc-config is accepted but not implemented yet; ignored",
        "flag -extensions-path is accepted but not implemented yet; ignored",
    ]


def test_implemented_flags_are_real_flags() -> None:
    assert IMPLEMENTED_FLAGS.issubset(flag_names())
    assert "http-max-body-bytes" in IMPLEMENTED_FLAGS
    assert "auth" in IMPLEMENTED_FLAGS and "cdc-config" not in IMPLEMENTED_FLAGS


# --------------------------------------------------------------------------
# Usage
# --------------------------------------------------------------------------

CONTRACT_FLAGS = (
    "node-id",
    "http-addr",
    "http-adv-addr",
    "raft-addr",
    "raft-adv-addr",
    "join",
    "join-attempts",
    "join-interval",
    "join-as",
    "bootstrap-expect",
    "bootstrap-expect-timeout",
    "disco-mode",
    "disco-key",
    "disco-config",
    "raft-non-voter",
    "raft-snap",
    "raft-snap-int",
    "raft-snap-wal-size",
    "raft-heartbeat-timeout",
    "raft-election-timeout",
    "raft-commit-timeout",
    "raft-leader-lease-timeout",
    "raft-apply-timeout",
    "raft-remove-shutdown",
    "raft-cluster-remove-shutdown",
    "raft-shutdown-stepdown",
    "raft-reap-node-timeout",
    "raft-reap-read-only-node-timeout",
    "raft-log-level",
    "cluster-connect-timeout",
    "compress-snap-transport",
    "write-queue-capacity",
    "write-queue-batch-size",
    "write-queue-timeout",
    "write-queue-tx",
    "fk",
    "db-max-ro-conns",
    "auto-vacuum-int",
    "auto-optimize-int",
    "extensions-path",
    "auth",
    "http-cert",
    "http-key",
    "http-ca-cert",
    "http-verify-client",
    "http-verify-common-name",
    "http-allow-origin",
    "node-cert",
    "node-key",
    "node-ca-cert",
    "node-no-verify",
    "node-verify-client",
    "node-verify-server-name",
    "node-verify-common-name",
    "auto-backup",
    "auto-restore",
    "cdc-config",
    "otlp-endpoint",
    "otlp-interval",
    "cpu-profile",
    "mem-profile",
    "trace-profile",
    "version",
    "http-max-body-bytes",
)


def test_every_contract_flag_is_accepted() -> None:
    assert set(CONTRACT_FLAGS) <= set(flag_names())


@pytest.mark.parametrize("name", CONTRACT_FLAGS)
def test_usage_lists_every_flag(name: str) -> None:
    assert f"\n  -{name}" in usage()


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("http-addr", '(default "localhost:4001")'),
        ("join-interval", "(default 3s)"),
        ("auto-optimize-int", "(default 24h0m0s)"),
        ("raft-shutdown-stepdown", "(default true)"),
        ("raft-snap", "(default 8192)"),
        ("write-queue-timeout", "(default 50ms)"),
        ("node-id", "(default advertised Raft address)"),
    ],
)
def test_usage_shows_defaults(name: str, default: str) -> None:
    lines = usage().splitlines()
    index = next(i for i, line in enumerate(lines) if line.split()[:1] == [f"-{name}"])
    assert lines[index + 1].strip().endswith(default)
