"""Severity of an advisory (DESIGN §5.2): CVSS from vectors via the `cvss` library, else a label."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from powerx_governance.catalog_records import Advisory
from powerx_governance.domain import Severity

# Labels as databases write them; GitHub says MODERATE for medium.
_LABELS: Final = {
    "critical": Severity.CRITICAL,
    "high": Severity.HIGH,
    "important": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "none": Severity.NONE,
}
UNKNOWN_SEVERITY_REASON: Final = "severity unknown"


class InvalidVectorError(ValueError):
    """A CVSS vector the `cvss` library refuses."""


@dataclass(frozen=True, slots=True)
class AdvisorySeverity:
    level: Severity
    score: float | None  # the CVSS score when a vector decided
    vector: str | None
    source: str  # CVSS_V4 | CVSS_V3 | CVSS_V2 | label | unknown
    problems: tuple[str, ...] = ()  # vectors that could not be used, and why


def band_v3_v4(score: float) -> Severity:
    """CVSS v3.x / v4.0 qualitative severity scale."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW if score > 0.0 else Severity.NONE


def band_v2(score: float) -> Severity:
    """NVD's CVSS v2 bands (no critical)."""
    if score >= 7.0:
        return Severity.HIGH
    return Severity.MEDIUM if score >= 4.0 else Severity.LOW


def _vector_version(vector: str) -> int:
    if vector.startswith("CVSS:4."):
        return 4
    if vector.startswith("CVSS:3."):
        return 3
    return 2


@lru_cache(maxsize=20_000)
def score_vector(vector: str) -> tuple[int, float, Severity]:
    """(major CVSS version, base score, band) of a vector; InvalidVectorError if unusable."""
    version = _vector_version(vector)
    try:
        if version == 4:
            score = float(CVSS4(vector).base_score)
            return version, score, band_v3_v4(score)
        if version == 3:
            score = float(CVSS3(vector).base_score)
            return version, score, band_v3_v4(score)
        score = float(CVSS2(vector).scores()[0])
    except (CVSSError, ValueError, KeyError, IndexError) as exc:
        raise InvalidVectorError(f"CVSS vector {vector!r} is malformed: {exc}") from exc
    return version, score, band_v2(score)


def _label(database_specific: dict[str, Any]) -> Severity | None:
    raw = database_specific.get("severity")
    return _LABELS.get(raw.strip().lower()) if isinstance(raw, str) else None


def advisory_severity(advisory: Advisory) -> AdvisorySeverity:
    """The newest usable CVSS vector decides (v4 over v3 over v2), else the label, else medium."""
    problems: list[str] = []
    scored: list[tuple[int, float, Severity, str, str]] = []
    for entry in advisory.severity:
        if not entry.type.upper().startswith("CVSS"):
            continue
        try:
            version, score, level = score_vector(entry.score.strip())
        except InvalidVectorError as exc:
            problems.append(str(exc))
            continue
        scored.append((version, score, level, entry.score.strip(), f"CVSS_V{version}"))
    if scored:
        version, score, level, vector, source = max(scored, key=lambda s: s[0])
        return AdvisorySeverity(level, score, vector, source, tuple(problems))
    label = _label(advisory.database_specific)
    if label is not None:
        return AdvisorySeverity(label, None, None, "label", tuple(problems))
    return AdvisorySeverity(Severity.MEDIUM, None, None, "unknown", tuple(problems))


def is_exploited(advisory: Advisory) -> bool:
    """`database_specific.exploited: true` marks known exploitation (e.g. CISA KEV)."""
    return advisory.database_specific.get("exploited") is True
