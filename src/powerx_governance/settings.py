"""One typed settings object, built from the environment by a function (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    rules_path: Path | None  # POWERX_RULES: governance_rules.yaml used when --rules is not given
    compat_path: Path | None  # POWERX_COMPAT: compat_matrix.yaml used when --compat is not given
    var_dir: Path  # POWERX_VAR_DIR: where reports and local state go
    max_document_bytes: int  # POWERX_MAX_DOCUMENT_BYTES: cap on any one YAML/JSON input file


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    return Settings(
        rules_path=_path(env.get("POWERX_RULES")),
        compat_path=_path(env.get("POWERX_COMPAT")),
        var_dir=Path(env.get("POWERX_VAR_DIR", "var")),
        max_document_bytes=int(env.get("POWERX_MAX_DOCUMENT_BYTES", str(64 * 1024 * 1024))),
    )
