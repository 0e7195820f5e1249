"""The catalog index answers A(version) from the release masks it built, as the advisories' specs do."""

from __future__ import annotations

from powerx_governance.policy.index import PluginIndex
from powerx_governance.versioning.semver import parse_version
from tests.unit.policy.builders import PLUGIN, advisory, build_engine, release


def _from_specs(plugin: PluginIndex, version: str) -> int:
    parsed = parse_version(version)
    return sum(1 << i for i, a in enumerate(plugin.advisories) if a.spec.affects(parsed))


def test_affected_masks_of_releases_and_other_versions_equal_the_specs() -> None:
    releases = [release(v) for v in ("1.0.0", "1.0.1", "1.1.0", "1.2.0", "2.0.0")]
    advisories = [
        advisory("A", [{"introduced": "1.0.0"}, {"fixed": "1.1.0"}]),
        advisory("B", [{"introduced": "1.0.1"}, {"last_affected": "1.2.0"}]),
        advisory("C", versions=["1.0.0", "1.9.9"]),
        advisory("D", [{"introduced": "0"}]),
    ]
    plugin = build_engine(releases, advisories).index.plugins[PLUGIN]
    installed = ("1.0.0", "1.0.1", "1.1.0", "1.2.0", "2.0.0", "0.9.0", "1.0.5", "1.9.9", "3.0.0", "v1.1.0")
    for version in installed:
        assert plugin.affected_mask(parse_version(version)) == _from_specs(plugin, version), version
    assert plugin.release_masks == tuple(_from_specs(plugin, r["version"]) for r in releases)


def test_a_matrix_without_entries_concerns_no_plugin() -> None:
    engine = build_engine([release("1.0.0")])
    assert not engine.index.matrix.concerns("px.host.v1", PLUGIN)
    assert engine.index.matrix.verdict("px.host.v1", PLUGIN, parse_version("1.0.0")).notes == ()
