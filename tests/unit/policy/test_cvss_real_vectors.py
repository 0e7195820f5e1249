"""CVSS scoring and severity (DESIGN §5.2) against 6,886 published vectors, plus hand-made cases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import msgspec
import pytest

from powerx_governance.catalog_records import Advisory
from powerx_governance.domain import Severity
from powerx_governance.policy.severity import (
    InvalidVectorError,
    advisory_severity,
    band_v2,
    band_v3_v4,
    score_vector,
)
from tests.shared_data import require_shared


@cache
def _rows() -> tuple[dict[str, Any], ...]:
    with require_shared("data/advisories/cvss_vectors.jsonl").open(encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


def _expected_band(score: float) -> Severity:
    """DESIGN §5.2, written out independently of the code under test."""
    if score == 0.0:
        return Severity.NONE
    if score < 4.0:
        return Severity.LOW
    if score < 7.0:
        return Severity.MEDIUM
    if score < 9.0:
        return Severity.HIGH
    return Severity.CRITICAL


def _rows_of(major: str) -> Iterator[dict[str, Any]]:
    return (row for row in _rows() if row["version"].split(".")[0] == major)


# --- the published vectors ---------------------------------------------------------------------

# v3.x rows carry base, temporal and environmental scores; the base score is the one we use.
# v4.0 rows carry one `base_score` whose meaning `score_nomenclature` names: CVSS-B for base-only
# vectors, CVSS-BT / CVSS-BE when threat / environmental metrics are present. That is the score a
# v4.0 vector has (v4.0 has no separate temporal/environmental scores), so it is the expectation.
EXPECTED_COUNTS = {"3": 5192, "4": 1694}


@pytest.mark.parametrize("major", ["3", "4"])
def test_published_vectors_score_and_band(major: str) -> None:
    rows = list(_rows_of(major))
    assert len(rows) == EXPECTED_COUNTS[major]
    mismatches: list[str] = []
    for row in rows:
        vector = row["vector"]
        expected_score = float(row["base_score"])
        expected_band = _expected_band(expected_score)
        if expected_band.value != row["severity"].lower():  # the file agrees with DESIGN's bands
            mismatches.append(f"{vector}: file says {row['severity']} for {expected_score}")
        try:
            version, score, band = score_vector(vector)
        except InvalidVectorError as exc:
            mismatches.append(f"{vector}: refused ({exc})")
            continue
        if (version, score, band) != (int(major), expected_score, expected_band):
            mismatches.append(
                f"{vector}: got v{version} {score} {band.value}, "
                f"expected v{major} {expected_score} {expected_band.value} "
                f"({row.get('score_nomenclature', 'base')})"
            )
    assert mismatches == [], f"{len(mismatches)} of {len(rows)} v{major} vectors wrong:\n" + "\n".join(
        mismatches[:30]
    )


def test_published_v4_vectors_cover_threat_and_environmental_metrics() -> None:
    nomenclatures = {row["score_nomenclature"] for row in _rows_of("4")}
    assert {"CVSS-B", "CVSS-BT", "CVSS-BE"} <= nomenclatures


# --- hand-made vectors -----------------------------------------------------------------------

V4_CRITICAL = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3
V4_THREAT = V4_CRITICAL + "/E:U"  # 8.1: threat metrics count in a v4.0 score
V4_ZERO = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N"
V31_CRITICAL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
V31_MEDIUM = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N"  # 5.3
V31_TEMPORAL = V31_CRITICAL + "/E:U/RL:O/RC:U"  # base score stays 9.8
V31_ZERO = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"
V30_HIGH = "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"  # 7.5
V2_TEN = "AV:N/AC:L/Au:N/C:C/I:C/A:C"  # 10.0
V2_MEDIUM = "AV:N/AC:M/Au:N/C:P/I:P/A:P"  # 6.8
V2_LOW = "AV:L/AC:L/Au:N/C:P/I:N/A:N"  # 2.1
V2_ZERO = "AV:N/AC:L/Au:N/C:N/I:N/A:N"


@pytest.mark.parametrize(
    ("vector", "expected"),
    [
        (V4_CRITICAL, (4, 9.3, Severity.CRITICAL)),
        (V4_THREAT, (4, 8.1, Severity.HIGH)),
        (V4_ZERO, (4, 0.0, Severity.NONE)),
        (V31_CRITICAL, (3, 9.8, Severity.CRITICAL)),
        (V31_MEDIUM, (3, 5.3, Severity.MEDIUM)),
        (V31_TEMPORAL, (3, 9.8, Severity.CRITICAL)),
        (V31_ZERO, (3, 0.0, Severity.NONE)),
        (V30_HIGH, (3, 7.5, Severity.HIGH)),
        (V2_TEN, (2, 10.0, Severity.HIGH)),  # NVD's v2 bands have no critical
        (V2_MEDIUM, (2, 6.8, Severity.MEDIUM)),
        (V2_LOW, (2, 2.1, Severity.LOW)),
        (V2_ZERO, (2, 0.0, Severity.LOW)),  # NVD v2: Low is 0.0-3.9, there is no "none"
    ],
)
def test_hand_made_vectors(vector: str, expected: tuple[int, float, Severity]) -> None:
    assert score_vector(vector) == expected


@pytest.mark.parametrize(
    "vector",
    [
        "",
        "garbage",
        "CVSS:3.1/",
        "CVSS:3.1/AV:N",  # mandatory metrics missing
        "CVSS:3.1/AV:Z/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # unknown value
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/AV:N",  # repeated metric
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
        "CVSS:3.1//AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H extra",
        "cvss:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.2/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:4.0/garbage",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",  # SA missing
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:Q",
        "CVSS:4.1/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
        "CVSS:5.0/AV:N",
        "AV:N/AC:L/Au:N/C:C/I:C",  # v2, A missing
        "AV:N/AC:L/Au:N/C:C/I:C/A:Q",
        "(AV:N/AC:L/Au:N/C:P/I:P/A:P)",
    ],
)
def test_malformed_vectors_raise(vector: str) -> None:
    with pytest.raises(InvalidVectorError, match="malformed"):
        score_vector(vector)


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, Severity.NONE),
        (0.1, Severity.LOW),
        (3.9, Severity.LOW),
        (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM),
        (7.0, Severity.HIGH),
        (8.9, Severity.HIGH),
        (9.0, Severity.CRITICAL),
        (10.0, Severity.CRITICAL),
    ],
)
def test_v3_v4_band_edges(score: float, band: Severity) -> None:
    assert band_v3_v4(score) is band


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, Severity.LOW),
        (3.9, Severity.LOW),
        (4.0, Severity.MEDIUM),
        (6.9, Severity.MEDIUM),
        (7.0, Severity.HIGH),
        (9.0, Severity.HIGH),
        (10.0, Severity.HIGH),
    ],
)
def test_v2_band_edges_have_no_critical(score: float, band: Severity) -> None:
    assert band_v2(score) is band


# --- advisory_severity -----------------------------------------------------------------------


def _advisory(severity: list[tuple[str, str]] | None = None, label: object = None) -> Advisory:
    record: dict[str, Any] = {"id": "PXSA-TEST-1"}
    if severity is not None:
        record["severity"] = [{"type": kind, "score": vector} for kind, vector in severity]
    if label is not None:
        record["database_specific"] = {"severity": label}
    return msgspec.convert(record, Advisory)


@pytest.mark.parametrize(
    "order",
    [
        [("CVSS_V2", V2_TEN), ("CVSS_V3", V31_MEDIUM), ("CVSS_V4", V4_THREAT)],
        [("CVSS_V4", V4_THREAT), ("CVSS_V3", V31_MEDIUM), ("CVSS_V2", V2_TEN)],
        [("CVSS_V3", V31_MEDIUM), ("CVSS_V4", V4_THREAT), ("CVSS_V2", V2_TEN)],
    ],
)
def test_v4_beats_v3_beats_v2_in_any_order(order: list[tuple[str, str]]) -> None:
    result = advisory_severity(_advisory(order, label="LOW"))
    assert (result.level, result.score, result.vector, result.source) == (
        Severity.HIGH,
        8.1,
        V4_THREAT,
        "CVSS_V4",
    )
    assert result.problems == ()


def test_v3_beats_v2() -> None:
    result = advisory_severity(_advisory([("CVSS_V2", V2_TEN), ("CVSS_V3", V31_MEDIUM)]))
    assert (result.level, result.score, result.source) == (Severity.MEDIUM, 5.3, "CVSS_V3")


def test_v2_alone_decides_with_nvd_bands() -> None:
    result = advisory_severity(_advisory([("CVSS_V2", V2_TEN)], label="CRITICAL"))
    assert (result.level, result.score, result.source) == (Severity.HIGH, 10.0, "CVSS_V2")


def test_malformed_newer_vector_is_skipped_for_the_next_usable_one() -> None:
    broken_v4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H"
    result = advisory_severity(
        _advisory([("CVSS_V4", broken_v4), ("CVSS_V3", V30_HIGH), ("CVSS_V2", V2_LOW)])
    )
    assert (result.level, result.score, result.vector, result.source) == (
        Severity.HIGH,
        7.5,
        V30_HIGH,
        "CVSS_V3",
    )
    assert len(result.problems) == 1
    assert broken_v4 in result.problems[0]


def test_all_vectors_malformed_falls_back_to_the_label() -> None:
    result = advisory_severity(
        _advisory([("CVSS_V3", "CVSS:3.1/AV:N"), ("CVSS_V4", "nonsense")], label="high")
    )
    assert (result.level, result.score, result.source) == (Severity.HIGH, None, "label")
    assert len(result.problems) == 2


def test_surrounding_whitespace_in_a_vector_is_tolerated() -> None:
    result = advisory_severity(_advisory([("CVSS_V3", f"  {V31_CRITICAL}\n")]))
    assert (result.level, result.vector, result.source) == (Severity.CRITICAL, V31_CRITICAL, "CVSS_V3")


def test_non_cvss_severity_entries_are_ignored() -> None:
    result = advisory_severity(_advisory([("Ubuntu", "high")], label="low"))
    assert (result.level, result.source) == (Severity.LOW, "label")
    assert result.problems == ()


@pytest.mark.parametrize(
    ("label", "level"),
    [
        ("CRITICAL", Severity.CRITICAL),
        ("Critical", Severity.CRITICAL),
        ("HIGH", Severity.HIGH),
        ("high", Severity.HIGH),
        ("MODERATE", Severity.MEDIUM),
        ("Moderate", Severity.MEDIUM),
        ("medium", Severity.MEDIUM),
        ("Low", Severity.LOW),
        (" low ", Severity.LOW),
        ("none", Severity.NONE),
    ],
)
def test_label_fallback_is_case_insensitive(label: str, level: Severity) -> None:
    result = advisory_severity(_advisory(label=label))
    assert (result.level, result.score, result.vector, result.source) == (level, None, None, "label")


@pytest.mark.parametrize("label", [None, "", "severe", 7, True])
def test_no_vector_and_no_usable_label_is_medium_unknown(label: object) -> None:
    result = advisory_severity(_advisory(label=label))
    assert (result.level, result.score, result.vector, result.source) == (
        Severity.MEDIUM,
        None,
        None,
        "unknown",
    )


def test_no_severity_at_all_is_medium_unknown() -> None:
    result = advisory_severity(msgspec.convert({"id": "PXSA-TEST-2"}, Advisory))
    assert (result.level, result.source, result.problems) == (Severity.MEDIUM, "unknown", ())


@pytest.mark.parametrize(("kind", "vector"), [("CVSS_V3", V31_ZERO), ("CVSS_V4", V4_ZERO)])
def test_zero_score_is_none(kind: str, vector: str) -> None:
    result = advisory_severity(_advisory([(kind, vector)], label="CRITICAL"))
    assert (result.level, result.score) == (Severity.NONE, 0.0)
