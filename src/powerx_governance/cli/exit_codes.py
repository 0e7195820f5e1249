"""CLI exit codes, in one place (the README has the same table)."""

from enum import IntEnum


class ExitCode(IntEnum):
    CLEAN = 0  # no finding at or above --fail-on, coverage complete
    FINDINGS = 1  # findings at or above --fail-on
    USAGE = 2  # bad usage or an unusable input (file missing, invalid rules, bad catalog document)
    INCOMPLETE = 3  # coverage below defaults.min_coverage (wins over FINDINGS: the picture is partial)
    STALE = 4  # a decision on a revision that is no longer current: reload and decide again
