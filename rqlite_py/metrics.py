"""One node's Prometheus metrics, served at /metrics (an extension: rqlite
has only /debug/vars).

The series are kept by prometheus_client, the Prometheus project's own
library, so the text format is the one every scraper reads. Counters and
histograms are updated where the work happens (the Raft loop, the log
store's fsync, the state machine, the HTTP server); values that are
already known elsewhere (term, indexes, sizes) are read at scrape time
instead of being copied on every change.

Each node has its own registry: tests run several nodes in one process,
and the library's global one would mix them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# A `_created` series beside every counter doubles what is scraped and
# says only when the process started, which process_start_time_seconds
# already does.
disable_created_metrics()

# The classic text format: every Prometheus version and agent reads it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# Disk and SQLite latencies: from a fast SSD's fsync (~0.1 ms) to a
# stalled disk (seconds).
_IO_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
# Snapshots copy the whole database: up to minutes for a large one.
_SNAPSHOT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Reading:
    """A value read at scrape time: a gauge, or a counter that something
    else keeps (`counter=True`; its name then lacks the `_total`)."""

    name: str
    help: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    counter: bool = False


class _ReadAtScrape(Collector):
    def __init__(self, read: Callable[[], Iterable[Reading]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for r in self._read():
            fam = families.get(r.name)
            if fam is None:
                kind = CounterMetricFamily if r.counter else GaugeMetricFamily
                fam = families[r.name] = kind(r.name, r.help, labels=list(r.labels))
            fam.add_metric(list(r.labels.values()), r.value)
        return families.values()


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Resident memory, CPU seconds, open files: what an operator checks
        # first (Linux only; elsewhere the collector yields nothing).
        ProcessCollector(registry=r)
        self.proposals = Counter(
            "rqlite_raft_proposals",
            "Entries appended to the log by this node as leader (writes and configuration changes)",
            registry=r,
        )
        self.proposals_refused = Counter(
            "rqlite_raft_proposals_refused",
            "Proposals refused by Raft (not leader, a transfer in progress)",
            registry=r,
        )
        self.leader_changes = Counter(
            "rqlite_raft_leader_changes",
            "Times this node learned of a new leader (a new term with a leader, itself included)",
            registry=r,
        )
        self.log_fsync_seconds = Histogram(
            "rqlite_raft_log_fsync_seconds",
            "Writing a batch of log entries and Raft state to disk, fsync included",
            buckets=_IO_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            "rqlite_fsm_apply_seconds",
            "Applying one committed log entry to SQLite",
            buckets=_IO_BUCKETS,
            registry=r,
        )
        self.snapshot_seconds = Histogram(
            "rqlite_snapshot_seconds",
            "Taking a snapshot, from the checkpoint to the compacted log",
            buckets=_SNAPSHOT_BUCKETS,
            registry=r,
        )
        self.snapshot_pause_seconds = Histogram(
            "rqlite_snapshot_write_pause_seconds",
            "How long a snapshot held writes back (the WAL checkpoint)",
            buckets=_IO_BUCKETS,
            registry=r,
        )
        self.snapshots_failed = Counter(
            "rqlite_snapshots_failed", "Snapshots abandoned (a disk error)", registry=r
        )
        self.http_requests = Counter(
            "rqlite_http_requests",
            "HTTP requests answered, by endpoint and status code",
            ["endpoint", "code"],
            registry=r,
        )
        self.http_seconds = Histogram(
            "rqlite_http_request_seconds",
            "From a request's arrival to its reply, by endpoint",
            ["endpoint"],
            buckets=_IO_BUCKETS,
            registry=r,
        )
        self._http_series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def read_at_scrape(self, read: Callable[[], Iterable[Reading]]) -> None:
        """Gauges whose values `read` gives when /metrics is asked."""
        self.registry.register(_ReadAtScrape(read))

    def observe_http(self, endpoint: str, code: int, seconds: float) -> None:
        """Called on the event loop for every request: the labelled series
        are looked up once (the library's lookup takes a lock each time)."""
        series = self._http_series.get((endpoint, code))
        if series is None:
            # An unrouted path counts as "none": the label never takes a
            # value from the client, so a scan of random paths adds no series.
            label = endpoint or "none"
            series = self._http_series[(endpoint, code)] = (
                self.http_requests.labels(label, str(code)),
                self.http_seconds.labels(label),
            )
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
