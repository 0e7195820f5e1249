"""JSON scan report: the report dict as-is, deterministic byte for byte."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def render(report: Mapping[str, Any]) -> str:
    """Render the report as indented JSON, keys in the order given, with a trailing newline."""
    # allow_nan=False: a NaN score is an upstream bug, and "NaN" is not JSON any reader accepts.
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
