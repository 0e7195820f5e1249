"""`powerx version smoke`: drive a running service end to end and say which step failed.

Steps: health → full scan → critical patches first → push a critical advisory → delta scan
escalates the recommendation → notification recorded → decision → audit trail has it and
verifies. Exit 0 when every step passes, 1 when one fails (named), 2 on usage errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE = "/internal/version/governance"
CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"


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
    target = next((i for i in reversed(items) if not i["critical_patch"] and i["target_version"]), items[-1])
    run.state["victim"] = target
    top = "critical patch" if items[0]["critical_patch"] else items[0]["risk_level"]
    return f"top priority {priorities[0]} ({top})"


def _push(run: SmokeRun) -> str:
    victim = run.state["victim"]
    advisory = {
        "id": f"PXSA-SMOKE-{uuid.uuid4().hex[:8].upper()}",
        "summary": "smoke test: critical advisory",
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": victim["plugin_id"]},
                "ranges": [
                    {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": victim["target_version"]}]}
                ],
            }
        ],
    }
    with run.client(run.service_token) as service, run.client(run.operator_token) as operator:
        answer = service.post(f"{BASE}/webhooks/advisories", json=advisory).raise_for_status().json()
        run.wait_scan(operator, answer["delta_scan_id"])
        updated = operator.get(f"{BASE}/recommendations/{victim['id']}").raise_for_status().json()
    if updated["risk_level"] != "critical":
        raise SmokeStepError(
            f"recommendation {victim['id']} is {updated['risk_level']} after a critical push"
        )
    run.state["victim"] = updated
    return f"pushed {advisory['id']}; recommendation {updated['id']} is now critical"


def _decide(run: SmokeRun) -> str:
    victim = run.state["victim"]
    body = {"recommendation_id": victim["id"], "revision": victim["revision"], "decision": "upgrade"}
    with run.client(run.operator_token) as client:
        answer = client.post(
            f"{BASE}/decision", json=body, headers={"Idempotency-Key": f"smoke-{victim['id']}"}
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
    if not any(e["operation"] == "decision.upgrade" for e in events):
        raise SmokeStepError(f"no audit event for the decision on recommendation {victim['id']}")
    return f"{len(events)} audit events for recommendation {victim['id']}"


STEPS: list[tuple[str, Callable[[SmokeRun], str]]] = [
    ("health", _health),
    ("scan", _scan),
    ("critical patches first", _critical_first),
    ("push critical advisory", _push),
    ("decision recorded", _decide),
    ("audit trail", _audit),
]


def smoke(run: SmokeRun) -> bool:
    """Run the steps in order, stopping at the first failure; True when all passed."""
    for name, step in STEPS:
        try:
            run.steps.append((name, True, step(run)))
        except (SmokeStepError, httpx.HTTPError, KeyError) as exc:
            run.steps.append((name, False, f"{type(exc).__name__}: {exc}"))
            return False
    return True
