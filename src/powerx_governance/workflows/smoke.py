"""`powerx version smoke`: drive a running service end to end and say which step failed.

Steps: health → full scan → critical patches first → a synthetic tenant running a synthetic
plugin (pushed releases and manifest) → push a critical advisory for that plugin → delta scan
escalates the synthetic tenant's recommendation → decision → audit trail has it → clean up.
Real tenants are never touched: the advisory names only the synthetic plugin, the decision is
the synthetic tenant's, and the clean-up withdraws the advisory, takes every pushed record out
of the push source and removes the synthetic tenant with everything stored for it. The run's
audit events carry the correlation id `powerx-smoke-<run>` (and the synthetic tenant). The
clean-up runs even when a step fails. Exit 0 when every step passes, 1 when one fails (named),
2 on usage errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from powerx_governance.workflows.smoke_tenants import SMOKE_PREFIX

BASE = "/internal/version/governance"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
LONG_AGO = "2020-01-01T00:00:00Z"  # released before any evaluation time the service may use
INSTALLED, FIXED = "1.0.0", "1.0.1"


class SmokeStepError(Exception):
    """A step did not see what it expected."""


@dataclass
class SmokeRun:
    url: str
    operator_token: str
    service_token: str
    timeout: float = 120.0
    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def tenant(self) -> str:
        """The synthetic tenant's uuid (and key); also the correlation id of the run's audit events."""
        return f"{SMOKE_PREFIX}{self.run_id}"

    @property
    def plugin(self) -> str:
        return f"com.powerx.smoke.probe-{self.run_id}"

    @property
    def advisory_id(self) -> str:
        return f"PXSA-SMOKE-{self.run_id.upper()}"

    def client(self, token: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def wait_scan(self, client: httpx.Client, scan_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            scan: dict[str, Any] = client.get(f"{BASE}/scans/{scan_id}").raise_for_status().json()
            if scan["status"] not in ("queued", "running"):
                return scan
            time.sleep(0.2)
        raise SmokeStepError(f"scan {scan_id} did not finish within {self.timeout} s")


def _health(run: SmokeRun) -> str:
    with httpx.Client(base_url=run.url, timeout=10) as client:
        for path in ("/healthz", "/readyz"):
            if client.get(path).status_code != 200:
                raise SmokeStepError(f"{path} is not 200")
    return "healthz and readyz answer"


def _scan(run: SmokeRun) -> str:
    with run.client(run.operator_token) as client:
        scan_id = client.post(f"{BASE}/scan", json={"kind": "full"}).raise_for_status().json()["scan_id"]
        scan = run.wait_scan(client, scan_id)
    if scan["status"] == "failed":
        raise SmokeStepError(f"full scan failed: {scan['failure']}")
    return f"full scan {scan['status']}, coverage {scan['coverage']['rate']:.3f}, {scan['findings']} findings"


def _critical_first(run: SmokeRun) -> str:
    with run.client(run.operator_token) as client:
        items = client.get(f"{BASE}/recommendations", params={"state": "open", "limit": 50}).json()["items"]
    if not items:
        raise SmokeStepError("no open recommendations after the scan")
    priorities = [i["priority"] for i in items]
    if priorities != sorted(priorities, reverse=True):
        raise SmokeStepError("recommendations are not sorted by priority")
    criticals = [i for i in items if i["critical_patch"]]
    if criticals and not items[0]["critical_patch"]:
        raise SmokeStepError(
            f"top recommendation {items[0]['id']} is not a critical patch although some exist"
        )
    top = "critical patch" if items[0]["critical_patch"] else items[0]["risk_level"]
    return f"top priority {priorities[0]} ({top})"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pushed(run: SmokeRun, route: str, body: dict[str, Any]) -> dict[str, Any]:
    """Push as the service, wait for the delta scan the push queued."""
    with run.client(run.service_token) as service, run.client(run.operator_token) as operator:
        answer: dict[str, Any] = service.post(f"{BASE}/webhooks/{route}", json=body).raise_for_status().json()
        scan = run.wait_scan(operator, answer["delta_scan_id"])
    if scan["status"] == "failed":
        raise SmokeStepError(f"delta scan after the {route} push failed: {scan['failure']}")
    return answer


def _recommendation(run: SmokeRun) -> dict[str, Any]:
    with run.client(run.operator_token) as client:
        page = client.get(f"{BASE}/recommendations", params={"tenant": run.tenant, "limit": 10})
    items = [i for i in page.raise_for_status().json()["items"] if i["plugin_id"] == run.plugin]
    if not items:
        raise SmokeStepError(f"no recommendation for the synthetic tenant {run.tenant}")
    found: dict[str, Any] = items[0]
    return found


def _synthetic_tenant(run: SmokeRun) -> str:
    run.state["synthetic"] = True  # from here on the clean-up has something to remove
    for version in (INSTALLED, FIXED):
        release = {"version": version, "channel": "stable", "released_at": LONG_AGO}
        _pushed(run, "releases", {"plugin_id": run.plugin, "release": release})
    manifest = {
        "schema": "powerx.manifest/v1",
        "tenant_uuid": run.tenant,
        "tenant_key": run.tenant,
        "name": "PowerX smoke test (synthetic)",
        "tags": ["powerx-smoke"],
        "core_version": "1.24.0",
        "plugins": [{"plugin_id": run.plugin, "version": INSTALLED, "channel": "stable", "state": "enabled"}],
    }
    _pushed(run, "manifests", manifest)
    rec = _recommendation(run)
    return f"synthetic tenant {run.tenant} runs {run.plugin} {INSTALLED}; latest {rec['latest_version']}"


def _advisory(run: SmokeRun, **extra: Any) -> dict[str, Any]:
    return {
        "id": run.advisory_id,
        "summary": "powerx version smoke: synthetic critical advisory",
        "published": run.state.setdefault("published", _now()),
        "modified": _now(),
        "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": run.plugin},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": FIXED}]}],
            }
        ],
        **extra,
    }


def _push(run: SmokeRun) -> str:
    _pushed(run, "advisories", _advisory(run))
    updated = _recommendation(run)
    if updated["risk_level"] != "critical":
        raise SmokeStepError(
            f"recommendation {updated['id']} is {updated['risk_level']} after a critical push"
        )
    run.state["victim"] = updated
    return f"pushed {run.advisory_id}; recommendation {updated['id']} is now critical"


def _decide(run: SmokeRun) -> str:
    victim = run.state["victim"]
    body = {
        "recommendation_id": victim["id"],
        "revision": victim["revision"],
        "decision": "upgrade",
        "reason": "powerx version smoke (synthetic tenant)",
        "correlation_id": run.tenant,
    }
    with run.client(run.operator_token) as client:
        answer = client.post(
            f"{BASE}/decision", json=body, headers={"Idempotency-Key": f"smoke-{run.run_id}"}
        )
    if answer.status_code not in (200, 201):
        raise SmokeStepError(f"decision answered {answer.status_code}: {answer.text[:300]}")
    run.state["decision"] = answer.json()
    return f"decision {answer.json()['id']} recorded"


def _audit(run: SmokeRun) -> str:
    victim = run.state["victim"]
    with run.client(run.operator_token) as client:
        events = client.get("/internal/audit/version", params={"resource_id": str(victim["id"])}).json()[
            "items"
        ]
    if not any(e["operation"] == "decision.upgrade" and e["correlation_id"] == run.tenant for e in events):
        raise SmokeStepError(f"no audit event for the decision on recommendation {victim['id']}")
    return f"{len(events)} audit events for recommendation {victim['id']}"


def _removed(client: httpx.Client, path: str, body: dict[str, Any]) -> str | None:
    """DELETE one thing the run made; the delta scan it queued, if any."""
    answer = client.request("DELETE", f"{BASE}{path}", json=body)
    if answer.status_code == 404:  # that part was never made
        return None
    if answer.status_code != 200:
        raise SmokeStepError(f"DELETE {path} answered {answer.status_code}: {answer.text[:300]}")
    scan_id: str | None = answer.json().get("delta_scan_id")
    return scan_id


def _clean_up(run: SmokeRun) -> str:
    """Withdraw the advisory, take the pushed records out, remove the synthetic tenant."""
    if run.state.get("victim"):
        _pushed(run, "advisories", _advisory(run, withdrawn=_now()))
    why = {"reason": "powerx version smoke: clean-up", "correlation_id": run.tenant}
    paths = [f"/webhooks/advisories/{run.advisory_id}"]
    paths += [f"/webhooks/releases/{run.plugin}/{version}" for version in (INSTALLED, FIXED)]
    with run.client(run.operator_token) as operator:
        scans = [scan for path in paths if (scan := _removed(operator, path, why)) is not None]
        for scan_id in dict.fromkeys(scans):  # no scan may still evaluate the tenant removed next
            run.wait_scan(operator, scan_id)
        _removed(operator, f"/smoke/tenants/{run.tenant}", {"correlation_id": run.tenant})
    return f"withdrew {run.advisory_id}, removed the pushed records and the synthetic tenant {run.tenant}"


STEPS: list[tuple[str, Callable[[SmokeRun], str]]] = [
    ("health", _health),
    ("scan", _scan),
    ("critical patches first", _critical_first),
    ("synthetic tenant", _synthetic_tenant),
    ("push critical advisory", _push),
    ("decision recorded", _decide),
    ("audit trail", _audit),
]
_FAILURES = (SmokeStepError, httpx.HTTPError, KeyError)


def _step(run: SmokeRun, name: str, step: Callable[[SmokeRun], str]) -> bool:
    try:
        run.steps.append((name, True, step(run)))
    except _FAILURES as exc:
        run.steps.append((name, False, f"{type(exc).__name__}: {exc}"))
        return False
    return True


def smoke(run: SmokeRun) -> bool:
    """Run the steps in order, stopping at the first failure, then clean up; True when all passed."""
    passed = all(_step(run, name, step) for name, step in STEPS)
    if run.state.get("synthetic"):
        passed = _step(run, "clean up", _clean_up) and passed
    return passed
