"""SemVer 2.0.0 parsing and precedence (§9-§11), checked against the `semver` library."""

from __future__ import annotations

import functools
import itertools

import pytest
import semver
from hypothesis import given
from hypothesis import strategies as st

from powerx_governance.versioning.semver import InvalidVersionError, Version, parse_version

# --- strategies: valid SemVer 2.0.0 strings -------------------------------------------------------

# Small numbers collide often (equal cores exercise the pre-release rules); big ones check that
# numeric parts compare as numbers, not strings.
_number = st.one_of(st.integers(0, 3), st.integers(0, 10**12))
_numeric_id = _number.map(str)
# An alphanumeric identifier has at least one non-digit; digits-first ones (`0a`) may lead with 0.
_alnum_id = st.one_of(
    st.sampled_from(["alpha", "beta", "rc", "security", "a", "b", "A", "Z", "-", "0a", "x-y", "rc-1"]),
    st.from_regex(r"[0-9A-Za-z-]{0,4}[A-Za-z-][0-9A-Za-z-]{0,4}", fullmatch=True),
)
_prerelease = st.lists(st.one_of(_numeric_id, _alnum_id), min_size=1, max_size=4).map(".".join)
_security = st.integers(0, 12).map(lambda n: f"security.{n}")
_build = st.lists(st.from_regex(r"[0-9A-Za-z-]{1,6}", fullmatch=True), min_size=1, max_size=3).map(".".join)


@st.composite
def _core(draw: st.DrawFn) -> str:
    return f"{draw(_number)}.{draw(_number)}.{draw(_number)}"


cores = _core()
prereleases = st.one_of(_prerelease, _security)


@st.composite
def _version_text(draw: st.DrawFn) -> str:
    text = draw(cores)
    if draw(st.booleans()):
        text += "-" + draw(prereleases)
    if draw(st.integers(0, 3)) == 0:
        text += "+" + draw(_build)
    return text


version_texts = _version_text()
versions = version_texts.map(parse_version)


def _reference_cmp(a: str, b: str) -> int:
    return semver.Version.parse(a).compare(b)


def _cmp(a: Version, b: Version) -> int:
    return (a > b) - (a < b)


# --- properties --------------------------------------------------------------------------------


@given(version_texts)
def test_valid_strings_parse_and_keep_their_parts(text: str) -> None:
    version = parse_version(text)
    reference = semver.Version.parse(text)
    assert (version.major, version.minor, version.patch) == (
        reference.major,
        reference.minor,
        reference.patch,
    )
    assert version.prerelease == reference.prerelease
    assert version.build == reference.build
    assert version.is_prerelease is (reference.prerelease is not None)
    assert str(version) == text


@given(version_texts, version_texts)
def test_precedence_matches_semver_library(a: str, b: str) -> None:
    expected = _reference_cmp(a, b)
    va, vb = parse_version(a), parse_version(b)
    assert _cmp(va, vb) == expected
    assert (va.key < vb.key) is (expected < 0)
    assert (va.key == vb.key) is (expected == 0)
    if va == vb:
        assert hash(va) == hash(vb)


@given(cores, st.one_of(st.none(), prereleases), _build, _build)
def test_build_metadata_is_ignored_in_precedence(
    core: str, pre: str | None, build_a: str, build_b: str
) -> None:
    base = core if pre is None else f"{core}-{pre}"
    plain, with_a, with_b = (
        parse_version(base),
        parse_version(f"{base}+{build_a}"),
        parse_version(f"{base}+{build_b}"),
    )
    assert plain == with_a == with_b
    assert plain.key == with_a.key == with_b.key
    assert hash(plain) == hash(with_a) == hash(with_b)
    assert not with_a < with_b
    assert not with_b < with_a
    assert len({plain, with_a, with_b}) == 1


@given(cores, prereleases, st.one_of(st.just(""), _build.map(lambda b: "+" + b)))
def test_release_sorts_after_all_its_prereleases(core: str, pre: str, build: str) -> None:
    release = parse_version(core + build)
    candidate = parse_version(f"{core}-{pre}")
    assert candidate < release
    assert candidate.is_prerelease
    assert not release.is_prerelease


@given(st.integers(0, 50), st.integers(0, 50), st.integers(1, 50), st.integers(0, 10**6))
def test_security_prerelease_sits_between_previous_patch_and_release(
    major: int, minor: int, patch: int, n: int
) -> None:
    fix = parse_version(f"{major}.{minor}.{patch}-security.{n}")
    assert parse_version(f"{major}.{minor}.{patch - 1}") < fix < parse_version(f"{major}.{minor}.{patch}")
    assert fix < parse_version(f"{major}.{minor}.{patch}-security.{n + 1}")
    assert fix < parse_version(f"{major}.{minor}.{patch}-security.{n}.1")


def test_security_release_example() -> None:
    fix = parse_version("1.3.1-security.1")
    assert fix < parse_version("1.3.1")
    assert fix > parse_version("1.3.0")
    assert fix > parse_version("1.3.1-rc.1")  # "security" > "rc" in ASCII order
    assert fix < parse_version("1.3.1-security.2") < parse_version("1.3.1-security.10")


@given(versions, versions)
def test_order_is_antisymmetric_and_total(a: Version, b: Version) -> None:
    assert sum((a < b, a == b, a > b)) == 1
    if a <= b <= a:
        assert a == b
    assert (a < b) is (b > a)
    assert (a <= b) is (not a > b)


@given(versions, versions, versions)
def test_order_is_transitive(a: Version, b: Version, c: Version) -> None:
    x, y, z = sorted((a, b, c))
    assert x <= y <= z
    assert x <= z
    for p, q, r in itertools.permutations((a, b, c)):
        if p <= q <= r:
            assert p <= r
        if p < q < r:
            assert p < r


