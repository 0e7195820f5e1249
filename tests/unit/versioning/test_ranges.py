"""Constraint ranges: every npm and comma-style form, errors, and precedence properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerx_governance.versioning.ranges import ConstraintError, parse_constraint
from powerx_governance.versioning.semver import Version, parse_version

# --- table: constraint -> versions it admits / rejects ----------------------------------------
# Membership is plain SemVer precedence (pre-releases are ordinary versions) and desugared upper
# bounds end in `-0`, so `<2.0.0-0` keeps out `2.0.0-rc.1` while `<2.0.0` lets it in.

Case = tuple[str, list[str], list[str]]

PRIMITIVES: list[Case] = [
    ("1.2.3", ["1.2.3", "1.2.3+build.7"], ["1.2.2", "1.2.4", "1.2.3-rc.1"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4", "1.2.3-rc.1"]),
    ("==1.2.3", ["1.2.3"], ["1.2.4"]),
    ("1.2.3-beta.2", ["1.2.3-beta.2"], ["1.2.3-beta.3", "1.2.3"]),
    (">1.2.3", ["1.2.4", "1.2.4-0", "2.0.0"], ["1.2.3", "1.2.3-rc.1", "1.0.0"]),
    (">=1.2.3", ["1.2.3", "9.9.9"], ["1.2.3-rc.1", "1.2.2"]),
    ("<1.2.3", ["1.2.2", "1.2.3-rc.1", "0.0.0"], ["1.2.3", "1.2.4"]),
    ("<=1.2.3", ["1.2.3", "1.2.3-rc.1"], ["1.2.4-0", "1.2.4"]),
    (">=1.2.3-security.1", ["1.2.3-security.1", "1.2.3-security.2", "1.2.3"], ["1.2.3-rc.1", "1.2.2"]),
    # partial versions
    ("1.2", ["1.2.0", "1.2.99"], ["1.2.0-rc.1", "1.3.0-0", "1.1.9"]),
    ("=1", ["1.0.0", "1.99.0"], ["2.0.0-0", "0.9.9"]),
    (">1.2", ["1.3.0-0", "1.3.0"], ["1.2.99", "1.2.0"]),
    (">1", ["2.0.0-0", "2.0.0"], ["1.99.99"]),
    (">=1.2", ["1.2.0", "1.3.0"], ["1.2.0-rc.1", "1.1.9"]),
    ("<1.2", ["1.1.99", "1.1.99-rc.1"], ["1.2.0-0", "1.2.0-rc.1", "1.2.0"]),
    ("<1", ["0.99.99"], ["1.0.0-0", "1.0.0"]),
    ("<=1.2", ["1.2.99", "1.2.99-rc.1"], ["1.3.0-0", "1.3.0"]),
    ("<=1", ["1.99.99"], ["2.0.0-0"]),
    # full-version pre-releases: plain precedence, no npm-style exclusion
    (">1.0.0 <2.0.0", ["1.5.0-beta.1", "2.0.0-rc.1"], ["1.0.0", "2.0.0"]),
    ("!=1.2.3", ["1.2.2", "1.2.3-rc.1", "1.2.4"], ["1.2.3", "1.2.3+meta"]),
]

CARETS: list[Case] = [
    ("^1.2.3", ["1.2.3", "1.9.9", "1.2.4-rc.1"], ["1.2.2", "1.2.3-rc.1", "2.0.0-0", "2.0.0-rc.1", "2.0.0"]),
    ("^1.2", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0-0"]),
    ("^1", ["1.0.0", "1.99.99"], ["0.9.9", "2.0.0-0"]),
    ("^1.x", ["1.0.0", "1.99.99"], ["2.0.0-0"]),
    ("^1.2.x", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0-0"]),
    ("^1.2.3-beta.2", ["1.2.3-beta.2", "1.2.3-beta.10", "1.2.3", "1.5.0-alpha"], ["1.2.3-beta.1", "2.0.0-0"]),
    # ^0.x rules: the left-most non-zero part is the one that may not change
    ("^0.2.3", ["0.2.3", "0.2.99"], ["0.2.2", "0.3.0-0", "0.3.0", "1.0.0"]),
    ("^0.2", ["0.2.0", "0.2.99"], ["0.1.9", "0.3.0-0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.2", "0.0.4-0", "0.0.4", "0.1.0"]),
    ("^0.0.3-beta", ["0.0.3-beta", "0.0.3-pr.2", "0.0.3"], ["0.0.3-alpha", "0.0.4-0"]),
    ("^0.0", ["0.0.0", "0.0.99"], ["0.1.0-0", "0.1.0"]),
    ("^0.0.x", ["0.0.0", "0.0.99"], ["0.1.0-0"]),
    ("^0.0.0", ["0.0.0"], ["0.0.1-0", "0.0.1"]),
    ("^0", ["0.0.0", "0.99.99"], ["1.0.0-0"]),
    ("^0.x", ["0.0.0", "0.99.99"], ["1.0.0-0"]),
    ("^*", ["0.0.0", "99.0.0", "0.0.0-0"], []),
]

TILDES: list[Case] = [
    ("~1.2.3", ["1.2.3", "1.2.99"], ["1.2.2", "1.3.0-0", "1.3.0"]),
    ("~1.2", ["1.2.0", "1.2.99"], ["1.1.99", "1.3.0-0"]),
    ("~1", ["1.0.0", "1.99.0"], ["0.9.0", "2.0.0-0"]),
    ("~0.2.3", ["0.2.3", "0.2.9"], ["0.2.2", "0.3.0-0"]),
    ("~0.2", ["0.2.0", "0.2.9"], ["0.3.0-0"]),
    ("~0", ["0.0.0", "0.9.9"], ["1.0.0-0"]),
    ("~1.2.3-beta.2", ["1.2.3-beta.2", "1.2.3", "1.2.4-rc.1"], ["1.2.3-beta.1", "1.3.0-0"]),
    ("~1.x", ["1.0.0", "1.5.0"], ["2.0.0-0"]),
    ("~>1.2.3", ["1.2.3", "1.2.9"], ["1.3.0-0"]),
]

X_RANGES: list[Case] = [
    ("*", ["0.0.0", "1.2.3-rc.1", "99.99.99", "0.0.0-0"], []),
    ("", ["0.0.0", "5.0.0-beta"], []),
    ("x", ["0.0.0", "3.0.0"], []),
    ("X", ["3.0.0"], []),
    ("1.x", ["1.0.0", "1.99.99"], ["0.99.99", "1.0.0-rc.1", "2.0.0-0"]),
    ("1.X", ["1.0.0"], ["2.0.0-0"]),
    ("1.*", ["1.4.0"], ["2.0.0"]),
    ("1.x.x", ["1.0.0", "1.9.9"], ["2.0.0-0"]),
    ("1.2.x", ["1.2.0", "1.2.99"], ["1.1.99", "1.3.0-0"]),
    ("1.2.*", ["1.2.5"], ["1.3.0"]),
    ("=1.x", ["1.1.0"], ["2.0.0"]),
    (">=1.x", ["1.0.0", "7.0.0"], ["0.99.99"]),
    (">1.x", ["2.0.0-0", "2.0.0"], ["1.99.99"]),
    ("<1.x", ["0.99.99"], ["1.0.0-0"]),
    ("<=1.2.x", ["1.2.99"], ["1.3.0-0"]),
    (">=*", ["0.0.0-0", "1.0.0"], []),
    ("<*", [], ["0.0.0-0", "0.0.0", "1.0.0"]),
    (">*", [], ["0.0.0", "1.0.0"]),
]

HYPHENS: list[Case] = [
    ("1.2.3 - 2.3.4", ["1.2.3", "2.0.0", "2.3.4", "2.3.4-rc.1"], ["1.2.2", "1.2.3-rc.1", "2.3.5-0", "2.3.5"]),
    ("1.2 - 2.3.4", ["1.2.0", "2.3.4"], ["1.1.99", "2.3.5"]),
    ("1.2.3 - 2.3", ["1.2.3", "2.3.99"], ["1.2.2", "2.4.0-0", "2.4.0"]),
    ("1.2.3 - 2", ["1.2.3", "2.99.99"], ["3.0.0-0", "3.0.0"]),
    ("1 - 2", ["1.0.0", "2.99.0"], ["0.99.99", "3.0.0-0"]),
    ("* - 2", ["0.0.0", "2.9.9"], ["3.0.0-0"]),
    ("1.2.3 - *", ["1.2.3", "99.0.0"], ["1.2.2"]),
    ("1.2.3-rc.1 - 1.2.3", ["1.2.3-rc.1", "1.2.3-rc.2", "1.2.3"], ["1.2.3-beta", "1.2.4-0"]),
    ("v1.2.3 - v2.3.4", ["1.2.3", "2.3.4"], ["2.3.5"]),
    ("  1.2.3   -   2.3.4  ", ["1.2.3", "2.3.4"], ["2.3.5"]),
    ("1.2.3\t-\t2.3.4", ["2.3.4"], ["2.3.5"]),
]

UNIONS: list[Case] = [
    ("1.2.7 || >=1.2.9 <2.0.0", ["1.2.7", "1.2.9", "1.4.6"], ["1.2.8", "2.0.0", "1.2.6"]),
    ("^1.2 || ^3.0", ["1.5.0", "3.1.0"], ["2.0.0", "4.0.0-0"]),
    ("1.2.3 - 1.5.0 || 2.x", ["1.4.0", "2.5.0"], ["1.5.1", "3.0.0-0"]),
    ("<1.0.0||>=2.0.0", ["0.9.0", "2.0.0"], ["1.0.0", "1.99.0"]),
    (">= 1.2, < 1.3 || >= 2.0, < 2.1", ["1.2.5", "2.0.9"], ["1.3.0", "2.1.0", "1.9.0"]),
    ("~1.2 ||   ~1.4", ["1.2.1", "1.4.9"], ["1.3.0"]),
]

WHITESPACE_AND_PREFIXES: list[Case] = [
    (">= 1.2.0 < 2.0.0", ["1.2.0", "1.99.0"], ["2.0.0", "1.1.0"]),
    ("  >=1.2.0    <2.0.0  ", ["1.5.0"], ["2.0.0"]),
    (">=1.2.0\t<2.0.0", ["1.5.0"], ["2.0.0"]),
    (">=\t1.2.0", ["1.2.0"], ["1.1.0"]),
    ("^ 1.2.3", ["1.2.3"], ["2.0.0"]),
    ("~ 1.2.3", ["1.2.3"], ["1.3.0"]),
    ("v1.2.3", ["1.2.3"], ["1.2.4"]),
    ("=v1.2.3", ["1.2.3"], ["1.2.4"]),
    (">=v1.2.3", ["1.2.3"], ["1.2.2"]),
    ("^v1.2.3", ["1.9.0"], ["2.0.0"]),
    ("~V1.2", ["1.2.0"], ["1.3.0"]),
    ("v1.x", ["1.0.0"], ["2.0.0"]),
    ("^1.2.3+build.5", ["1.2.3", "1.5.0"], ["2.0.0"]),
]

COMMA_STYLE: list[Case] = [
    (">= 1.2, < 2", ["1.2.0", "1.99.99"], ["1.1.99", "1.2.0-rc.1", "2.0.0-0", "2.0.0"]),
    (">=1.2,<2", ["1.2.0", "1.99.99"], ["1.1.99", "2.0.0-0"]),
    (">=1.2 ,  <2", ["1.5.0"], ["2.0.0"]),
    (">= 1.2.0, < 2.0.0, != 1.5.0", ["1.2.0", "1.4.9", "1.5.1", "1.99.0"], ["1.5.0", "2.0.0"]),
    (">=1.2.0,!=1.2.5,<1.3.0", ["1.2.4", "1.2.6"], ["1.2.5", "1.3.0"]),
    ("!=1.2.3-security.1", ["1.2.3", "1.2.3-security.2"], ["1.2.3-security.1"]),
    ("~1.2, != 1.2.4", ["1.2.3"], ["1.2.4", "1.3.0"]),
    ("^1.2.3, <1.5", ["1.4.9"], ["1.5.0-0", "1.5.0"]),
    ("= 1.2.3", ["1.2.3"], ["1.2.4"]),
    ("== 1.2.3", ["1.2.3"], ["1.2.4"]),
    ("> 1.2, <= 2.0", ["1.3.0", "2.0.99"], ["1.2.9", "2.1.0-0"]),
    (">= v1.2.0, < v2", ["1.2.0"], ["2.0.0"]),
]

TABLE = [
    pytest.param(text, admitted, rejected, id=f"{group}:{text!r}")
    for group, cases in [
        ("primitive", PRIMITIVES),
        ("caret", CARETS),
        ("tilde", TILDES),
        ("x-range", X_RANGES),
        ("hyphen", HYPHENS),
        ("union", UNIONS),
        ("spacing", WHITESPACE_AND_PREFIXES),
        ("comma", COMMA_STYLE),
    ]
    for text, admitted, rejected in cases
]


@pytest.mark.parametrize(("text", "admitted", "rejected"), TABLE)
def test_constraint_table(text: str, admitted: list[str], rejected: list[str]) -> None:
    constraint = parse_constraint(text)
    wrong_out = [v for v in admitted if not constraint.admits(parse_version(v))]
    wrong_in = [v for v in rejected if constraint.admits(parse_version(v))]
    assert (wrong_out, wrong_in) == ([], []), f"{text!r}: should admit {wrong_out}, should reject {wrong_in}"


@pytest.mark.parametrize(
    ("text", "desugared"),
    [
        ("^1.2.3", ">=1.2.3 <2.0.0-0"),
        ("^0.2.3", ">=0.2.3 <0.3.0-0"),
        ("^0.0.3", ">=0.0.3 <0.0.4-0"),
        ("~1.2.3", ">=1.2.3 <1.3.0-0"),
        ("1.x", ">=1.0.0 <2.0.0-0"),
        ("1.2.3 - 2.3", ">=1.2.3 <2.4.0-0"),
        (">1.2", ">=1.3.0-0"),
        ("<1.2", "<1.2.0-0"),
        ("<=1.2", "<1.3.0-0"),
    ],
)
def test_desugared_bounds(text: str, desugared: str) -> None:
    (conjunction,) = parse_constraint(text).alternatives
    assert " ".join(str(c) for c in conjunction) == desugared


def test_str_is_the_stripped_source_text() -> None:
    assert str(parse_constraint("  ^1.2.3 ")) == "^1.2.3"


# --- invalid constraints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        (">=1.2.3 <foo", "foo"),
        ("abc", "abc"),
        ("1.2.3.4", "1.2.3.4"),
        (">=1.2.3.4", "1.2.3.4"),
        ("1.x.3", "1.x.3"),
        ("x.1", "x.1"),
        ("1.2-beta", "1.2-beta"),
        ("^1-rc.1", "1-rc.1"),
        (">=1.2.3-01", "1.2.3-01"),
        (">=1.2.3-", "1.2.3-"),
        ("1.2.3+", "1.2.3+"),
        ("1.2.3-a..b", "1.2.3-a..b"),
        ("1..3", "1..3"),
        (">=1.2, , <2", "empty comparator"),
        (">=1.2,", "empty comparator"),
        (",>=1.2", "empty comparator"),
        (">=1.2 <2, !=1.5.0", ">=1.2 <2"),  # commas and spaces do not mix inside one alternative
        ("1.2.3 -2.3.4", "-2.3.4"),
        ("1.2.3- 2.3.4", "1.2.3-"),
        ("1.2.3 - 2.3.4 - 3", "-"),
        ("1.2.3 - 2.x.4", "2.x.4"),
        (">>1.2.3", ">>1.2.3"),
        ("=>1.2.3", "=>1.2.3"),
        (">=1.2.3 || <foo", "foo"),
        ("1.2.3 - foo", "foo"),
    ],
)
def test_invalid_constraints_name_the_bad_part(text: str, bad_part: str) -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint(text)
    assert info.value.text == text
    assert repr(text) in str(info.value)
    assert bad_part in info.value.detail


@pytest.mark.parametrize("value", [None, 5, 1.2])
def test_non_string_constraint_is_a_constraint_error(value: object) -> None:
    with pytest.raises(ConstraintError, match="expected a string"):
        parse_constraint(value)  # type: ignore[arg-type]  # deliberately not a string


@pytest.mark.parametrize("value", [["1.2.3"], {"version": "1.2.3"}])
def test_unhashable_constraint_is_a_constraint_error(value: object) -> None:
    with pytest.raises(ConstraintError, match="expected a string"):
        parse_constraint(value)  # type: ignore[arg-type]  # deliberately not a string


def test_not_equal_partial_error_names_the_constraint() -> None:
    with pytest.raises(ConstraintError) as info:
        parse_constraint(">=1.0.0, !=1.2")
    assert info.value.text == ">=1.0.0, !=1.2"
    assert "1.2" in info.value.detail
    assert "_Partial" not in str(info.value)


def test_not_equal_partial_is_rejected() -> None:
    with pytest.raises(ConstraintError, match="!= needs a full version"):
        parse_constraint("!=1.2")


def test_non_ascii_digit_in_hyphen_range_is_a_constraint_error() -> None:
    with pytest.raises(ConstraintError):
        parse_constraint("1.² - 2.0.0")


def test_non_ascii_decimal_digit_in_hyphen_range_is_rejected() -> None:
    with pytest.raises(ConstraintError):
        parse_constraint("\u0661.2.3 - 2.0.0")


@pytest.mark.parametrize("text", [">=01.2.3", "^01.2", "~1.02", "1.2.03 - 2.0.0"])
def test_leading_zeros_in_constraint_versions_are_rejected(text: str) -> None:
    with pytest.raises(ConstraintError):
        parse_constraint(text)


# --- properties ----------------------------------------------------------------------------

_number = st.one_of(st.integers(0, 3), st.integers(0, 10**6))
_numeric_id = _number.map(str)
_alnum_id = st.one_of(
    st.sampled_from(["alpha", "beta", "rc", "security", "a", "A", "-", "0a", "x-y"]),
    st.from_regex(r"[0-9A-Za-z-]{0,3}[A-Za-z-][0-9A-Za-z-]{0,3}", fullmatch=True),
)
_prerelease = st.one_of(
    st.lists(st.one_of(_numeric_id, _alnum_id), min_size=1, max_size=3).map(".".join),
    st.integers(0, 9).map(lambda n: f"security.{n}"),
    st.just("0"),
)
_build = st.from_regex(r"[0-9A-Za-z-]{1,5}(\.[0-9A-Za-z-]{1,5})?", fullmatch=True)


@st.composite
def _version_text(draw: st.DrawFn, major: st.SearchStrategy[int] = _number) -> str:
    text = f"{draw(major)}.{draw(_number)}.{draw(_number)}"
    if draw(st.booleans()):
        text += "-" + draw(_prerelease)
    if draw(st.integers(0, 4)) == 0:
        text += "+" + draw(_build)
    return text


version_texts = _version_text()
versions = version_texts.map(parse_version)
_ops = st.sampled_from([">", ">=", "<", "<=", "=", "!="])
comparators = st.tuples(_ops, version_texts)


def _holds(op: str, x: Version, bound: Version) -> bool:
    """Reference meaning of one comparator, by SemVer precedence."""
    return {
        ">": x > bound,
        ">=": x >= bound,
        "<": x < bound,
        "<=": x <= bound,
        "=": x == bound,
        "!=": x != bound,
    }[op]


@given(versions, versions, st.lists(versions, min_size=1, max_size=8))
def test_closed_interval_admits_exactly_the_versions_between(
    a: Version, b: Version, probes: list[Version]
) -> None:
    low, high = min(a, b), max(a, b)
    constraint = parse_constraint(f">={low.text} <={high.text}")
    for x in [*probes, low, high]:
        assert constraint.admits(x) is (low <= x <= high), (constraint.text, x)


@given(_version_text(major=st.integers(1, 20)), st.lists(versions, min_size=1, max_size=8))
def test_caret_with_nonzero_major(base_text: str, probes: list[Version]) -> None:
    base = parse_version(base_text)
    ceiling = parse_version(f"{base.major + 1}.0.0-0")
    constraint = parse_constraint(f"^{base_text}")
    neighbours = [
        base,
        ceiling,
        parse_version(f"{base.major + 1}.0.0-rc.1"),
        parse_version(f"{base.major}.999999.0"),
    ]
    for x in [*probes, *neighbours]:
        assert constraint.admits(x) is (base <= x < ceiling), (constraint.text, x)


@given(st.lists(comparators, min_size=1, max_size=3), st.lists(comparators, min_size=1, max_size=3), versions)
def test_union_admits_iff_either_side_does(
    left: list[tuple[str, str]], right: list[tuple[str, str]], x: Version
) -> None:
    a = " ".join(op + v for op, v in left)
    b = " ".join(op + v for op, v in right)
    union = parse_constraint(f"{a} || {b}")
    assert union.admits(x) is (parse_constraint(a).admits(x) or parse_constraint(b).admits(x))
    assert parse_constraint(f"{b}||{a}").admits(x) is union.admits(x)


@given(st.lists(comparators, min_size=1, max_size=4), st.lists(versions, min_size=1, max_size=6))
def test_comma_and_space_styles_agree(parts: list[tuple[str, str]], probes: list[Version]) -> None:
    spellings = [
        " ".join(op + v for op, v in parts),
        " ".join(f"{op} {v}" for op, v in parts),
        ", ".join(f"{op} {v}" for op, v in parts),
        ",".join(op + v for op, v in parts),
        " , ".join(op + v for op, v in parts),
    ]
    constraints = [parse_constraint(s) for s in spellings]
    bounds = [parse_version(v) for _, v in parts]
    for x in [*probes, *bounds]:
        expected = all(_holds(op, x, bound) for (op, _), bound in zip(parts, bounds, strict=True))
        assert [c.admits(x) for c in constraints] == [expected] * len(spellings), (spellings, x)


@given(comparators, versions)
def test_single_comparator_means_precedence(comparator: tuple[str, str], x: Version) -> None:
    op, text = comparator
    assert parse_constraint(op + text).admits(x) is _holds(op, x, parse_version(text))


@given(version_texts, versions)
def test_v_prefix_does_not_change_meaning(text: str, x: Version) -> None:
    for op in ("", "^", "~", ">=", "<"):
        assert parse_constraint(f"{op}v{text}").admits(x) is parse_constraint(op + text).admits(x)
