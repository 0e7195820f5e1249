"""Durations written as `30s`, `5m`, `24h`, `7d`, `2w` (PowerX's rules-file style)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raises ValueError naming what was expected."""
    compact = text.strip().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 30s, 5m, 24h, 7d)")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
