"""Prometheus metrics: one registry per app (tests build many apps in one process).

Observed per event, never per reader, so the cost does not grow with fan-out.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, active_streams: Callable[[], float]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge("ail_streams_active", "Streams being produced by this instance", registry=r)
        self.active.set_function(active_streams)
        self.started = Counter("ail_streams_started_total", "Streams started", ["block_type"], registry=r)
        self.ended = Counter("ail_streams_ended_total", "Streams ended, by how", ["status"], registry=r)
        self.errors = Counter("ail_stream_errors_total", "Error events, by code", ["code"], registry=r)
        self.ttft = Histogram(
            "ail_time_to_first_token_seconds", "Stream start to first token event", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.gap = Histogram(
            "ail_inter_token_gap_seconds",
            "Time between token events of a stream (every 16th token)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter("ail_resumes_total", "Readers that resumed with a cursor", ["outcome"], registry=r)
        self.log_latency = Histogram(
            "ail_log_append_seconds",
            "Time to append one event to the stream log (every 16th event)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.shared = Counter(
            "ail_shared_generation_requests_total",
            "Requests under SHARED_GENERATIONS, by how their generation was found: new (a model call), "
            "running (joined), complete (replayed)",
            ["found"],
            registry=r,
        )
        self.readers_dropped = Counter(
            "ail_readers_dropped_total", "Readers disconnected by the server", ["reason"], registry=r
        )
