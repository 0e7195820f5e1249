"""A file scan split across processes, for a report byte for byte the one a single process writes.

The manifests are cut into contiguous parts, in the order one process reads them. This process
scans the first part into the report itself; a worker forked after the catalog, rules and engine
were built (shared with it, never rebuilt) scans each later part into a temporary file, with a
writer continuing the same report (`PartWriter.continuation`), and hands back its counts, errors
and what the report's end needs. Parts are joined in order, so findings, errors and warnings stay
in tenant order. A worker that fails fails the scan, as an error of this process would.

SARIF numbers its rules in the order advisories are first met in the whole report, so each part
is scanned first, kept (a few hundred bytes a tenant), and written once the parts before it said
which advisories they met: a pipe runs from each part to the next.

Formats whose writer can say a part's size before writing it (`PlacedWriter`: json, jsonl, csv; and sarif),
written to a regular file, skip the part files: each part is scanned and kept, its size told down
the same chain of pipes (where the next part starts), and every process writes its part straight
to its place in the report, at the same time as the others. No copy of the later parts (half a
1 GB report on the reference fleet) at the end, and no part file. Parts too large to keep (more
than `_PLACED_TENANTS` manifests) take the part files.

A markdown report opens with counts of the whole scan (`HeadedWriter`): written to a regular file,
every part is scanned and kept, and tells this process its rows' size, counts and result; this
process writes the head, then tells each part where its rows start, and all write at once. No
spool of the rows and no copy of them at the end (the report's findings table written once).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from multiprocessing.context import ForkProcess
from typing import Any, BinaryIO, Final, TypeVar

from powerx_governance.domain import Severity
from powerx_governance.findings import SharedVerdict
from powerx_governance.inventory.loader import ManifestPart, ManifestResult
from powerx_governance.policy.engine import PolicyEngine
from powerx_governance.reports.output import wait_released
from powerx_governance.reports.sarif_report import SarifWriter
from powerx_governance.reports.stream import (
    OUTCOME,
    HeadedWriter,
    PartWriter,
    PlacedStream,
    PlacedWriter,
    ReportWriter,
    Tally,
)
from powerx_governance.scans.report import TenantReport, report_summary
from powerx_governance.scans.scanner import FirstSeen, ProgressHook, ScanResult, scan_tenants

A = TypeVar("A")  # what a worker answers

# Each worker holds its own copy of what evaluation caches and of what it reads (~150-250 MiB on the
# reference fleet): four stay well inside DESIGN §8's 1 GiB, counted over every process.
MAX_WORKERS: Final = 4
_POLL_SECONDS: Final = 0.2  # how often progress is read while waiting for workers
# A placed part keeps its tenants' findings (~0.6 KB a tenant) until it knows where it starts.
_PLACED_TENANTS: Final = 150_000
_MANIFEST_LINE_BYTES: Final = 2048  # a JSON-lines part's manifests, reckoned from its size (~7 KB each)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as a container or `taskset` sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Processes a file scan uses unless told: one per usable CPU, at most MAX_WORKERS."""
    return max(1, min(usable_cpus(), MAX_WORKERS))


@dataclass(frozen=True, slots=True)
class PartScan:
    """What every part of a scan shares: the engine (built once), the tenants selected, the baseline."""

    engine: PolicyEngine
    now: datetime
    tenants: frozenset[str] = frozenset()
    first_seen: FirstSeen | None = None


def _worst(outcomes: Iterable[SharedVerdict]) -> Severity:
    return max((o.verdict.risk_level for o in outcomes), key=lambda s: s.rank, default=Severity.NONE)


def write_tenants(
    job: PartScan,
    manifests: Iterable[ManifestResult],
    writer: ReportWriter,
    result: ScanResult,
    on_tenant: ProgressHook | None = None,
) -> Severity:
    """Scan `manifests` tenant by tenant into `writer` (counts and errors into `result`): the worst
    risk among the findings written."""
    risks: set[SharedVerdict] = set()
    for batch in _batches(job, manifests, result, on_tenant):
        risks.update(map(OUTCOME, batch.parts))
        writer.add_tenant(batch)
    return _worst(risks)


