"""Prometheus metrics with the DESIGN §6 names, one registry per service instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scan_coverage_rate = Gauge(
            "version_scan_coverage_rate",
            "Share of selected tenants scanned by the last finished scan",
            registry=r,
        )
        self.scan_failure_total = Counter(
            "version_scan_failure_total",
            "Scans that failed or finished below the coverage minimum",
            ["kind"],
            registry=r,
        )
        self.scan_duration_seconds = Histogram(
            "version_scan_duration_seconds",
            "Scan duration",
            ["kind"],
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
        )
        self.scan_consecutive_failures = Gauge(
            "version_scan_consecutive_failures",
            "Unsuccessful scans in a row (alert at escalation_after)",
            registry=r,
        )
        self.source_errors_total = Counter(
            "version_source_errors_total",
            "Errors talking to sources (per attempt)",
            ["source", "kind"],
            registry=r,
        )
        self.recommendation_changes_total = Counter(
            "version_recommendation_changes_total", "Recommendation changes written", ["change"], registry=r
        )
        self.recommendation_push_latency_ms = Histogram(
            "version_recommendation_push_latency_ms",
            "From the triggering data's arrival to the updated recommendation (and later its delivery)",
            registry=r,
            buckets=(50, 100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000),
        )
        self.recommendation_accept_rate = Gauge(
            "version_recommendation_accept_rate",
            "Share of resolved recommendations whose target was reached",
            registry=r,
        )
        self.recommendation_ignore_total = Counter(
            "version_recommendation_ignore_total", "Recommendations ignored by admins", ["scope"], registry=r
        )
        self.alerts_total = Counter("version_alerts_total", "Operational alerts raised", ["kind"], registry=r)
        self.sla_breaches_total = Counter(
            "version_sla_breaches_total",
            "SLA breaches: missed schedules, critical patches past deadline",
            ["kind"],
            registry=r,
        )
        self.decisions_total = Counter("version_decisions_total", "Decisions taken", ["decision"], registry=r)
        self.feature_flag_enabled = Gauge(
            "version_feature_flag_enabled", "1 when the feature flag is on", ["flag"], registry=r
        )
        self.policy_version = Gauge(
            "version_policy_version", "The policy version the last finished scan evaluated with", registry=r
        )
        self.events_delivered_total = Counter(
            "version_events_delivered_total", "Events delivered to subscribed webhooks", registry=r
        )
        self.event_delivery_failures_total = Counter(
            "version_event_delivery_failures_total", "Failed event delivery attempts (requests)", registry=r
        )
        self.scan_tenants_stale = Gauge(
            "version_scan_tenants_stale",
            "Tenants the last scan evaluated from their last good manifest (theirs could not be read)",
            registry=r,
        )

        self.auth_failures_total = Counter(
            "version_auth_failures_total",
            "Failed authentication: unknown or revoked tokens (API requests, console sign-ins)",
            ["channel"],
            registry=r,
        )
        self.auth_throttled_total = Counter(
            "version_auth_throttled_total",
            "Attempts refused with 429 because the client address or token prefix failed too often",
            ["channel"],
            registry=r,
        )

    def source_error(self, source: str, kind: str) -> None:
        self.source_errors_total.labels(source=source, kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
