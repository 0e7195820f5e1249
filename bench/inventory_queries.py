"""Fleet inventory queries and group evaluation at the reference fleet: server time over HTTP.

    python -m bench.inventory_queries [--tenants N] [--backend sqlite|postgresql|both] [--repeat K]

For each backend, in a fresh database: a full scan of the synthetic reference fleet (20,000
tenants x 50 installations by default) with no groups, then the groups of a groups file (one per
industry tag, one per plan) evaluated once (its wall time and the process's peak RSS; `--no-groups`
skips it), then K requests of each inventory route served by
uvicorn on a loopback port, as an operator: "tenants on plugin X version Y" (X the most installed
plugin, Y its most common version), the same for a range, the version distribution of X, and "who
is affected by advisory Y" (the advisory affecting the most installations). Figures are the
client's wall time per request (server time plus a loopback round trip): median, p95 and max.
Goal (issue 15): under 200 ms at the reference fleet.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import func, select

from bench.common import OUT, peak_rss_mib
from bench.served import api_client, ms, scanned, served, timed
from powerx_governance.baselines.evaluation import Evaluator, evaluate
from powerx_governance.db.session import transaction
from powerx_governance.inventory.tables import InstallationRow
from powerx_governance.service import GovernanceService

API = "/internal/version/governance"
INDUSTRIES = ("retail", "finance", "healthcare", "education", "public-sector", "manufacturing")


def _groups_file() -> Path:
    groups = [{"id": tag, "select": {"tags": [tag]}} for tag in INDUSTRIES]
    groups += [{"id": f"plan-{plan}", "select": {"plans": [plan]}} for plan in ("free", "basic", "pro")]
    path = OUT / "groups-bench.yaml"
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"schema": "powerx.groups/v1", "groups": groups}), encoding="utf-8")
    return path


def _targets(service: GovernanceService) -> tuple[str, str, str]:
    """(the most installed plugin, its most common version, the advisory affecting most installations)."""
    with service.factory() as session:
        plugin, version, _ = session.execute(
            select(InstallationRow.plugin_id, InstallationRow.version, func.count().label("n"))
            .group_by(InstallationRow.plugin_id, InstallationRow.version)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
        index = service.catalog_cache.index(session)
        counts = dict(
            session.execute(
                select(InstallationRow.plugin_id, func.count()).group_by(InstallationRow.plugin_id)
            ).all()
        )
    advisory = max(
        ((a.id, counts.get(pid, 0)) for pid, p in index.plugins.items() for a in p.advisories),
        key=lambda pair: pair[1],
    )[0]
    return plugin, version, advisory


def _requests(client: httpx.Client, plugin: str, version: str, advisory: str) -> dict[str, Callable[[], Any]]:
    def get(path: str, **params: str) -> Callable[[], Any]:
        def call() -> Any:
            answer = client.get(f"{API}{path}", params=params)
            answer.raise_for_status()
            return answer.json()

        return call

    major = version.split(".", 1)[0]
    return {
        f"tenants on {plugin} {version}": get("/inventory/tenants", plugin=plugin, version=version),
        f"tenants on {plugin} ^{major}.0.0": get(
            "/inventory/tenants", plugin=plugin, version=f"^{major}.0.0"
        ),
        f"version distribution of {plugin}": get("/inventory/distribution", plugin=plugin),
        f"who is affected by {advisory}": get(f"/inventory/advisories/{advisory}"),
    }


def run(backend: str, tenants: int, repeat: int, *, groups: bool) -> None:
    with scanned(backend, tenants) as scanned_service:
        service = scanned_service
        if groups:
            service = scanned_service.reconfigured({"POWERX_GROUPS": str(_groups_file())})
            start = time.perf_counter()
            with transaction(service.factory) as session:
                outcome = evaluate(session, service.require(Evaluator), service.clock())
            took, rss = time.perf_counter() - start, peak_rss_mib()
            print(f"  evaluate every group ({outcome.as_dict()}): {took:.1f} s, peak RSS {rss:.0f} MiB")
        try:
            plugin, version, advisory = _targets(service)
            with served(service) as base_url, api_client(service, base_url) as client:
                for name, action in _requests(client, plugin, version, advisory).items():
                    found = action()
                    size = found.get("total", found.get("tenants_total", len(found.get("items", []))))
                    print(f"  {name:60s} {size:>6} rows  {ms(timed(action, repeat))}")
        finally:
            if service is not scanned_service:
                service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-groups", action="store_true", help="skip the evaluation of every group")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, args.tenants, args.repeat, groups=not args.no_groups)


if __name__ == "__main__":
    main()
