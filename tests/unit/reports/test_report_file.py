"""`report_file`: a report written over a file already there leaves exactly the report, in the same
file, whether it ends normally, fails part way, or had parts appended by sendfile (split scans)."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

import pytest

from powerx_governance.reports.stream import append_file, report_file

OLD = b"an older, longer report\n" * 4096


def test_a_new_file_holds_the_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    with report_file(path) as out:
        out.write(b"{}\n")
    assert path.read_bytes() == b"{}\n"


def test_a_longer_file_is_written_over_and_cut_to_the_report(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(OLD)
    path.chmod(0o640)
    other_name = tmp_path / "linked.json"
    os.link(path, other_name)
    inode = path.stat().st_ino
    with report_file(path) as out:
        out.write(b"new report\n")
    assert path.read_bytes() == b"new report\n"
    assert path.stat().st_ino == inode  # the same file, as open(path, "wb") leaves it
    assert path.stat().st_mode & 0o777 == 0o640
    assert other_name.read_bytes() == b"new report\n"


def test_a_report_through_a_link_writes_the_file_it_names(tmp_path: Path) -> None:
    target = tmp_path / "target.json"
    target.write_bytes(OLD)
    link = tmp_path / "report.json"
    link.symlink_to(target)
    with report_file(link) as out:
        out.write(b"through the link\n")
    assert link.is_symlink()
    assert target.read_bytes() == b"through the link\n"


def _fail_part_way(path: Path) -> None:
    with report_file(path) as out:
        out.write(b'{"findings": [')
        raise RuntimeError("failed part way")


def test_a_failure_leaves_what_was_written_before_it(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(OLD)
    with pytest.raises(RuntimeError, match="part way"):
        _fail_part_way(path)
    assert path.read_bytes() == b'{"findings": ['


def test_parts_appended_by_sendfile_continue_where_the_report_is(tmp_path: Path) -> None:
    """A split scan's later part is copied in by the kernel: the report goes on after it, not after
    the end of the longer file that was there."""
    path = tmp_path / "report.json"
    path.write_bytes(OLD)
    with tempfile.TemporaryFile() as body:
        body.write(b"[worker's part]")
        with report_file(path) as out:
            out.write(b"head ")
            append_file(out, body)
            out.write(b" tail")
    assert path.read_bytes() == b"head [worker's part] tail"


def test_a_fifo_is_written_and_not_cut(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    with report_file(fifo) as out:
        out.write(b"streamed\n")
    reader.join(timeout=30)
    assert received == [b"streamed\n"]
