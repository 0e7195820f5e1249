"""Where CLI output goes: a terminal gets its own width; a pipe or file a wide, colourless table."""

from __future__ import annotations

import sys

from rich.console import Console


def stdout_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=170, color_system=None)
