"""`powerx version groups | inventory | export`: thin commands over the same service and queries as the API.

Commands act as an operator on the store (changes are audited with `cli:<user>` as the actor).
Domain refusals (unknown group, bad version) exit with the usage code and a message naming the field.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from powerx_governance.baselines import export, fleet, queries, service
from powerx_governance.baselines.evaluation import Evaluator, evaluate
from powerx_governance.baselines.model import DriftState, GroupSource, GroupSpec, Selector
from powerx_governance.db.session import transaction
from powerx_governance.errors import DomainError
from powerx_governance.inventory.queries import tenants_named
from powerx_governance.terminal.consoles import stdout_console
from powerx_governance.terminal.context import open_service
from powerx_governance.terminal.exit_codes import ExitCode

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from powerx_governance.service import GovernanceService

T = TypeVar("T")
groups_app = typer.Typer(help="Tenant groups, their baselines and drift.", no_args_is_help=True)
inventory_app = typer.Typer(
    help="Fleet inventory: who runs what, and who an advisory affects.", no_args_is_help=True
)
out = stdout_console()
err = Console(stderr=True)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Actor = Annotated[str | None, typer.Option(help="Who makes the change (default: the OS user).")]


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except DomainError as exc:
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(ExitCode.USAGE) from exc


def _actor(actor: str | None) -> str:
    return f"cli:{actor or getpass.getuser()}"


def _read(action: Callable[[GovernanceService, Session], T]) -> T:
    svc = open_service()
    with _refusals(), svc.factory() as session:
        return action(svc, session)


def _tenant(session: Session, name: str | None) -> str | None:
    if name is None:
        return None
    found = tenants_named(session, name)
    if len(found) != 1:
        err.print(
            f"error: --tenant {name!r} names {len(found)} stored tenants (give the uuid)", highlight=False
        )
        raise typer.Exit(ExitCode.USAGE)
    return found[0]


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


# -- groups ---------------------------------------------------------------------------------------------


@groups_app.command("list")
def list_command(
    tenant: Annotated[str | None, typer.Option(help="Only groups of this tenant (uuid or key).")] = None,
    as_json: AsJson = False,
) -> None:
    """Every group with its members, conflicts and open drift."""
    items = _read(
        lambda s, db: queries.list_groups(db, s.require(Evaluator).settings, tenant=_tenant(db, tenant))
    )
    if as_json:
        _print_json(items)
        return
    table = Table("group", "name", "source", "members", "conflicts", "open drift", "route")
    for g in items:
        table.add_row(
            g["id"],
            g["name"],
            g["source"],
            str(g["members"]),
            str(g["conflicts"]),
            str(g["open_drift"]),
            g["route"] or "",
        )
    out.print(table)


@groups_app.command("show")
def show_command(group: Annotated[str, typer.Argument(help="Group id.")], as_json: AsJson = False) -> None:
    """A group's baselines (conflicts first), members and drift."""
    detail = _read(lambda s, db: queries.group_detail(db, s.require(Evaluator).settings, group, tenant=None))
    if as_json:
        _print_json(detail)
        return
    table = Table("plugin", "mode", "status", "baseline", "reason")
    for b in detail["baselines"]:
        table.add_row(b["plugin_id"], b["mode"], b["status"], b["baseline"] or "", b["reason"])
    out.print(table)
    _drift_table(detail["drift"])


def _drift_table(items: list[dict[str, Any]]) -> None:
    table = Table("group", "tenant", "plugin", "status", "installed", "baseline", "reason")
    for d in items:
        table.add_row(
            d["group_id"],
            d["tenant_uuid"],
            d["plugin_id"],
            d["status"],
            d["installed_version"] or "",
            d["baseline"],
            d["reason"],
        )
    out.print(table)


