"""The queue's gauges in Prometheus text: what a worker's `/metrics` adds to the service's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from powerx_governance.jobs.interface import QueueStats


def render_queue_metrics(stats: QueueStats, ticks: int | None = None) -> bytes:
    """`version_queue_depth`, `version_queue_jobs{state}`, `version_queue_oldest_waiting_seconds`, and
    for a worker `version_queue_ticks_total` (periodic ticks this process ran)."""
    registry = CollectorRegistry()
    Gauge("version_queue_depth", "Jobs due and waiting for a worker", registry=registry).set(stats.depth)
    jobs = Gauge("version_queue_jobs", "Jobs in the queue by state", ["state"], registry=registry)
    for state, count in stats.by_state.items():
        jobs.labels(state=state).set(count)
    Gauge(
        "version_queue_oldest_waiting_seconds",
        "How long the longest-waiting due job has waited",
        registry=registry,
    ).set(stats.oldest_waiting_seconds)
    if ticks is not None:
        Counter(
            "version_queue_ticks",
            "Periodic ticks this worker ran (once per period in the cluster)",
            registry=registry,
        ).inc(ticks)
    return generate_latest(registry)