def _batches(
    job: PartScan, manifests: Iterable[ManifestResult], result: ScanResult, on_tenant: ProgressHook | None
) -> Iterator[TenantReport]:
    for tenant in scan_tenants(
        job.engine, manifests, result, tenants=job.tenants, on_tenant=on_tenant, first_seen=job.first_seen
    ):
        yield TenantReport(tenant, job.now)


@dataclass(frozen=True, slots=True)
class _RuleChain:
    """The pipes that tell a part of a SARIF report which advisories the parts before it met, and a
    placed part where it starts."""

    before: Connection | None  # from the previous part (None: the first part)
    after: Connection | None  # to the next part (None: the last part)
    placed: bool = False  # the parts are written at their places

    def close(self) -> None:
        for end in (self.before, self.after):
            if end is not None:
                end.close()


def _write_numbered(
    job: PartScan,
    manifests: Iterable[ManifestResult],
    writer: SarifWriter,
    result: ScanResult,
    on_tenant: ProgressHook | None,
    chain: _RuleChain,
    place: tuple[int, int] | None = None,
) -> tuple[Severity, int | None]:
    """`write_tenants` for a part of a SARIF report: scan everything first, learn the rules the parts
    before met (and, placed, where the part starts), pass them on with this part's, then write. The
    worst risk, and a placed part's end. `place`: the report file's (`PlacedWriter.place`) when the
    parts are written at their places."""
    risks: set[SharedVerdict] = set()
    kept: list[TenantReport] = []
    results = 0  # counted as the scan goes: the next part waits for it
    for batch in _batches(job, manifests, result, on_tenant):
        risks.update(map(OUTCOME, batch.parts))
        results += writer.learn(batch)
        kept.append(batch)
    prior, start, before = chain.before.recv() if chain.before is not None else ([], None, 0)
    writer.follow(prior)
    stream, end = None, None
    if place is not None:
        if start is not None:  # a later part: written through its own stream, at its place
            writer.write_at(stream := PlacedStream(place[0], start), before)
        start = place[1] if start is None else start
        end = start + writer.size(kept, before)
    if chain.after is not None:
        chain.after.send(([*prior, *writer.rules_met()], end, before + results))
    for batch in kept:
        writer.add_tenant(batch)
    if end is not None:
        _check_end(start, end, _written_up_to(writer, stream))
    return _worst(risks), end


