"""CLI exit codes, in one place (the README has the same table)."""

from enum import IntEnum


class ExitCode(IntEnum):
    CLEAN = 0  # no finding at or above --fail-on, coverage complete
    FINDINGS = 1  # findings at or above --fail-on
    USAGE = 2  # bad usage or an unusable input (file missing, invalid rules, bad catalog document)
    # coverage below defaults.min_coverage, or security data (an advisory, a release, the advisory
    # source) that could not be read: the picture is partial (wins over FINDINGS)
    INCOMPLETE = 3
    STALE = 4  # a decision on a revision that is no longer current: reload and decide again
