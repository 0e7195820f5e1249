"""The file a report is written to, opened so that replacing a large previous report costs little.

`open("wb")` on an existing report truncates it: freeing the old report's pages and blocks (~0.1-0.3 s
for a report of 1 GB) before the first byte, and, on ext4, a flush of the whole new report when it
is closed (~0.4 s for 1 GB: the file system's guard for files rewritten through truncation,
`auto_da_alloc`). Instead, the previous report is unlinked and the new one created in its place
(same name, same permission bits): no truncation, so no flush on close; the previous report's
storage is freed by a background thread while the scan loads its inputs (a process still reading it
keeps reading it, as with any replaced file). Anything unusual (a
symbolic link, a file with other links or another owner, not a regular file, a small file, an
error on the way) takes `open("wb")` as before.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import BinaryIO, Final

# Below this, truncating costs less than a thread.
_RELEASED_FROM: Final = 16 * 1024 * 1024
_releases: list[threading.Thread] = []


def open_report(path: Path) -> BinaryIO:
    """`path.open("wb")`, a previous large report there released in the background."""
    try:
        previous = os.lstat(path)
    except OSError:
        return path.open("wb")
    if not _replaceable(previous):
        return path.open("wb")
    try:
        old = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return path.open("wb")
    if not _unlinked(path, old, previous):
        os.close(old)
        return path.open("wb")
    _release(old)
    mode = stat.S_IMODE(previous.st_mode)
    try:
        created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:  # another process made one meanwhile: write over it, as open("wb") would
        return path.open("wb")
    os.fchmod(created, mode)  # exactly the previous bits, whatever the umask
    return os.fdopen(created, "wb")


def wait_released() -> None:
    """Wait for previous reports still being freed (before a fork: a child must not inherit them)."""
    while _releases:
        _releases.pop().join()


def _replaceable(previous: os.stat_result) -> bool:
    return (
        stat.S_ISREG(previous.st_mode)
        and previous.st_nlink == 1
        and previous.st_uid == os.geteuid()
        and previous.st_size >= _RELEASED_FROM
    )


def _unlinked(path: Path, opened: int, previous: os.stat_result) -> bool:
    """Unlink `path` if it is still the file opened (not replaced since it was looked at)."""
    try:
        if not os.path.samestat(os.fstat(opened), previous):
            return False
        path.unlink()
    except OSError:
        return False
    return True


def _release(descriptor: int) -> None:
    """Close an unlinked file in a thread: its storage is freed then (`os.close` lets go of the GIL),
    or when the last process reading it closes it."""
    thread = threading.Thread(target=os.close, args=(descriptor,), name="powerx-previous-report", daemon=True)
    thread.start()
    _releases.append(thread)
