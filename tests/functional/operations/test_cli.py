"""`powerx version flags …` and `powerx version policy …` as operators run them (real executable)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from powerx_governance.feature_flags import Flag
from tests.conftest import RULES, ServiceFactory
from tests.functional.cli import powerx_with
from tests.functional.operations.support import audit

SIX_HOURS = RULES.read_text(encoding="utf-8").replace("    sla_hours: 24\n", "    sla_hours: 6\n", 1)


def _powerx(database_url: str, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "POWERX_DATABASE_URL": database_url,
        "POWERX_VAR_DIR": str(var),
        "POWERX_RULES": str(RULES),
        "POWERX_SCHEDULER": "0",
    }
    return powerx_with(settings, "version", *args)


def test_flags_and_policy_from_the_command_line(
    make_service: ServiceFactory, database_url: str, tmp_path: Path
) -> None:
    service = make_service(POWERX_WORKER="0")
    service.sync_policy()  # what the serving process does at start: the rules file is version 1
    var = tmp_path / "cli"
    off = _powerx(
        database_url, var, "flags", "set", Flag.GOVERNANCE.value, "off", "--reason", "drill", "--actor", "ana"
    )
    assert off.returncode == 0, off.stderr
    assert "plugin-version-governance is off (operator)" in off.stderr
    assert not service.enabled(Flag.GOVERNANCE)
    listed = _powerx(database_url, var, "flags", "list")
    assert "plugin-version-governance" in listed.stdout
    assert "cli:ana" in listed.stdout
    bad = _powerx(database_url, var, "flags", "set", Flag.GOVERNANCE.value, "sometimes")
    assert bad.returncode == 2
    assert "expected on or off" in bad.stderr
    assert _powerx(database_url, var, "flags", "reset", Flag.GOVERNANCE.value).returncode == 0
    assert service.enabled(Flag.GOVERNANCE)
    assert [e.actor for e in audit(service, "flag.changed")] == ["cli:ana"]

    rules = tmp_path / "six-hours.yaml"
    rules.write_text(SIX_HOURS, encoding="utf-8")
    applied = _powerx(database_url, var, "policy", "apply", str(rules), "--note", "tighter", "--actor", "ana")
    assert applied.returncode == 0, applied.stderr
    assert "policy version 2 is current" in applied.stderr
    listed = _powerx(database_url, var, "policy", "list")
    assert listed.returncode == 0, listed.stderr
    assert "tighter" in listed.stdout
    diff = _powerx(database_url, var, "policy", "diff", "1", "2")
    assert "-    sla_hours: 24" in diff.stdout
    assert "+    sla_hours: 6" in diff.stdout
    shown = _powerx(database_url, var, "policy", "show", "2")
    assert shown.stdout == SIX_HOURS
    rolled = _powerx(database_url, var, "policy", "rollback", "1", "--reason", "too tight")
    assert rolled.returncode == 0, rolled.stderr
    assert "policy version 1 is current again (was 2)" in rolled.stderr
    missing = _powerx(database_url, var, "policy", "rollback", "7")
    assert missing.returncode == 2
    assert "there is no policy version 7" in missing.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("defaults: {scan_interval: soon}\n", encoding="utf-8")
    refused = _powerx(database_url, var, "policy", "apply", str(broken))
    assert refused.returncode == 2
    assert "defaults.scan_interval" in refused.stderr
    assert [e.operation for e in audit(service, "policy.rollback")] == ["policy.rollback"]