@given(st.lists(version_texts, max_size=12))
def test_sorting_agrees_with_semver_library(texts: list[str]) -> None:
    ours = [v.key for v in sorted(parse_version(t) for t in texts)]
    reference = sorted(texts, key=functools.cmp_to_key(_reference_cmp))
    assert ours == [parse_version(t).key for t in reference]


@given(version_texts)
def test_v_prefix_is_accepted_and_stripped(text: str) -> None:
    assert parse_version("v" + text) == parse_version(text)
    assert str(parse_version("v" + text)) == text


# --- SemVer §11 examples ---------------------------------------------------------------------

SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "2.0.0",
    "2.1.0",
    "2.1.1",
]


def test_spec_section_11_example_chain() -> None:
    parsed = [parse_version(t) for t in SPEC_ORDER]
    for lower, higher in itertools.pairwise(parsed):
        assert lower < higher, (lower, higher)
    for i, j in itertools.combinations(range(len(parsed)), 2):
        assert parsed[i] < parsed[j]
    shuffled = parsed[3:] + parsed[:3]
    assert sorted(shuffled) == parsed


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("1.0.0", "2.0.0"),
        ("2.0.0", "2.1.0"),
        ("2.1.0", "2.1.1"),
        ("1.9.0", "1.10.0"),  # numeric, not lexical
        ("1.0.0-2", "1.0.0-10"),  # numeric identifiers compare numerically
        ("1.0.0-99", "1.0.0-a"),  # numeric < alphanumeric
        ("1.0.0-B", "1.0.0-a"),  # ASCII order: uppercase first
        ("1.0.0-alpha", "1.0.0-alpha.0"),  # a larger set of fields wins when all before are equal
        ("1.0.0-1", "1.0.0-0a"),  # "0a" is alphanumeric, so it sorts above any number
        ("1.0.0-rc.1", "1.0.0-rc.1.0"),
        ("1.0.0-security.9", "1.0.0-security.10"),
        ("0.0.0-0", "0.0.0"),  # the lowest version there is, below every release
    ],
)
def test_precedence_pairs(lower: str, higher: str) -> None:
    assert parse_version(lower) < parse_version(higher)
    assert _reference_cmp(lower, higher) == -1


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("1.0.0+build.1", "1.0.0+build.2"),
        ("1.0.0-rc.1+x", "1.0.0-rc.1"),
        ("v1.2.3", "1.2.3"),
        ("V1.2.3", "1.2.3"),
    ],
)
def test_equal_precedence(a: str, b: str) -> None:
    assert parse_version(a) == parse_version(b)


# --- invalid strings -------------------------------------------------------------------------

INVALID = [
    "",
    "1",
    "1.2",
    "1.2.3.4",
    "01.2.3",
    "1.02.3",
    "1.2.03",
    "00.0.0",
    "1.2.3-01",  # numeric pre-release identifiers must not have leading zeros
    "1.2.3-alpha.01",
    "1.2.3-",
    "1.2.3+",
    "1.2.3-+build",
    "1.2.3-alpha..1",  # empty identifier
    "1.2.3-alpha.",
    "1.2.3-.alpha",
    "1.2.3+build..1",
    "1.2.3+.build",
    "1.2.3-alpha_1",
    "1.2.3-alpha#1",
    "1.2.3+build$",
    "1.2.3 -alpha",
    "1.2.3-al pha",
    "a.b.c",
    "1.x.3",
    "1.2.*",
    "-1.2.3",
    "1.-2.3",
    "1..3",
    ".1.2.3",
    "1.2.3.",
    "vv1.2.3",
    "version 1.2.3",
    "1.2.3-straße",
    "\u0661.\u0662.\u0663",  # Arabic-Indic digits are not ASCII digits
    "1.2.3-β",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_strings_raise(text: str) -> None:
    with pytest.raises(InvalidVersionError) as info:
        parse_version(text)
    assert info.value.text == text
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)


@st.composite
def _invalid_text(draw: st.DrawFn) -> str:
    """Mutations of a valid version that SemVer 2.0.0 forbids."""
    major, minor, patch = draw(st.integers(0, 99)), draw(st.integers(0, 99)), draw(st.integers(0, 99))
    kind = draw(st.sampled_from(["lead-core", "lead-pre", "empty-pre", "empty-build", "two", "four"]))
    if kind == "lead-core":
        parts = [str(major), str(minor), str(patch)]
        index = draw(st.integers(0, 2))
        parts[index] = "0" + parts[index]
        return ".".join(parts)
    core = f"{major}.{minor}.{patch}"
    if kind == "lead-pre":
        return f"{core}-{draw(_alnum_id)}.0{draw(st.integers(0, 999))}"
    if kind == "empty-pre":
        ids = draw(st.lists(st.one_of(_alnum_id, _numeric_id), min_size=1, max_size=3))
        ids.insert(draw(st.integers(0, len(ids))), "")
        return f"{core}-{'.'.join(ids)}"
    if kind == "empty-build":
        ids = draw(st.lists(st.from_regex(r"[0-9A-Za-z-]{1,4}", fullmatch=True), min_size=1, max_size=3))
        ids.insert(draw(st.integers(0, len(ids))), "")
        return f"{core}+{'.'.join(ids)}"
    if kind == "two":
        return f"{major}.{minor}"
    return f"{core}.{draw(st.integers(0, 99))}"


@given(_invalid_text())
def test_generated_invalid_strings_raise(text: str) -> None:
    with pytest.raises(InvalidVersionError):
        parse_version(text)
    with pytest.raises(ValueError, match="not valid SemVer"):
        semver.Version.parse(text)  # the reference agrees they are invalid
