"""SemVer 2.0.0 versions: parsing by the `semver` library, precedence as an orderable key.

`semver.Version` validates and splits the string; we keep a precomputed precedence key so
that sorting thousands of releases and millions of comparisons stay cheap. The key follows
SemVer 2.0.0 §11 exactly (a property test checks it against `semver.Version.compare`).
"""

from __future__ import annotations

import re
from functools import lru_cache, total_ordering
from typing import Final

import semver

# A release (no pre-release) sorts after every pre-release of the same core version.
_RELEASE: Final = (1,)

PrereleaseKey = tuple[tuple[int, int, str], ...]
PrecedenceKey = tuple[int, int, int, tuple[int, ...] | tuple[int, PrereleaseKey]]


class InvalidVersionError(ValueError):
    """A string is not a SemVer 2.0.0 version."""

    def __init__(self, text: str) -> None:
        super().__init__(f"{text!r} is not a SemVer 2.0.0 version (expected MAJOR.MINOR.PATCH[-pre][+build])")
        self.text = text


def _prerelease_key(prerelease: str) -> PrereleaseKey:
    # Numeric identifiers sort numerically and below alphanumeric ones (SemVer §11.4).
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in prerelease.split("."))


@total_ordering
class Version:
    """An immutable SemVer 2.0.0 version ordered by precedence (build metadata ignored)."""

    __slots__ = ("build", "key", "major", "minor", "patch", "prerelease", "text")

    def __init__(self, parsed: semver.Version, text: str) -> None:
        self.text = text
        self.major: int = parsed.major
        self.minor: int = parsed.minor
        self.patch: int = parsed.patch
        self.prerelease: str | None = parsed.prerelease
        self.build: str | None = parsed.build
        pre: tuple[int, ...] | tuple[int, PrereleaseKey] = (
            (0, _prerelease_key(parsed.prerelease)) if parsed.prerelease else _RELEASE
        )
        self.key: PrecedenceKey = (parsed.major, parsed.minor, parsed.patch, pre)

    @property
    def is_prerelease(self) -> bool:
        return self.prerelease is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.key == other.key

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Version({self.text!r})"

    def __str__(self) -> str:
        return self.text


@lru_cache(maxsize=200_000)
def parse_version(text: str) -> Version:
    """Parse a SemVer 2.0.0 string (a leading `v` is accepted, as Go and npm tags use it)."""
    stripped = text.strip()
    candidate = stripped[1:] if stripped[:1] in ("v", "V") else stripped
    try:
        parsed = semver.Version.parse(candidate)
    except (ValueError, TypeError) as exc:
        raise InvalidVersionError(text) from exc
    return Version(parsed, candidate)


_PARTIAL: Final = re.compile(
    r"^[vV]?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?"
    r"(?P<rest>(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$"
)


def read_version(text: str) -> tuple[Version, bool]:
    """A version, padded when partial (`1` → 1.0.0, `1.2` → 1.2.0, `01.2.3` → 1.2.3) as osv-scanner
    and Masterminds read them; the flag says whether padding was needed (a repair to report)."""
    try:
        return parse_version(text), False
    except InvalidVersionError:
        match = _PARTIAL.match(text.strip())
        if match is None:
            raise
    major, minor, patch = (int(match[g] or 0) for g in ("major", "minor", "patch"))
    return parse_version(f"{major}.{minor}.{patch}{match['rest']}"), True


def minimum_version() -> Version:
    """The lowest possible version, OSV's `introduced: "0"`."""
    return parse_version("0.0.0-0")
