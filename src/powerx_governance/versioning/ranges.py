"""Constraint ranges: npm style (`>=1.2.0 <2.0.0`, `^1.2`, `~1.2.0`, `1.x`, `a - b`, `||`)
and comma-separated Go/Masterminds style (`>= 1.2, < 2`).

No maintained Python library parses both dialects with SemVer 2.0.0 precedence, so the
grammar is ours; versions themselves come from the `semver` library. Membership is plain
SemVer precedence: PowerX's `-security.N` releases are real releases, so pre-releases are not
excluded the way npm excludes them. Desugared upper bounds use `-0` (`^1.2.3` means
`>=1.2.3 <2.0.0-0`), so `^1.2.3` does not admit `2.0.0-rc.1`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from powerx_governance.versioning.semver import InvalidVersionError, PrecedenceKey, Version, parse_version

_OPS: Final[dict[str, Callable[[PrecedenceKey, PrecedenceKey], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}
_WILDCARDS: Final = frozenset({"x", "X", "*"})
_COMPARATOR = re.compile(r"^(?P<op>>=|<=|!=|==|>|<|=|\^|~>|~)?\s*(?P<ver>v?[0-9A-Za-z.*+-]*)$")
_OP_SPACE = re.compile(r"(>=|<=|!=|==|>|<|=|\^|~>|~)\s+")
_NUMBER = re.compile(r"0|[1-9][0-9]*")  # ASCII digits, no leading zeros (SemVer §2)
_HYPHEN = re.compile(r"^\s*(?P<low>\S+)\s+-\s+(?P<high>\S+)\s*$")


class ConstraintError(ValueError):
    """A constraint string is not a valid range."""

    def __init__(self, text: str, detail: str) -> None:
        super().__init__(f"invalid version constraint {text!r}: {detail}")
        self.text = text
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Comparator:
    op: str
    version: Version

    def admits(self, version: Version) -> bool:
        return _OPS[self.op](version.key, self.version.key)

    def __str__(self) -> str:
        return f"{self.op}{self.version}"


@dataclass(frozen=True, slots=True)
class Constraint:
    """A union (`||`) of intersections of comparators; empty intersection = any version."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    def admits(self, version: Version) -> bool:
        return any(all(c.admits(version) for c in conj) for conj in self.alternatives)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _Partial:
    major: int | None
    minor: int | None
    patch: int | None
    tail: str  # "-pre+build" when all three parts are present

    def floor(self) -> Version:
        return _v(self.major or 0, self.minor or 0, self.patch or 0, self.tail)

    def exact(self) -> bool:
        return self.patch is not None


def _v(major: int, minor: int, patch: int, tail: str = "") -> Version:
    return parse_version(f"{major}.{minor}.{patch}{tail}")


def _next_excluded(major: int, minor: int | None = None, patch: int | None = None) -> Version:
    """The `-0` bound just above a partial: `1` → `2.0.0-0`, `1.2` → `1.3.0-0`."""
    if minor is None:
        return _v(major + 1, 0, 0, "-0")
    if patch is None:
        return _v(major, minor + 1, 0, "-0")
    return _v(major, minor, patch + 1, "-0")


def _parse_partial(text: str, whole: str) -> _Partial:
    body = text[1:] if text[:1] in ("v", "V") else text
    if body in ("", *_WILDCARDS):
        return _Partial(None, None, None, "")
    split = re.search(r"[-+]", body)
    core, tail = (body[: split.start()], body[split.start() :]) if split else (body, "")
    parts = core.split(".")
    if len(parts) > 3:
        raise ConstraintError(whole, f"{text!r} has more than three version parts")
    nums: list[int | None] = []
    for part in parts:
        if part in _WILDCARDS:
            nums.append(None)
        elif _NUMBER.fullmatch(part):
            if nums and nums[-1] is None:
                raise ConstraintError(whole, f"{text!r} has a number after a wildcard")
            nums.append(int(part))
        else:
            raise ConstraintError(whole, f"{text!r} is not a version")
    nums += [None] * (3 - len(nums))
    if tail and nums[2] is None:
        raise ConstraintError(whole, f"{text!r}: a pre-release needs MAJOR.MINOR.PATCH")
    partial = _Partial(nums[0], nums[1], nums[2], tail)
    if partial.exact():
        try:
            partial.floor()
        except InvalidVersionError as exc:
            raise ConstraintError(whole, str(exc)) from exc
    return partial