def _placeable(writer: PartWriter, parts: Sequence[ManifestPart]) -> bool:
    """Whether the parts can be written at their places: a writer that can, onto a regular file, and
    no part too large to keep."""
    if not isinstance(writer, PlacedWriter | SarifWriter | HeadedWriter) or writer.place() is None:
        return False
    return all(
        (len(p.files) if p.end is None else (p.end - p.start) // _MANIFEST_LINE_BYTES) <= _PLACED_TENANTS
        for p in parts
    )


def _write_placed(
    job: PartScan,
    manifests: Iterable[ManifestResult],
    writer: PlacedWriter,
    result: ScanResult,
    on_tenant: ProgressHook | None,
    chain: _RuleChain,
) -> _PartDone:
    """`write_tenants` for a placed part: scan and keep everything, learn where the part starts (the
    first part: where the report is now) and after how many findings, tell the next part where it
    starts, then write the part there. The first part writes through `writer` itself; a later one
    through a writer of its own at its place (`placed`: what `writer` rendered, it does not again).

    A later part sizes itself before it waits, so that it waits only for the scans and sizing of
    the parts before it, not for them and then its own sizing (~0.3 s on the reference fleet)."""
    worst, kept = _scan_kept(job, manifests, result, on_tenant)
    # Sized before waiting for the parts before: all but the tenants up to the first with findings,
    # whose size depends on whether findings come before them (`PlacedWriter.size`).
    lead = next((k + 1 for k, batch in enumerate(kept) if batch.parts), len(kept))
    rest = writer.size(kept[lead:], 1)
    place = writer.place()
    if place is None:
        raise RuntimeError("the report file can no longer be written at places")
    descriptor, start = place
    before = 0
    if chain.before is not None:
        start, before = chain.before.recv()
    stream = PlacedStream(descriptor, start) if chain.before is not None else None
    part = writer if stream is None else writer.placed(stream, before)
    end = start + part.size(kept[:lead], before) + rest
    if chain.after is not None:
        chain.after.send((end, before + sum(len(batch.parts) for batch in kept)))
    for batch in kept:
        part.add_tenant(batch)
    _check_end(start, end, _written_up_to(writer, stream))
    return _PartDone(result, worst, part.handoff(), end)


def _scan_kept(
    job: PartScan, manifests: Iterable[ManifestResult], result: ScanResult, on_tenant: ProgressHook | None
) -> tuple[Severity, list[TenantReport]]:
    """Scan a part and keep its tenants' findings (a placed part writes them once it knows where):
    the worst risk among them, and the findings."""
    risks: set[SharedVerdict] = set()
    kept: list[TenantReport] = []
    for batch in _batches(job, manifests, result, on_tenant):
        risks.update(map(OUTCOME, batch.parts))
        kept.append(batch)
    return _worst(risks), kept


@dataclass(frozen=True, slots=True)
class _PartSurveyed:
    """A later part of a headed report, scanned: what the head needs of it, and its rows' size."""

    result: ScanResult
    tally: Tally
    size: int


def _write_headed_part(
    job: PartScan,
    manifests: Iterable[ManifestResult],
    writer: HeadedWriter,
    on_tenant: ProgressHook | None,
    chain: _RuleChain,
    answer: Connection,
) -> _PartDone:
    """A worker's part of a headed report: scan and keep it, tell the first process its survey and
    result, learn where its rows start, write them there. Its result went with the survey: the
    answer's is empty."""
    result = ScanResult(generated_at=job.now)
    worst, kept = _scan_kept(job, manifests, result, on_tenant)
    size, tally = writer.survey(kept)
    answer.send(_PartSurveyed(result, tally, size))
    place = writer.place()
    if chain.before is None or place is None:
        raise RuntimeError("a part of a headed report has no place to write to")
    start = chain.before.recv()
    stream = PlacedStream(place[0], start)
    part = writer.placed_rows(stream)
    part.write_rows(kept)
    _check_end(start, start + size, _written_up_to(writer, stream))
    return _PartDone(ScanResult(generated_at=job.now), worst, part.handoff(), start + size)


def _write_headed(
    job: PartScan,
    manifests: Iterable[ManifestResult],
    writer: HeadedWriter,
    result: ScanResult,
    on_tenant: ProgressHook | None,
    later: Sequence[tuple[_Worker, Connection]],
    hook: Callable[[int], None] | None,
    counts: Any,
) -> Severity:
    """The first part of a headed report, and its head: scan and keep the part, take every later
    part's survey and result (into `result`), write the head for the whole scan, tell each later
    part where its rows start (through the connection paired with it), then write this part's rows."""
    worst, kept = _scan_kept(job, manifests, result, on_tenant)
    size, tally = writer.survey(kept)
    sizes = []
    for worker, _ in later:
        surveyed = _answer(worker, hook, counts, _PartSurveyed)
        result.absorb(surveyed.result)
        tally.merge(surveyed.tally)
        sizes.append(surveyed.size)
    writer.write_head(report_summary(result), tally)
    place = writer.place()
    if place is None:
        raise RuntimeError("the report file can no longer be written at places")
    start = place[1] + size
    for (_, to_part), part_size in zip(later, sizes, strict=True):
        to_part.send(start)
        start += part_size
    writer.write_rows(kept)
    _check_end(place[1], place[1] + size, _written_up_to(writer, None))
    return worst


def _check_end(start: int | None, end: int, written: int) -> None:
    """A placed part must end where its size said: else it overwrote the next part, or left a gap."""
    if written != end:
        raise RuntimeError(f"a report part was to end at byte {end} (from {start}), but ended at {written}")


def _written_up_to(writer: PlacedWriter | SarifWriter | HeadedWriter, stream: PlacedStream | None) -> int:
    """The offset after the last byte a placed part wrote (its own stream's, or the report's)."""
    if stream is not None:
        stream.flush()
        return stream.offset
    place = writer.place()
    return -1 if place is None else place[1]


@dataclass(frozen=True, slots=True)
class _PartDone:
    result: ScanResult
    worst: Severity
    handoff: Any  # the part's writer's handoff (PartWriter)
    end: int | None = None  # a placed part: the offset after its last byte in the report


@dataclass(frozen=True, slots=True)
class _PartFailed:
    error: BaseException


@dataclass(frozen=True, slots=True)
class _Worker:
    process: ForkProcess
    answer: Connection  # _PartDone or _PartFailed, once
    body: BinaryIO  # the part's report bytes


def _work(
    job: PartScan,
    part: ManifestPart,
    writer: PartWriter,
    body: BinaryIO,
    answer: Connection,
    chain: _RuleChain | None,
    progress: Callable[[int], None],
    others: Sequence[Connection],
) -> None:
    """A worker process: scan one later part into `body`, then answer with what the report's end needs.
    `others`: the pipe ends of the other parts' chains it inherited, closed so that a part that dies
    ends the wait of the next one (it reads the end of the pipe instead of waiting for ever)."""
    for end in others:
        end.close()
    try:
        result = ScanResult(generated_at=job.now)
        if chain is not None and chain.placed and isinstance(writer, PlacedWriter):
            answer.send(_write_placed(job, part.load(), writer, result, progress, chain))
            return
        if chain is not None and chain.placed and isinstance(writer, HeadedWriter):
            answer.send(_write_headed_part(job, part.load(), writer, progress, chain, answer))
            return
        continuation = writer.continuation(body)
        part_end = None
        if chain is not None and isinstance(continuation, SarifWriter):
            place = writer.place() if chain.placed and isinstance(writer, SarifWriter) else None
            worst, part_end = _write_numbered(job, part.load(), continuation, result, progress, chain, place)
        else:
            worst = write_tenants(job, part.load(), continuation, result, progress)
        body.flush()
        answer.send(_PartDone(result, worst, continuation.handoff(), part_end))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the scan, which raises it
        answer.send(_PartFailed(_portable(exc)))
    finally:
        answer.close()


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else one carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 - its own exception, in this process
    except Exception:  # noqa: BLE001 - any exception that does not round-trip
        return RuntimeError("".join(traceback.format_exception(exc)))
    return exc


def scan_in_parts(
    job: PartScan,
    parts: Sequence[ManifestPart],
    writer: PartWriter,
    result: ScanResult,
    stack: ExitStack,
    on_tenant: ProgressHook | None = None,
) -> Severity:
    """Scan the parts, the first here and each other in a forked worker, joining them into `writer`
    in order; `stack` keeps the workers' files open until the report is finished. The worst risk."""
    context = multiprocessing.get_context("fork")
    counts = context.RawArray("q", len(parts))  # tenants read per part, for the progress hook
    numbered = isinstance(writer, SarifWriter)
    placed = _placeable(writer, parts)
    headed = placed and isinstance(writer, HeadedWriter)
    chained = numbered or placed
    # (receive, send): part k -> k+1; headed, this process -> part k+1
    links = [context.Pipe(duplex=False) for _ in parts[1:]] if chained else []
    chains = [
        _RuleChain(
            links[k - 1][0] if k and links else None,
            links[k][1] if k < len(links) and not headed else None,
            placed,
        )
        for k in range(len(parts))
    ]
    sys.stdout.flush()  # a worker flushes the standard streams it inherits when it ends
    sys.stderr.flush()
    wait_released()  # a worker inheriting a previous report being freed would free it when it ends
    workers: list[_Worker] = []
    with _workers_stopped(workers), _frozen_heap():
        for k, part in enumerate(parts[1:], start=1):
            body = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - the stack closes it
            answer, reply = context.Pipe(duplex=False)
            chain = chains[k] if chained else None
            others = [
                end
                for pipe in links
                for end in pipe
                if chain is None or end not in (chain.before, chain.after)
            ]
            process = context.Process(
                target=_work,
                args=(job, part, writer, body, reply, chain, _counter(counts, k), others),
                name=f"powerx-scan-part-{k}",
                daemon=True,
            )
            process.start()
            reply.close()
            workers.append(_Worker(process, answer, body))
        for chain in chains[1:]:
            chain.close()  # the workers hold them now: a worker's end closes when it dies
        hook = None if on_tenant is None else _summed(counts, on_tenant)
        first, progress = parts[0].load(), _counter(counts, 0, hook)
        if headed and isinstance(writer, HeadedWriter):
            later = [(worker, link[1]) for worker, link in zip(workers, links, strict=True)]
            worst = _write_headed(job, first, writer, result, progress, later, hook, counts)
            for _, to_part in later:
                to_part.close()
        elif placed and isinstance(writer, PlacedWriter):
            worst = _write_placed(job, first, writer, result, progress, chains[0]).worst
        elif isinstance(writer, SarifWriter):
            place = writer.place() if placed else None
            worst, _ = _write_numbered(job, first, writer, result, progress, chains[0], place)
        else:
            worst = write_tenants(job, first, writer, result, progress)
        chains[0].close()
        for worker in workers:
            done = _answer(worker, hook, counts, _PartDone)
            result.absorb(done.result)
            worst = max(worst, done.worst, key=lambda s: s.rank)
            if done.end is not None and isinstance(writer, PlacedWriter | SarifWriter | HeadedWriter):
                writer.resume(done.handoff, done.end)
            else:
                writer.join(done.handoff, worker.body)
    return worst


def _answer(worker: _Worker, hook: Callable[[int], None] | None, counts: Any, expected: type[A]) -> A:
    """The worker's next answer, once it comes (progress told meanwhile); its failure raised here."""
    while not worker.answer.poll(_POLL_SECONDS):
        if hook is not None:
            hook(counts[0])
    try:
        answer = worker.answer.recv()
    except EOFError:
        worker.process.join()
        raise RuntimeError(
            f"scan worker {worker.process.name} ended (exit code {worker.process.exitcode}) without an answer"
        ) from None
    if isinstance(answer, _PartFailed):
        worker.process.join()
        raise answer.error
    if not isinstance(answer, expected):
        raise TypeError(f"scan worker {worker.process.name} answered {type(answer).__name__}")
    if isinstance(answer, _PartDone):
        worker.process.join()
    return answer


def _counter(counts: Any, k: int, then: Callable[[int], None] | None = None) -> Callable[[int], None]:
    """A progress hook that records part k's tenants read so far (and tells `then`)."""

    def count(n: int) -> None:
        counts[k] = n
        if then is not None:
            then(n)

    return count


def _summed(counts: Any, on_tenant: ProgressHook) -> Callable[[int], None]:
    """Tell `on_tenant` the tenants read by every part so far."""
    return lambda _: on_tenant(sum(counts))


@contextmanager
def _workers_stopped(workers: list[_Worker]) -> Iterator[None]:
    """On the way out, workers still running (this process failed first) are stopped and reaped."""
    try:
        yield
    finally:
        for worker in workers:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join()
            worker.answer.close()


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Keep the collector off what exists at fork time (the catalog, the engine), so that neither
    process copies those pages to mark them; collected again once the scan ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