@groups_app.command("create")
def create_command(
    group: Annotated[str, typer.Argument(help="Group id (a-z 0-9 . _ -).")],
    tag: Annotated[
        list[str] | None, typer.Option(help="Select tenants with this tag (any of them); repeatable.")
    ] = None,
    plan: Annotated[list[str] | None, typer.Option(help="Select tenants on this plan; repeatable.")] = None,
    tenant: Annotated[
        list[str] | None, typer.Option(help="Always a member (uuid or key); repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    route: Annotated[str | None, typer.Option(help="Notification route of the group's drift.")] = None,
    actor: Actor = None,
) -> None:
    """Create a group (audited) and evaluate it."""
    spec = GroupSpec(
        id=group,
        name=name,
        route=route,
        select=Selector(tags=tuple(tag or ()), plans=tuple(plan or ())),
        tenants=tuple(tenant or ()),
        source=GroupSource.API,
    )
    svc = open_service()
    evaluator = svc.require(Evaluator)
    with _refusals(), transaction(svc.factory) as session:
        service.create_group(session, evaluator.settings, spec, actor=_actor(actor), now=svc.clock())
        outcome = evaluate(session, evaluator, svc.clock(), group_ids={group})
    err.print(f"group {group} created: {outcome.as_dict()}", highlight=False)


@groups_app.command("delete")
def delete_command(group: Annotated[str, typer.Argument(help="Group id.")], actor: Actor = None) -> None:
    """Delete a group made through the API or the CLI (audited)."""
    svc = open_service()
    with _refusals(), transaction(svc.factory) as session:
        service.delete_group(
            session, svc.require(Evaluator).settings, group, actor=_actor(actor), now=svc.clock()
        )
    err.print(f"group {group} deleted", highlight=False)


@groups_app.command("baseline")
def baseline_command(
    group: Annotated[str, typer.Argument(help="Group id.")],
    plugin: Annotated[str, typer.Argument(help="Plugin id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail and on the baseline).")],
    version: Annotated[
        str | None, typer.Option(help="A version or a constraint the group should run.")
    ] = None,
    derived: Annotated[bool, typer.Option("--derived", help="Return to the derived baseline.")] = False,
    actor: Actor = None,
) -> None:
    """Set a group's explicit baseline for a plugin, or return it to derived (audited, versioned)."""
    if (version is None) == (not derived):
        err.print("error: give exactly one of --version and --derived", highlight=False)
        raise typer.Exit(ExitCode.USAGE)
    svc = open_service()
    evaluator = svc.require(Evaluator)
    change = service.BaselineChange(group, plugin, version, reason)
    with _refusals(), transaction(svc.factory) as session:
        revision = service.change_baseline(
            session, evaluator.settings, change, actor=_actor(actor), now=svc.clock()
        )
        outcome = evaluate(session, evaluator, svc.clock(), group_ids={group})
    err.print(f"{group} {plugin}: revision {revision}; {outcome.as_dict()}", highlight=False)


@groups_app.command("evaluate")
def evaluate_command(group: Annotated[str | None, typer.Option(help="Only this group.")] = None) -> None:
    """Re-evaluate every group (or one) now; new drift is announced."""
    svc = open_service()
    evaluator = svc.require(Evaluator)
    with _refusals(), transaction(svc.factory) as session:
        if group is not None:
            service.get_group(session, evaluator.settings, group)
        outcome = evaluate(session, evaluator, svc.clock(), group_ids=None if group is None else {group})
    _print_json(outcome.as_dict())


@groups_app.command("drift")
def drift_command(
    group: Annotated[str | None, typer.Option(help="Only this group.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (uuid or key).")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Resolved items too.")] = False,
    as_json: AsJson = False,
) -> None:
    """Drift items: members whose installed version differs from their group's baseline."""
    state = None if show_all else DriftState.OPEN
    items = _read(
        lambda s, db: queries.list_drift(
            db, s.require(Evaluator).settings, tenant=_tenant(db, tenant), group_id=group, state=state
        )
    )
    if as_json:
        _print_json(items)
    else:
        _drift_table(items)


# -- inventory ------------------------------------------------------------------------------------------


@inventory_app.command("tenants")
def tenants_command(
    plugin: Annotated[str, typer.Argument(help="Plugin id.")],
    version: Annotated[str | None, typer.Option(help="A version or a range (e.g. '>=2.0 <2.4').")] = None,
    core: Annotated[str | None, typer.Option(help="A core version or range.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only tenants with this tag.")] = None,
    group: Annotated[str | None, typer.Option(help="Only members of this group.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    as_json: AsJson = False,
) -> None:
    """Which tenants run a plugin, filtered by version or range, core, tag and group."""
    wanted = fleet.FleetFilter(plugin, version, core, tag, group)
    items, total = _read(lambda _, db: fleet.tenants_running(db, wanted, limit=limit))
    if as_json:
        _print_json({"plugin_id": plugin, "total": total, "items": items})
        return
    table = Table("tenant", "key", "core", "version", "channel", "state", title=f"{plugin}: {total} tenants")
    for t in items:
        table.add_row(
            t["tenant_uuid"], t["tenant_key"] or "", t["core_version"], t["version"], t["channel"], t["state"]
        )
    out.print(table)


@inventory_app.command("distribution")
def distribution_command(
    plugin: Annotated[str, typer.Argument(help="Plugin id.")], as_json: AsJson = False
) -> None:
    """The version distribution of a plugin across the fleet."""
    items = _read(lambda _, db: fleet.distribution(db, plugin))
    if as_json:
        _print_json({"plugin_id": plugin, "items": items})
        return
    table = Table("version", "tenants", "share", title=plugin)
    for v in items:
        table.add_row(v["version"], str(v["tenants"]), f"{v['share']:.1%}")
    out.print(table)


@inventory_app.command("affected")
def affected_command(
    advisory: Annotated[str, typer.Argument(help="Advisory id or alias.")], as_json: AsJson = False
) -> None:
    """Who is affected by an advisory, answered from the inventory."""
    found = _read(lambda s, db: fleet.affected_by(db, s.catalog_cache.index(db), advisory))
    if as_json:
        _print_json(found)
        return
    table = Table(
        "plugin",
        "version",
        "tenant",
        "key",
        "core",
        title=f"{found['advisory_id']}: {found['tenants_total']} tenants",
    )
    for plugin in found["plugins"]:
        for t in plugin["tenants"]:
            table.add_row(
                plugin["plugin_id"], t["version"], t["tenant_uuid"], t["tenant_key"] or "", t["core_version"]
            )
    out.print(table)


# -- export ---------------------------------------------------------------------------------------------


def export_command(
    kind: Annotated[export.ExportKind, typer.Option("--format", help="cyclonedx-sbom | cyclonedx-vex")],
    tenant: Annotated[str | None, typer.Option(help="One tenant (uuid or key).")] = None,
    group: Annotated[str | None, typer.Option(help="Every member of a group.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export a CycloneDX 1.6 SBOM of installed plugins (and the core), or a VEX of the findings."""

    def build(svc: GovernanceService, session: Session) -> dict[str, Any]:
        if group is not None:
            service.get_group(session, svc.require(Evaluator).settings, group)
        scope = export.export_tenants(session, tenant=_tenant(session, tenant), group_id=group)
        return export.build(session, kind, scope, svc.clock())

    text = export.render(_read(build))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"{kind.value} written to {output}", highlight=False)
