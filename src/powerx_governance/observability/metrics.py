"""Prometheus metrics, one registry per service instance.

Names follow Prometheus' conventions (base units: `_seconds`, ratios 0-1 as `_ratio`, counters
`_total`); the README maps the brief's and DESIGN §6's names onto them. `promtool check metrics`
on a live scrape is part of the test suite.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Label values exported at 0 from the start: `increase()` in the alert rules cannot see a
# counter's first event when its series only appears with that event.
SCAN_KINDS: Final = ("full", "delta")
SLA_BREACH_KINDS: Final = ("critical_past_deadline", "schedule_missed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.scan_coverage_ratio = Gauge(
            "version_scan_coverage_ratio",
            "Share (0-1) of the fleet's tenants scanned by the last finished fleet full scan",
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
            "Unsuccessful fleet full scans in a row (alert at escalation_after)",
            registry=r,
        )
        self.scan_last_failure_info = Gauge(
            "version_scan_last_failure_info",
            "1 for what made the last fleet full scan of the current failing streak unsuccessful "
            "(absent while full scans succeed)",
            ["source", "reason"],
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
        self.recommendation_push_latency_seconds = Histogram(
            "version_recommendation_push_latency_seconds",
            "Seconds from the triggering data's arrival to the delivery of the updated recommendation",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.recommendation_accept_ratio = Gauge(
            "version_recommendation_accept_ratio",
            "Share (0-1) of answered decisions that are upgrades or schedules whose target was reached",
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
        for kind in SCAN_KINDS:
            self.scan_failure_total.labels(kind=kind)
        for kind in SLA_BREACH_KINDS:
            self.sla_breaches_total.labels(kind=kind)

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

    def decisions_taken(self, kind: str, ignore_scope: str | None, count: int = 1) -> None:
        """Decisions recorded (API, console and bulk alike); ignores also by scope (`target` when unset)."""
        self.decisions_total.labels(decision=kind).inc(count)
        if kind == "ignore":
            self.recommendation_ignore_total.labels(scope=ignore_scope or "target").inc(count)

    def source_error(self, source: str, kind: str) -> None:
        self.source_errors_total.labels(source=source, kind=kind).inc()

    def scan_failed(self, source: str, reason: str) -> None:
        """The failing streak's cause is now this one (only one series at a time)."""
        self.scan_last_failure_info.clear()
        self.scan_last_failure_info.labels(source=source, reason=reason).set(1)

    def scan_recovered(self) -> None:
        """A fleet full scan succeeded: no failure to name any more."""
        self.scan_last_failure_info.clear()

    def render(self) -> bytes:
        return generate_latest(self.registry)
