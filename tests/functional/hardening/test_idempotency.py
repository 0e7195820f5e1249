"""Finding 1: an Idempotency-Key is the caller's own, checked after authorisation (both stores)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from powerx_governance.decisions.tables import DecisionRow
from tests.functional.console.support import ACME, SANDBOX
from tests.functional.hardening.conftest import API, Target

PLUGIN_A = "com.powerx.plugins.inventory"


def _body(target: Target, tenant: str, plugin: str, **extra: Any) -> dict[str, Any]:
    with target.client("operator") as client:
        rec = client.get(f"{API}/recommendations/{target.rec(tenant, plugin)}").json()
    return {"recommendation_id": rec["id"], "revision": rec["revision"], "decision": "upgrade", **extra}


def _decisions(target: Target, key: str) -> list[DecisionRow]:
    with target.service.factory() as session:
        return list(session.execute(select(DecisionRow).where(DecisionRow.idempotency_key == key)).scalars())


def test_another_tenants_key_in_the_header_neither_leaks_nor_drops_the_decision(target: Target) -> None:
    key = f"shared-header-{target.backend}"
    with target.client("admin_b") as tenant_b:
        theirs = tenant_b.post(
            f"{API}/decision",
            json=_body(target, ACME, "com.powerx.plugins.crm"),
            headers={"Idempotency-Key": key},
        )
    assert theirs.status_code == 201, theirs.text
    with target.client("admin_a") as tenant_a:
        ours = tenant_a.post(
            f"{API}/decision",
            json=_body(target, SANDBOX, "com.powerx.plugins.crm"),
            headers={"Idempotency-Key": key},
        )
    assert ours.status_code == 201, ours.text
    assert ours.json()["tenant_uuid"] == SANDBOX
    assert ours.json()["id"] != theirs.json()["id"]
    assert {row.tenant_uuid for row in _decisions(target, key)} == {SANDBOX, ACME}


def test_another_tenants_key_in_the_body_neither_leaks_nor_drops_the_decision(target: Target) -> None:
    key = f"shared-body-{target.backend}"
    with target.client("admin_b") as tenant_b:
        theirs = tenant_b.post(
            f"{API}/decision", json=_body(target, ACME, "com.powerx.plugins.crm", idempotency_key=key)
        )
    assert theirs.status_code == 201, theirs.text
    with target.client("admin_a") as tenant_a:
        ours = tenant_a.post(
            f"{API}/decision", json=_body(target, SANDBOX, "com.powerx.plugins.crm", idempotency_key=key)
        )
    assert ours.status_code == 201, ours.text
    assert ours.json()["tenant_uuid"] == SANDBOX
    assert "acme" not in ours.text.lower()


def test_a_viewer_replaying_a_known_key_is_refused_before_the_key_is_looked_up(target: Target) -> None:
    key = f"viewer-{target.backend}"
    body = _body(target, SANDBOX, "com.powerx.plugins.crm")
    with target.client("admin_a") as admin:
        assert admin.post(f"{API}/decision", json=body, headers={"Idempotency-Key": key}).status_code == 201
    with target.client("viewer_a") as viewer:
        replay = viewer.post(f"{API}/decision", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 403, replay.text
    with target.client("viewer_b") as other_viewer:
        across = other_viewer.post(f"{API}/decision", json=body, headers={"Idempotency-Key": key})
    assert across.status_code in (403, 404), across.text
    assert SANDBOX not in across.text


def test_a_replay_returns_the_first_answer_and_a_different_body_is_a_conflict(target: Target) -> None:
    key = f"replay-{target.backend}"
    body = _body(target, SANDBOX, "com.powerx.plugins.crm")
    with target.client("admin_a") as admin:
        first = admin.post(f"{API}/decision", json=body, headers={"Idempotency-Key": key})
        again = admin.post(f"{API}/decision", json=body, headers={"Idempotency-Key": key})
        changed = admin.post(
            f"{API}/decision",
            json={**body, "decision": "ignore", "reason": "another answer under the same key"},
            headers={"Idempotency-Key": key},
        )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert changed.status_code == 409, changed.text
    assert changed.headers["content-type"] == "application/problem+json"
    assert changed.json()["errors"][0]["field"] == "idempotency_key"
    assert len(_decisions(target, key)) == 1
