"""OSV range evaluation (DESIGN §5.1) against real RustSec, Go and PyPA advisory ranges.

Each record of `advisories.jsonl` becomes a PowerX OSV advisory; the verdicts of
`affected_specs(...)[plugin].affects(v)` at the range bounds (and just beside them) are compared
with an independent reference: a version is affected when some `{introduced, fixed |
last_affected}` pair of the record covers it, by the `semver` library's precedence.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
import pytest
import semver

from powerx_governance.catalog_records import Advisory
from powerx_governance.policy.matching import AffectedSpec, affected_specs
from powerx_governance.versioning.semver import parse_version
from tests.shared_data import require_shared

BEGINNING = ("0", "0.0.0-0")  # OSV's "beginning of time", and RustSec's synthetic spelling of it
FAR_FUTURE = "999999.0.0"


@cache
def _records() -> tuple[dict[str, Any], ...]:
    with require_shared("data/advisories/advisories.jsonl").open(encoding="utf-8") as handle:
        return tuple(json.loads(line) for line in handle if line.strip())


# --- the reference --------------------------------------------------------------------------


def _ref(text: str) -> semver.Version:
    """The `semver` library's reading of a bound (Go tags may carry a `v`)."""
    return semver.Version.parse(text[1:] if text[:1] in ("v", "V") else text)


@dataclass(frozen=True, slots=True)
class Pair:
    """One `affected_ranges` entry: introduced (None = beginning of time) up to fixed/last_affected."""

    introduced: str
    end: str | None  # None = no fix
    end_kind: str  # "fixed" | "last_affected"

    def covers(self, x: semver.Version) -> bool:
        if self.introduced not in BEGINNING and x < _ref(self.introduced):
            return False
        if self.end is None:
            return True
        end = _ref(self.end)
        return x < end if self.end_kind == "fixed" else x <= end

    def events(self) -> list[dict[str, str]]:
        events = [{"introduced": self.introduced}]
        if self.end is not None:
            events.append({self.end_kind: self.end})
        return events


def _pairs(record: dict[str, Any]) -> list[Pair] | None:
    """The record's ranges, or None when a bound is not SemVer."""
    pairs = []
    for raw in record["affected_ranges"] or []:
        kind = "last_affected" if raw.get("last_affected") is not None else "fixed"
        pair = Pair(str(raw["introduced"]), raw.get(kind), kind)
        for bound in (pair.introduced, pair.end):
            if bound is None or bound in BEGINNING:
                continue
            try:
                _ref(bound)
                parse_version(bound)
            except ValueError:
                return None
        pairs.append(pair)
    return pairs


def _probes(pairs: list[Pair]) -> dict[str, str]:
    """Versions worth asking about, each with the clause of the brief it checks."""
    probes: dict[str, str] = {FAR_FUTURE: "(e) far future"}
    for pair in pairs:
        if pair.introduced not in BEGINNING:
            probes.setdefault(pair.introduced, "(a) introduced")
            low = _ref(pair.introduced)
            if low.patch > 0:
                probes.setdefault(f"{low.major}.{low.minor}.{low.patch - 1}", "(d) just below introduced")
        if pair.end is not None and pair.end_kind == "fixed":
            probes.setdefault(pair.end, "(b) fixed")
        elif pair.end is not None:
            probes.setdefault(pair.end, "(c) last_affected")
            high = _ref(pair.end)
            probes.setdefault(f"{high.major}.{high.minor}.{high.patch + 1}", "(c) just above last_affected")
    return probes


def _expected(pairs: list[Pair], version: str) -> bool:
    x = _ref(version)
    return any(pair.covers(x) for pair in pairs)


def _naive(clause: str) -> bool | None:
    """What the clause says on its own, before other ranges of the record are considered."""
    return {
        "(a) introduced": True,
        "(b) fixed": False,
        "(c) last_affected": True,
        "(c) just above last_affected": False,
        "(d) just below introduced": False,
    }.get(clause)


# --- building OSV advisories ------------------------------------------------------------------


def _spec(
    record: dict[str, Any], ranges: list[list[dict[str, str]]], versions: Sequence[str] = ()
) -> AffectedSpec:
    package = record["package"]
    raw = {
        "id": record["id"],
        "affected": [
            {
                "package": {"ecosystem": "PowerX", "name": package},
                "ranges": [{"type": "SEMVER", "events": events} for events in ranges],
                "versions": list(versions),
            },
            # another package's range must not leak into this one
            {
                "package": {"ecosystem": "PowerX", "name": package + ".other"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}],
            },
        ],
    }
    return affected_specs(msgspec.convert(raw, Advisory))[package]


def _one_range_per_pair(pairs: list[Pair]) -> list[list[dict[str, str]]]:
    return [pair.events() for pair in pairs]


def _single_range(pairs: list[Pair]) -> list[list[dict[str, str]]]:
    """All events in one range, as Go and RustSec publish them."""
    return [[event for pair in pairs for event in pair.events()]]


def _disjoint(pairs: list[Pair]) -> bool:
    """Pairs that one OSV range can hold without changing their meaning (ordered, no overlap)."""

    def low(pair: Pair) -> semver.Version:
        return _ref("0.0.0-0" if pair.introduced in BEGINNING else pair.introduced)

    ordered = sorted(pairs, key=low)
    for first, second in itertools.pairwise(ordered):
        if first.end is None or _ref(first.end) >= low(second):
            return False
    return all(pair.end is None or _ref(pair.end) > low(pair) for pair in pairs)


# --- the checks -------------------------------------------------------------------------------

ECOSYSTEMS = {"crates.io": 1000, "Go": 5000, "PyPI": 500}  # PyPI: the ranges whose bounds happen to be SemVer


