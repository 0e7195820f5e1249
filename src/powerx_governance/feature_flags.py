"""Feature flags as configured: the environment beats the settings file, which beats the default (on)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from powerx_governance.errors import InputError, InputProblem
from powerx_governance.safe_yaml import load_document


class Flag(StrEnum):
    GOVERNANCE = "plugin-version-governance"
    UPGRADE_POLICY = "plugin-upgrade-policy"

    @property
    def env_var(self) -> str:
        return "POWERX_FLAG_" + self.value.upper().replace("-", "_")


class FlagSource(StrEnum):
    DEFAULT = "default"
    SETTINGS_FILE = "settings_file"
    ENVIRONMENT = "environment"
    OPERATOR = "operator"  # changed at run time (API or CLI)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class ConfiguredFlag:
    enabled: bool
    source: FlagSource


def parse_switch(value: object, where: str, field: str) -> bool:
    """on/off, true/false, yes/no, 1/0 (or a YAML boolean); InputError naming the field otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InputError(InputProblem(where, "flags", field, f"expected on or off, got {value!r}"))


def configured_flags(environ: Mapping[str, str], settings_file: Path | None) -> dict[Flag, ConfiguredFlag]:
    """Each flag from the environment, else the settings file's `flags:` section, else on."""
    from_file: dict[str, Any] = {}
    if settings_file is not None:
        document = load_document(settings_file)
        section = document.get("flags", {}) if isinstance(document, dict) else None
        if not isinstance(section, dict):
            raise InputError(InputProblem(str(settings_file), None, "flags", "expected a mapping of flags"))
        unknown = sorted(set(section) - {f.value for f in Flag})
        if unknown:
            raise InputError(
                InputProblem(str(settings_file), "flags", unknown[0], f"unknown flag {unknown[0]!r}")
            )
        from_file = section
    found: dict[Flag, ConfiguredFlag] = {}
    for flag in Flag:
        if flag.env_var in environ:
            value = parse_switch(environ[flag.env_var], "environment", flag.env_var)
            found[flag] = ConfiguredFlag(value, FlagSource.ENVIRONMENT)
        elif flag.value in from_file:
            value = parse_switch(from_file[flag.value], str(settings_file), flag.value)
            found[flag] = ConfiguredFlag(value, FlagSource.SETTINGS_FILE)
        else:
            found[flag] = ConfiguredFlag(True, FlagSource.DEFAULT)
    return found
