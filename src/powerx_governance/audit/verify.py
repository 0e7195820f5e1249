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
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from powerx_governance.audit import pages
from powerx_governance.audit.chain import CHAIN_MARKER, SCHEMA, marker_link, read_marker
from powerx_governance.audit.model import VerifyResult
from powerx_governance.audit.pages import RangeCheck
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.audit.walk import EVENT, HASH, PAGE, PREV, SEQ, Raw, Walk, start_hash

log = logging.getLogger("powerx.audit")

PARALLEL_FROM: Final = 200_000  # below this, starting worker processes costs more than it saves
MAX_WORKERS: Final = 4


def verify(session: Session, *, batch: int = 20_000, workers: int | None = None) -> VerifyResult:
    """Check the whole chain; the first modified, deleted, inserted or moved record, if any.

    Every record's hash is recomputed and its prev_hash compared with the record before it, in
    seq order (gaps in seq are fine: PostgreSQL skips numbers on rollback). The chain must start
    at the genesis hash or the pruning checkpoint and reach the head marker. Large chains are
    split by seq range over `workers` processes (default: one per CPU, at most MAX_WORKERS, from
    PARALLEL_FROM records on); a failure is then located by walking on from the last good range.
    """
    head = marker_link(read_marker(session, CHAIN_MARKER))
    walk = Walk(start_hash(session), head)
    low, high = session.execute(select(func.min(AuditEventRow.seq), func.max(AuditEventRow.seq))).one()
    if low is None:
        return _finish(session, walk)
    ranges = _ranges(int(low), int(high), _workers(workers, int(high) - int(low) + 1))
    target = _worker_target(session)
    if len(ranges) > 1 and target is not None:
        _verify_ranges(session, walk, target, ranges, batch)
    found = walk.run(session, batch, int(high), after=int(low) - 1)
    return broken(session, walk, *found) if found else _finish(session, walk)


def _workers(asked: int | None, size: int) -> int:
    """Processes for `size` records: those asked for, else one per CPU (at most MAX_WORKERS).

    Not fewer when other work keeps the CPUs busy: a worker costs little more than its driver's
    start (it imports no SQLAlchemy), and the split pays whenever a second CPU has time for it.
    """
    if asked is not None:
        return max(1, asked)
    if size < PARALLEL_FROM:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _ranges(low: int, high: int, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive seq ranges (after, until] covering low..high."""
    step = max(1, -(-(high - low + 1) // parts))
    return [(start - 1, min(high, start + step - 1)) for start in range(low, high + 1, step)]


@dataclass(frozen=True, slots=True)
class _Target:
    """How a worker process opens the same database with the bare driver (never on a command line)."""

    dialect: str
    arguments: list[Any]
    options: dict[str, Any]


def _worker_target(session: Session) -> _Target | None:
    """The driver's connect arguments for this session's database (None: an in-memory SQLite one)."""
    engine = session.get_bind().engine
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return None
    arguments, options = engine.dialect.create_connect_args(url)
    plain = (str, int, float, bool)  # what JSON carries; the rest are SQLAlchemy's own hooks
    return _Target(
        engine.dialect.name,
        [a for a in arguments if isinstance(a, plain)],
        {k: v for k, v in options.items() if isinstance(v, plain) and k != "check_same_thread"},
    )


_WORKER: Final = "from powerx_governance.audit.pages import range_worker; range_worker()"


def range_worker() -> None:
    """The entry point of a verify worker process (see `pages.range_worker`)."""
    pages.range_worker()


def _start_worker(
    target: _Target, span: tuple[int, int], batch: int, head: tuple[int, str] | None
) -> Popen[str]:
    """A worker process checking one seq range; connect arguments go through a pipe, never argv."""
    worker = Popen(  # noqa: S603 - our own interpreter running our own module
        [sys.executable, "-c", _WORKER], stdin=PIPE, stdout=PIPE, stderr=PIPE, text=True
    )
    request = {
        **dataclasses.asdict(target),
        "schema": SCHEMA,
        "after": span[0],
        "until": span[1],
        "batch": batch,
        "head": head,
    }
    if worker.stdin is not None:
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
    return worker


def _worker_result(worker: Popen[str]) -> RangeCheck:
    """A worker's answer; a worker that failed counts as a bad range (walked again in this process)."""
    out, err = worker.communicate()
    if worker.returncode != 0:
        log.warning("audit verify worker failed; its range is walked here", extra={"error": err[-2000:]})
        return RangeCheck(None, None, 0, good=False)
    answer = json.loads(out)
    last = (int(answer["last"][0]), str(answer["last"][1])) if answer["last"] else None
    return RangeCheck(answer["first_prev_hash"], last, int(answer["checked"]), bool(answer["good"]))


def _check_first(
    session: Session, span: tuple[int, int], batch: int, head: tuple[int, str] | None
) -> RangeCheck:
    """The first range, checked in this process while the workers check the others."""
    walk = Walk(None, head)
    found = walk.run(session, batch, span[1], span[0])
    last = (int(walk.prev[SEQ]), str(walk.prev[HASH])) if walk.prev is not None else None
    return RangeCheck(walk.first_prev_hash, last, walk.checked, good=found is None)


def _verify_ranges(
    session: Session, walk: Walk, target: _Target, ranges: list[tuple[int, int]], batch: int
) -> None:
    """Check the ranges in parallel and move `walk` past every range that links up and is good."""
    workers = [_start_worker(target, span, batch, walk.head) for span in ranges[1:]]
    try:
        checks = [_check_first(session, ranges[0], batch, walk.head)]
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
