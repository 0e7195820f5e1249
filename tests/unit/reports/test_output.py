"""The report file: a large previous report is replaced by a new file (never truncated in place),
anything unusual is written over as `open("wb")` writes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from powerx_governance.reports import output
from powerx_governance.reports.output import open_report, wait_released

LARGE = 16 * 1024 * 1024


def _write(path: Path, data: bytes) -> None:
    with open_report(path) as out:
        out.write(data)
    wait_released()


def test_a_large_previous_report_is_replaced_not_truncated(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_bytes(b"x" * LARGE)
    report.chmod(0o640)
    before = report.stat()
    with report.open("rb") as reader:  # someone still reading the previous report
        _write(report, b"new")
        assert reader.read(3) == b"xxx"  # truncated in place, it would read b""
    after = report.stat()
    assert report.read_bytes() == b"new"
    assert after.st_ino != before.st_ino
    assert after.st_mode & 0o7777 == 0o640


def test_the_previous_report_is_freed_before_a_fork(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_bytes(b"x" * LARGE)
    with open_report(report) as out:
        assert output._releases  # the release runs in the background
        wait_released()
        assert not output._releases
        out.write(b"new")
    assert report.read_bytes() == b"new"


@pytest.mark.parametrize("size", [0, 100])
def test_a_small_previous_report_is_truncated_in_place(tmp_path: Path, size: int) -> None:
    report = tmp_path / "report.json"
    report.write_bytes(b"x" * size)
    before = report.stat()
    _write(report, b"new")
    assert report.read_bytes() == b"new"
    assert report.stat().st_ino == before.st_ino


def test_a_linked_report_is_written_through_its_links(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_bytes(b"x" * LARGE)
    symlink, hardlink = tmp_path / "symlink.json", tmp_path / "hardlink.json"
    symlink.symlink_to(target)
    _write(symlink, b"via symlink")
    assert symlink.is_symlink()
    assert target.read_bytes() == b"via symlink"
    target.write_bytes(b"x" * LARGE)
    os.link(target, hardlink)
    _write(hardlink, b"via hard link")
    assert target.read_bytes() == b"via hard link"


def test_a_new_report_and_a_directory(tmp_path: Path) -> None:
    _write(tmp_path / "new.json", b"new")
    assert (tmp_path / "new.json").read_bytes() == b"new"
    with pytest.raises(IsADirectoryError):
        open_report(tmp_path)
