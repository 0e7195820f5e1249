"""Observability checked with Prometheus' own tool: `promtool check metrics` on a live `/metrics`
of the real service, `promtool check rules` and `promtool test rules` (ops/prometheus/alerts.test.yaml)
on the alert rules, and every metric the rules, the Grafana dashboard and the README name is one
the service exports.

The service runs for real (uvicorn on loopback, a SQLite file or a PostgreSQL schema); its scrape
is taken after a successful fleet full scan, a manifest push (delta scan) and a failed full scan
(the catalog file gone), so the failure-cause series is in it too. `promtool` is Debian's
`prometheus` package, installed by `make test` when missing: the tests fail without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import pytest
import yaml

from powerx_governance.auth.model import Role
from tests.conftest import REPO, FakeClock, LiveServer, ServiceFactory, issue_token
from tests.functional.service.support import API, Inputs, metric

RULES: Final = REPO / "ops" / "prometheus" / "alerts.yaml"
RULE_TESTS: Final = REPO / "ops" / "prometheus" / "alerts.test.yaml"
DASHBOARD: Final = REPO / "ops" / "grafana" / "dashboard.json"
README: Final = REPO / "README.md"

# What PromQL has besides metric names: functions are followed by "(", and these words.
PROMQL_WORDS: Final = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "le"})
# `by (...)`, `on (...)`, … hold label names, `{...}` matchers, `[...]` ranges, "…" strings.
_LABEL_LISTS: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NOT_NAMES: Final = re.compile(r'\{[^}]*\}|\[[^\]]*\]|"[^"]*"|\$\{?\w+\}?')
_IDENTIFIER: Final = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()")
_SERIES_SUFFIXES: Final = {
    "counter": ("", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}


def promtool(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: `make test` installs it (Debian package `prometheus`)")
    return subprocess.run(
        [binary, *args], input=stdin, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    stripped = _NOT_NAMES.sub(" ", _LABEL_LISTS.sub(" ", expression))
    return {name for name in _IDENTIFIER.findall(stripped) if name.lower() not in PROMQL_WORDS}


def exported_series(scrape: str) -> set[str]:
    """Every series name a query can use on this scrape (a histogram's _bucket, _sum, _count …)."""
    names: set[str] = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            base = family.removesuffix("_total") if kind == "counter" else family
            names.add(family)
            names.update(base + suffix for suffix in _SERIES_SUFFIXES.get(kind, ("",)))
    return names


def rule_expressions() -> Iterator[tuple[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def readme_metric_names() -> set[str]:
    """The Prometheus names in the README's metrics table (its rows start with a `version_…` name)."""
    return set(re.findall(r"^\| `(version_\w+)`", README.read_text(encoding="utf-8"), re.MULTILINE))


def unknown_names(expressions: Iterable[tuple[str, str]], exported: set[str]) -> dict[str, set[str]]:
    return {
        where: names - exported for where, expr in expressions if (names := metric_names(expr)) - exported
    }


@pytest.fixture
def scrape(make_service: ServiceFactory, tmp_path: Path) -> str:
    """`/metrics` of the real service after a full scan, a push and a failed full scan."""
    inputs = Inputs(tmp_path / "inputs", tenants=["sandbox-tenant-a", "acme-retail"])
    clock = FakeClock()
    service = make_service(
        clock=clock,
        POWERX_WORKER="0",
        **inputs.sources,
    )
    with (
        LiveServer(service, background=False) as live,
        live.client(issue_token(service, Role.OPERATOR)) as operator,
        live.client(issue_token(service, Role.SERVICE)) as pusher,
    ):

        def full_scan() -> None:
            clock.advance(1)
            assert operator.post(f"{API}/scan", json={}).status_code == 202
            service.run_pending()

        full_scan()
        pushed = pusher.post(f"{API}/webhooks/manifests", json=inputs.manifest("acme-retail"))
        assert pushed.status_code in (200, 202), pushed.text
        service.run_pending()
        inputs.catalog_file.rename(inputs.catalog_file.with_suffix(".gone"))
        full_scan()
        response = operator.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_a_live_scrape_passes_promtool_check_metrics(scrape: str) -> None:
    checked = promtool("check", "metrics", stdin=scrape)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    # the scrape is the one described: a failed fleet full scan, named by its cause
    assert metric(scrape, "version_scan_consecutive_failures") == 1
    assert metric(scrape, "version_scan_coverage_ratio") == 0.0
    assert metric(scrape, "version_scan_last_failure_info", source="catalog-file", reason="unavailable") == 1
    assert metric(scrape, "version_scan_duration_seconds_count", kind="delta") == 1
    assert metric(scrape, "version_sla_breaches_total", kind="critical_past_deadline") == 0


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    # run beside the rules: the test file names its rule file relative to itself
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    alerts = {name for name, _ in rule_expressions()}
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    assert (fired, quiet) == (alerts, alerts)


@pytest.mark.parametrize("backend", ["sqlite"])  # names do not depend on the store
def test_rules_dashboard_and_readme_name_only_exported_metrics(scrape: str) -> None:
    exported = exported_series(scrape)
    assert unknown_names(rule_expressions(), exported) == {}
    dashboard = list(dashboard_expressions())
    assert dashboard, "the dashboard has no queries"
    assert unknown_names(dashboard, exported) == {}
    documented = readme_metric_names()
    assert documented, "the README has no metrics table"
    families = {line.split()[2] for line in scrape.splitlines() if line.startswith("# TYPE ")}
    # the client's `_created` gauges (start time of each counter and histogram) go with their metric
    created = {
        f for f in families if f.endswith("_created") and f.removesuffix("_created") + "_total" in families
    }
    created |= {f for f in families if f.endswith("_created") and f.removesuffix("_created") in families}
    assert documented == families - created  # every exported metric documented, nothing more


def test_dashboard_panels_show_the_unit_their_metric_names() -> None:
    """A panel of a `_seconds` metric shows seconds, a `_ratio` one percent of 1."""
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        names = {name for target in panel["targets"] for name in metric_names(target["expr"])}
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if any("_seconds" in name for name in names):
            assert unit == "s", panel["title"]
        if any(name.endswith("_ratio") for name in names):
            assert unit == "percentunit", panel["title"]


def test_metric_names_are_read_out_of_promql() -> None:
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{kind="full"}[10m]))) > 300 '
        "or on (job, instance) b_ratio * on (job) group_left (source) c_info offset 5m"
    )
    assert metric_names(expression) == {"a_seconds_bucket", "b_ratio", "c_info"}