@pytest.mark.parametrize("ecosystem", list(ECOSYSTEMS))
def test_real_ranges_affect_what_their_bounds_say(ecosystem: str) -> None:
    checked = skipped = 0
    clauses: Counter[str] = Counter()
    covered_elsewhere: Counter[str] = Counter()
    mismatches: list[str] = []
    for record in _records():
        if record["ecosystem"] != ecosystem or not record["affected_ranges"]:
            continue
        pairs = _pairs(record)
        if pairs is None:
            skipped += 1
            continue
        checked += 1
        spec = _spec(record, _one_range_per_pair(pairs))
        for version, clause in _probes(pairs).items():
            expected = _expected(pairs, version)
            clauses[clause] += 1
            if _naive(clause) not in (None, expected):
                covered_elsewhere[clause] += 1  # another range of the record, or an empty range
            if spec.affects(parse_version(version)) is not expected:
                mismatches.append(
                    f"{record['id']} {record['package']} {version} {clause}: expected {expected}"
                )
    summary = (
        f"{ecosystem}: {checked} records checked, {skipped} skipped (bounds not SemVer), "
        f"probes {dict(clauses)}, overridden by another range {dict(covered_elsewhere)}"
    )
    assert mismatches == [], f"{summary}\n{len(mismatches)} wrong verdicts:\n" + "\n".join(mismatches[:30])
    assert checked > ECOSYSTEMS[ecosystem], summary


def test_last_affected_is_exercised_by_real_data() -> None:
    records = [r for r in _records() if any("last_affected" in raw for raw in r["affected_ranges"] or [])]
    assert records, "no record with last_affected"
    for record in records:
        pairs = _pairs(record)
        assert pairs is not None
        spec = _spec(record, _one_range_per_pair(pairs))
        for pair in pairs:
            assert pair.end is not None
            assert spec.affects(parse_version(pair.end))
            high = _ref(pair.end)
            assert not spec.affects(parse_version(f"{high.major}.{high.minor}.{high.patch + 1}"))


Reorder = Callable[[list[Any], random.Random], list[Any]]


def _shuffled(items: list[Any], rng: random.Random) -> list[Any]:
    copy = list(items)
    rng.shuffle(copy)
    return copy


def _reversed(items: list[Any], _rng: random.Random) -> list[Any]:
    return items[::-1]


@pytest.mark.parametrize("reorder", [_shuffled, _reversed], ids=["shuffled", "reversed"])
def test_event_order_does_not_change_verdicts(reorder: Reorder) -> None:
    checked = skipped = single_range_checked = 0
    mismatches: list[str] = []
    for record in _records():
        if record["ecosystem"] not in ECOSYSTEMS or len(record["affected_ranges"] or []) < 2:
            continue
        pairs = _pairs(record)
        if pairs is None:
            skipped += 1
            continue
        checked += 1
        rng = random.Random(f"{record['id']}/{record['package']}")  # noqa: S311 - reproducible test order
        probes = [parse_version(v) for v in _probes(pairs)]

        per_pair = _one_range_per_pair(pairs)
        baseline = [_spec(record, per_pair).affects(v) for v in probes]
        moved = reorder([reorder(events, rng) for events in per_pair], rng)
        if [_spec(record, moved).affects(v) for v in probes] != baseline:
            mismatches.append(f"{record['id']} {record['package']}: one range per pair, order {moved}")

        single = _single_range(pairs)
        single_verdicts = [_spec(record, single).affects(v) for v in probes]
        moved_single = [reorder(single[0], rng)]
        if [_spec(record, moved_single).affects(v) for v in probes] != single_verdicts:
            mismatches.append(f"{record['id']} {record['package']}: single range, order {moved_single}")
        if _disjoint(pairs):
            single_range_checked += 1
            if single_verdicts != baseline:
                mismatches.append(
                    f"{record['id']} {record['package']}: single range differs from per-pair ranges"
                )
    summary = (
        f"{checked} multi-range records checked ({single_range_checked} also as one range), "
        f"{skipped} skipped (bounds not SemVer)"
    )
    assert mismatches == [], f"{summary}\n" + "\n".join(mismatches[:30])
    assert checked > 1000, summary
    assert single_range_checked > 500, summary


def _semver_or_none(text: str) -> semver.Version | None:
    try:
        parse_version(text)
        return _ref(text)
    except ValueError:
        return None


def test_pypa_listed_versions_are_affected() -> None:
    checked = skipped = versions_checked = versions_skipped = 0
    mismatches: list[str] = []
    for record in _records():
        if record["ecosystem"] != "PyPI" or not record["affected_versions"]:
            continue
        listed = [v for v in record["affected_versions"] if _semver_or_none(v) is not None]
        versions_skipped += len(record["affected_versions"]) - len(listed)
        if not listed:
            skipped += 1
            continue
        checked += 1
        versions_checked += len(listed)
        spec = _spec(record, [], listed)
        mismatches += [
            f"{record['id']} {v}: listed but not affected"
            for v in listed
            if not spec.affects(parse_version(v))
        ]
        highest = max(_ref(v) for v in listed)
        outside = [
            f"{highest.major}.{highest.minor}.{highest.patch + 1}",
            f"{highest.major + 1}.0.0",
            "0.0.0-0",
        ]
        listed_keys = {parse_version(v).key for v in listed}
        mismatches += [
            f"{record['id']} {v}: not listed but affected"
            for v in outside
            if parse_version(v).key not in listed_keys and spec.affects(parse_version(v))
        ]
    summary = (
        f"PyPI: {checked} records checked ({versions_checked} listed versions), {skipped} records and "
        f"{versions_skipped} versions skipped (not SemVer)"
    )
    assert mismatches == [], f"{summary}\n" + "\n".join(mismatches[:30])
    assert checked > 1000, summary
