"""Feature flags as configured: environment over settings file over the default (on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerx_governance.errors import InputError
from powerx_governance.feature_flags import ConfiguredFlag, Flag, FlagSource, configured_flags


def test_defaults_are_on() -> None:
    assert configured_flags({}, None) == {flag: ConfiguredFlag(True, FlagSource.DEFAULT) for flag in Flag}


def test_the_environment_beats_the_settings_file(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("flags:\n  plugin-version-governance: off\n  plugin-upgrade-policy: false\n")
    found = configured_flags({"POWERX_FLAG_PLUGIN_VERSION_GOVERNANCE": "yes"}, settings)
    assert found[Flag.GOVERNANCE] == ConfiguredFlag(True, FlagSource.ENVIRONMENT)
    assert found[Flag.UPGRADE_POLICY] == ConfiguredFlag(False, FlagSource.SETTINGS_FILE)


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(InputError) as caught:
        configured_flags({"POWERX_FLAG_PLUGIN_UPGRADE_POLICY": "maybe"}, None)
    assert caught.value.problem.field == "POWERX_FLAG_PLUGIN_UPGRADE_POLICY"
    assert "'maybe'" in caught.value.problem.error


def test_an_unknown_flag_in_the_settings_file_is_refused(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("flags:\n  plugin-version-governanse: off\n")
    with pytest.raises(InputError) as caught:
        configured_flags({}, settings)
    assert caught.value.problem.field == "plugin-version-governanse"
    assert caught.value.problem.source == str(settings)
