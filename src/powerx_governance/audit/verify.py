"""Verifying the whole chain, in parallel worker processes for large trails, and naming the first
bad record.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass
from subprocess import PIPE, Popen
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.audit.chain import CHAIN_MARKER, marker_link, read_marker
from powerx_governance.audit.model import VerifyResult
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.audit.walk import EVENT, HASH, PAGE, PREV, SEQ, Raw, Walk, start_hash
from powerx_governance.db.session import make_engine, session_factory

log = logging.getLogger("powerx.audit")

PARALLEL_FROM: Final = 500_000  # below this, starting worker processes costs more than it saves


def verify(session: Session, *, batch: int = 50_000, workers: int | None = None) -> VerifyResult:
    """Check the whole chain; the first modified, deleted, inserted or moved record, if any.

    Every record's hash is recomputed and its prev_hash compared with the record before it, in
    seq order (gaps in seq are fine: PostgreSQL skips numbers on rollback). The chain must start
    at the genesis hash or the pruning checkpoint and reach the head marker. Large chains are
    split by seq range over `workers` processes (default: one per idle CPU, at most 4, from
    PARALLEL_FROM records on); a failure is then located by walking on from the last good range.
    """
    head = marker_link(read_marker(session, CHAIN_MARKER))
    walk = Walk(start_hash(session), head)
    low, high = session.execute(select(func.min(AuditEventRow.seq), func.max(AuditEventRow.seq))).one()
    if low is None:
        return _finish(session, walk)
    ranges = _ranges(int(low), int(high), _workers(workers, int(high) - int(low) + 1))
    url = _shareable_url(session)
    if len(ranges) > 1 and url is not None:
        _verify_ranges(session, walk, url, ranges, batch)
    found = walk.run(session, batch, int(high), after=int(low) - 1)
    return broken(session, walk, *found) if found else _finish(session, walk)


def _workers(asked: int | None, size: int) -> int:
    """Processes for `size` records: those asked for, else one per idle CPU (at most 4).

    A CPU busy with other work makes a second process slower than one: the 1-minute load
    average (which counts this process) tells how many are idle.
    """
    if asked is not None:
        return max(1, asked)
    if size < PARALLEL_FROM:
        return 1
    cpus = os.cpu_count() or 1
    idle = cpus - os.getloadavg()[0] + 1
    return max(1, min(4, cpus, int(idle)))


def _ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive seq ranges (after, until] covering low..high."""
    step = max(1, -(-(high - low + 1) // parts))
    return [(start - 1, min(high, start + step - 1)) for start in range(low, high + 1, step)]


def _shareable_url(session: Session) -> str | None:
    """The database URL other processes can open (None for an in-memory SQLite database)."""
    url = session.get_bind().engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class _RangeCheck:
    """One seq range checked on its own: its ends, and whether everything inside it is good."""

    first_prev_hash: str | None
    last: tuple[int, str] | None
    checked: int
    good: bool


def _check_range(
    session: Session, after: int, until: int, batch: int, head: tuple[int, str] | None
) -> _RangeCheck:
    walk = Walk(None, head)
    found = walk.run(session, batch, until, after)
    last = (int(walk.prev[SEQ]), str(walk.prev[HASH])) if walk.prev is not None else None
    return _RangeCheck(walk.first_prev_hash, last, walk.checked, good=found is None)


_WORKER: Final = "from powerx_governance.audit.verify import range_worker; range_worker()"


def range_worker() -> None:
    """The entry point of a verify worker process: one JSON request on stdin, one answer on stdout."""
    request = json.loads(sys.stdin.readline())
    head = (int(request["head"][0]), str(request["head"][1])) if request["head"] else None
    engine = make_engine(request["url"])
    try:
        with session_factory(engine)() as session:
            check = _check_range(session, request["after"], request["until"], request["batch"], head)
    finally:
        engine.dispose()
    sys.stdout.write(json.dumps(dataclasses.asdict(check)))


def _start_worker(url: str, after: int, until: int, batch: int, head: tuple[int, str] | None) -> Popen[str]:
    """A worker process checking after..until; the URL goes through a pipe, never the command line."""
    worker = Popen(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-c", _WORKER], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True
    )
    request = {"url": url, "after": after, "until": until, "batch": batch, "head": head}
    if worker.stdin is not None:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
    return worker


def _worker_result(worker: Popen[str]) -> _RangeCheck:
    """A worker's answer; a worker that failed counts as a bad range (walked again in this process)."""
    out, err = worker.communicate()
    if worker.returncode != 0:
        log.warning("audit verify worker failed; its range is walked here", extra={"error": err[-2000:]})
        return _RangeCheck(None, None, 0, good=False)
    answer = json.loads(out)
    last = (int(answer["last"][0]), str(answer["last"][1])) if answer["last"] else None
    return _RangeCheck(answer["first_prev_hash"], last, int(answer["checked"]), bool(answer["good"]))


def _verify_ranges(session: Session, walk: Walk, url: str, ranges: list[tuple[int, int]], batch: int) -> None:
    """Check the ranges in parallel and move `walk` past every range that links up and is good."""
    workers = [_start_worker(url, after, until, batch, walk.head) for after, until in ranges[1:]]
    try:
        checks = [_check_range(session, *ranges[0], batch, walk.head)]
        checks += [_worker_result(worker) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:  # only when this process failed first
                worker.kill()
                worker.communicate()
    expected, good_until = walk.start_hash, None
    for check in checks:
        if not check.good or (check.last is not None and check.first_prev_hash != expected):
            break
        if check.last is not None:
            walk.checked += check.checked
            expected, good_until = check.last[1], check.last[0]
    if good_until is not None:
        walk.prev = session.execute(PAGE, {"after": good_until - 1, "upto": good_until}).one()


def _finish(session: Session, walk: Walk) -> VerifyResult:
    """A walk that found no bad record must also end where the audit writers last wrote.

    The head marker read before the walk must be reached (else the newest records were deleted);
    re-read after it, it must not be behind the walk's last record (else records were appended
    without the audit writer, which always moves the marker in the same transaction).
    """
    last = int(walk.prev[SEQ]) if walk.prev is not None else None
    head = walk.head
    if head is not None and (last is None or last < head[0]):
        end = "nothing" if last is None else f"seq {last}"
        problem = (
            f"seq {head[0]}, the newest record written, is missing: the chain ends at {end}"
            " (records were deleted)"
        )
        return VerifyResult(False, walk.checked, head[0], None, problem, last)
    if last is None:
        return VerifyResult(True, 0)
    written = marker_link(read_marker(session, CHAIN_MARKER))
    if written is None:
        problem = "the chain head marker (locks row audit-chain) is missing: it was deleted"
        return VerifyResult(False, walk.checked, None, None, problem, last)
    if last > written[0]:
        return _appended(session, walk, written[0], last)
    return VerifyResult(True, walk.checked, last_seq=last)


def _appended(session: Session, walk: Walk, written: int, last: int) -> VerifyResult:
    first = session.execute(
        select(AuditEventRow.seq, AuditEventRow.event_id)
        .where(AuditEventRow.seq > written)
        .order_by(AuditEventRow.seq)
        .limit(1)
    ).one()
    extra = session.execute(
        select(func.count()).where(AuditEventRow.seq > written, AuditEventRow.seq <= last)
    ).scalar_one()
    problem = (
        f"seq {first[0]}: appended after seq {written}, the newest record the audit writer wrote"
        " (inserted outside the audit trail)"
    )
    return VerifyResult(False, walk.checked - int(extra), int(first[0]), str(first[1]), problem, last)


def broken(session: Session, walk: Walk, row: Raw, kind: str) -> VerifyResult:
    seq, event_id = int(row[SEQ]), str(row[EVENT])
    last = int(walk.prev[SEQ]) if walk.prev is not None else None
    if kind == "content":
        problem = f"seq {seq}: its content does not match its hash (the record was modified)"
    elif kind == "head":
        problem = (
            f"seq {seq}: its hash differs from the chain head marker "
            "(the newest records were rewritten with recomputed hashes)"
        )
    else:
        diagnosed = _diagnose_link(session, row, walk.prev)
        if diagnosed is not None:
            seq, event_id, problem = diagnosed
        else:
            problem = _missing_link(row, walk.prev)
    return VerifyResult(False, walk.checked, seq, event_id, problem, last)


def _missing_link(row: Raw, prev: Raw | None) -> str:
    if prev is None:
        return (
            f"seq {row[SEQ]}: the chain does not start here (its prev_hash is neither the genesis hash"
            " nor the pruning checkpoint): the records before it were deleted"
        )
    gap = f"; seq jumps from {prev[SEQ]} to {row[SEQ]}" if row[SEQ] - prev[SEQ] > 1 else ""
    return (
        f"seq {row[SEQ]}: its prev_hash does not match the hash of seq {prev[SEQ]}: the record it was"
        f" chained to was deleted, or seq {prev[SEQ]} was modified with a recomputed hash{gap}"
    )


def _diagnose_link(session: Session, row: Raw, prev: Raw | None) -> tuple[int, str, str] | None:
    """(seq, event id, problem) when the record `row` links to is still there; None when it is gone."""
    target = session.execute(
        select(AuditEventRow.seq).where(AuditEventRow.hash == row[PREV]).order_by(AuditEventRow.seq).limit(1)
    ).scalar_one_or_none()
    if target is None or target == row[SEQ]:
        return None
    if target > row[SEQ]:
        return (
            int(row[SEQ]),
            str(row[EVENT]),
            f"seq {row[SEQ]}: it is chained after seq {target}, which comes later: the records were"
            " reordered",
        )
    first = session.execute(
        select(AuditEventRow.seq, AuditEventRow.event_id)
        .where(AuditEventRow.seq > target)
        .order_by(AuditEventRow.seq)
        .limit(1)
    ).one()
    inserted = f"seq {first[0]}" if prev is None or first[0] == prev[SEQ] else f"seq {first[0]}..{prev[SEQ]}"
    return (
        int(first[0]),
        str(first[1]),
        f"{inserted}: not part of the chain (inserted): seq {row[SEQ]} is chained directly after"
        f" seq {target}",
    )
