"""Every component declares itself once and its declaration resolves (issue 11 point 1)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from fastapi import APIRouter

from powerx_governance.components import COMPONENTS
from powerx_governance.kernel import Collaborators, ComponentError, Throttled, resolve


def test_component_names_and_commands_are_unique() -> None:
    names = [c.name for c in COMPONENTS]
    assert len(names) == len(set(names))
    commands = [n for c in COMPONENTS for n in c.commands]
    assert len(commands) == len(set(commands))


def test_every_reference_resolves_to_what_its_slot_needs() -> None:
    for component in COMPONENTS:
        for reference in (*component.routers, *component.console_routers):
            assert isinstance(resolve(reference, component.name), APIRouter), reference
        for reference in (*component.commands.values(), *component.root_commands.values()):
            found = resolve(reference, component.name)
            assert isinstance(found, typer.Typer) or callable(found), reference
        for optional in (component.settings, component.install):
            if optional is not None:
                assert callable(resolve(optional, component.name)), optional
        for module in component.tables:
            resolve(f"{module}:Base", component.name)  # every tables module builds on the store's Base


def test_a_wrong_reference_names_the_component_and_the_reference() -> None:
    with pytest.raises(ComponentError, match=r"component 'demo': cannot import powerx_governance\.nowhere"):
        resolve("powerx_governance.nowhere:router", "demo")
    with pytest.raises(ComponentError, match=r"component 'demo': powerx_governance\.kernel has no 'nothing'"):
        resolve("powerx_governance.kernel:nothing", "demo")
    with pytest.raises(ComponentError, match="not a 'module:attribute' reference"):
        resolve("powerx_governance.kernel", "demo")


def test_a_missing_collaborator_and_a_second_provider_are_errors() -> None:
    with pytest.raises(ComponentError, match="'decisions' needs a int"):
        Collaborators().require(int, "decisions")
    provided = Collaborators().adding((1,), "one")
    assert provided.require(int, "two") == 1
    with pytest.raises(ComponentError, match="'three' provides a int already provided"):
        provided.adding((2,), "three")


def test_a_file_scan_loads_no_service_code() -> None:
    """`powerx version scan` lists the components' commands without importing them: the store,
    the web framework and the service stay unloaded (seconds of imports a file scan never needs)."""
    probe = (
        "import sys, powerx_governance.cli.main as m; m.app; "
        "print(sorted(n for n in ('sqlalchemy', 'fastapi', 'alembic', 'powerx_governance.service') "
        "if n in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_throttled_follow_up_runs_once_per_period_on_the_service_clock() -> None:
    start = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    moments = iter(start + timedelta(minutes=m) for m in (0, 30, 59, 60, 61, 119, 120))
    service: Any = SimpleNamespace(clock=lambda: next(moments))  # a follow-up reads the clock only
    runs: list[datetime] = []
    follow_up = Throttled(timedelta(hours=1), lambda _service, now: runs.append(now))
    for _ in range(7):
        follow_up(service)
    assert [r.strftime("%H:%M") for r in runs] == ["12:00", "13:00", "14:00"]
