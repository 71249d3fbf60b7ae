"""Prometheus metrics: request counts and latencies, micro-batch queue depth and sizes, job states.

Each app gets its own CollectorRegistry (tests build several apps in one process). Job states are read
from the store at scrape time, so they are right after a restart and across processes sharing a database.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .store import JobStore

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class _JobStates(Collector):
    """noble_jobs{kind,state}: counted in the store when scraped."""

    def __init__(self, store_ref: "list[JobStore | None]") -> None:
        self._store_ref = store_ref

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily("noble_jobs", "Jobs in the store by kind and state", labels=["kind", "state"])
        store = self._store_ref[0]
        if store is not None:
            try:
                for (kind, state), n in sorted(store.counts().items()):
                    fam.add_metric([kind, state], n)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the DB hiccupped
                log.warning("job-state metrics unavailable: %s", exc)
        yield fam


class Metrics:
    """All metrics of one app instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("noble_http_requests", "HTTP requests by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("noble_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("noble_http_requests_in_flight", "Requests being served", registry=r)
        self.queue_rows = Gauge("noble_batch_queue_rows", "Neurons waiting for a forward pass", ["surrogate"],
                                registry=r)
        self.queue_requests = Gauge("noble_batch_queue_requests", "Requests waiting for a forward pass",
                                    ["surrogate"], registry=r)
        self.batch_rows = Histogram("noble_batch_size_rows", "Neurons per forward pass", ["surrogate"],
                                    buckets=_ROW_BUCKETS, registry=r)
        self.batch_requests = Histogram("noble_batch_size_requests", "Requests merged into one forward pass",
                                        ["surrogate"], buckets=_ROW_BUCKETS, registry=r)
        self.forward_seconds = Histogram("noble_forward_seconds", "Surrogate forward-pass time", ["surrogate"],
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.simulate_pending = Gauge("noble_simulate_pending", "Brian2 simulations queued or running", registry=r)
        self.simulate_seconds = Histogram("noble_simulate_seconds", "Brian2 /v1/simulate run time",
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.jobs_submitted = Counter("noble_jobs_submitted", "Jobs submitted by kind", ["kind"], registry=r)
        self._store_ref: list[JobStore | None] = [None]
        r.register(_JobStates(self._store_ref))

    def bind_store(self, store: "JobStore | None") -> None:
        self._store_ref[0] = store