def _caret(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return []
    low = Comparator(">=", p.floor())
    if p.major > 0 or p.minor is None:
        return [low, Comparator("<", _next_excluded(p.major))]
    if p.minor > 0 or p.patch is None:
        return [low, Comparator("<", _next_excluded(p.major, p.minor))]
    return [low, Comparator("<", _next_excluded(p.major, p.minor, p.patch))]


def _tilde(p: _Partial) -> list[Comparator]:
    if p.major is None:
        return []
    low = Comparator(">=", p.floor())
    if p.minor is None:
        return [low, Comparator("<", _next_excluded(p.major))]
    return [low, Comparator("<", _next_excluded(p.major, p.minor))]


def _upper_of(p: _Partial) -> Version | None:
    """Exclusive upper bound of a partial read as a whole range (`1.2` → `<1.3.0-0`)."""
    if p.major is None:
        return None
    return _next_excluded(p.major, p.minor) if p.patch is None else None


def _primitive(op: str, p: _Partial, whole: str) -> list[Comparator]:
    if p.major is None:
        return [] if op in ("", "=", ">=", "<=") else [Comparator("<", _v(0, 0, 0, "-0"))]
    upper = _upper_of(p)
    if op in ("", "="):
        return (
            [Comparator("=", p.floor())]
            if upper is None
            else [
                Comparator(">=", p.floor()),
                Comparator("<", upper),
            ]
        )
    if op == "!=":
        if upper is not None:
            raise ConstraintError(whole, f"!= needs a full version, not {p.major}.{p.minor or 'x'}")
        return [Comparator("!=", p.floor())]
    if op == ">":
        return [Comparator(">", p.floor())] if upper is None else [Comparator(">=", upper)]
    if op == "<=":
        return [Comparator("<=", p.floor())] if upper is None else [Comparator("<", upper)]
    if op == "<" and upper is not None:
        return [Comparator("<", _v(p.major, p.minor or 0, 0, "-0"))]
    return [Comparator(op, p.floor())]


def _comparators(token: str, whole: str) -> list[Comparator]:
    match = _COMPARATOR.match(token)
    if match is None:
        raise ConstraintError(whole, f"cannot read {token!r}")
    op = match["op"] or ""
    if op and not match["ver"]:
        raise ConstraintError(whole, f"{op!r} has no version after it")
    partial = _parse_partial(match["ver"], whole)
    if op == "^":
        return _caret(partial)
    if op in ("~", "~>"):
        return _tilde(partial)
    return _primitive("=" if op == "==" else op, partial, whole)


def _hyphen(low: str, high: str, whole: str) -> list[Comparator]:
    lo, hi = _parse_partial(low, whole), _parse_partial(high, whole)
    result = [] if lo.major is None else [Comparator(">=", lo.floor())]
    if hi.major is not None:
        upper = _upper_of(hi)
        result.append(Comparator("<=", hi.floor()) if upper is None else Comparator("<", upper))
    return result


def _conjunction(text: str, whole: str) -> tuple[Comparator, ...]:
    hyphen = _HYPHEN.match(text)
    if hyphen:
        return tuple(_hyphen(hyphen["low"], hyphen["high"], whole))
    normalised = _OP_SPACE.sub(r"\1", text.strip())
    tokens = [t.strip() for t in normalised.split(",")] if "," in normalised else normalised.split()
    if any(not t for t in tokens):
        raise ConstraintError(whole, "empty comparator between commas")
    return tuple(c for token in tokens for c in _comparators(token, whole))


def parse_constraint(text: str) -> Constraint:
    """Parse an npm-style or comma-style constraint; raises ConstraintError naming the part."""
    if not isinstance(text, str):
        raise ConstraintError(repr(text), "expected a string")
    return _parse(text)


@lru_cache(maxsize=50_000)
def _parse(text: str) -> Constraint:
    parts = text.split("||")
    if len(parts) > 1 and any(not part.strip() for part in parts):
        raise ConstraintError(text, "empty alternative around '||'")
    return Constraint(text=text.strip(), alternatives=tuple(_conjunction(part, text) for part in parts))
