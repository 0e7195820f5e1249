"""The audit trail on SQLite and PostgreSQL: chain, tampering, concurrent writers, masking, export,
retention, the CLI, `POST/GET /internal/audit/version`, and shipping to a remote audit service.

Nothing is mocked: tampering is done with SQL on the real tables, concurrent writers are real OS
processes and threads, the CLI runs as a subprocess, the routes are served by uvicorn, and the
remote audit service is a real HTTP server on loopback that fails 30 % of requests.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner, Result

from powerx_governance.audit.cli import audit_app
from powerx_governance.audit.service import (
    GENESIS,
    AuditEvent,
    AuditEventError,
    ChainBrokenError,
    EventConflictError,
    RetentionError,
    VerifyResult,
    chain_hash,
    check_retention,
    event_fields,
    export,
    prune,
    record,
    record_many,
    verify,
)
from powerx_governance.audit.sink import (
    SHIP_TASK,
    SINK_TOKEN_ENV,
    SINK_URL_ENV,
    SinkError,
    SinkSettings,
    queue_shipping,
    shipped_through,
    sink_settings,
)
from powerx_governance.audit.tables import AuditEventRow
from powerx_governance.auth.model import Role
from powerx_governance.db.session import sqlite_url, transaction
from powerx_governance.http.client import HttpPolicy
from powerx_governance.kernel import replacing
from powerx_governance.service import GovernanceService
from powerx_governance.settings import Settings
from tests.conftest import (
    REPO,
    FakeClock,
    LiveServer,
    ServiceFactory,
    built_services,
    issue_token,
    store_tenant,
)
from tests.functional.cli import powerx_with

T1: Final = "7d0e5a52-3c1f-4f7e-9a51-0c8f1d2b9e11"
T2: Final = "0b6c1d2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
START: Final = datetime(2026, 11, 1, tzinfo=UTC)
API: Final = "/internal/audit/version"
FAST_RETRIES: Final = HttpPolicy(max_attempts=12, backoff_base=0.001, backoff_cap=0.01, read_timeout=5.0)


def event(i: int, **overrides: Any) -> AuditEvent:
    """Event number `i`: a decision on a recommendation, alternating between two tenants."""
    fields: dict[str, Any] = {
        "source": "governance",
        "operation": "decision.ignore",
        "resource_type": "recommendation",
        "resource_id": str(1000 + i),
        "actor": f"admin-{i % 3}",
        "tenant_uuid": (T1, T2)[i % 2],
        "correlation_id": f"req-{i}",
        "changes": {"before": {"state": "open"}, "after": {"state": "ignored", "reason": f"reason {i}"}},
        "meta": {"i": i, "ratio": i / 7, "tags": ["a", "b"]},
        "occurred_at": START + timedelta(minutes=i),
        "event_id": f"ev-{i:04d}",
    }
    return AuditEvent(**(fields | overrides))


def record_events(service: GovernanceService, first: int, count: int, per_transaction: int = 10) -> None:
    for start in range(first, first + count, per_transaction):
        stop = min(first + count, start + per_transaction)
        with transaction(service.factory) as session:
            record_many(session, [event(i) for i in range(start, stop)], service.clock())


def check(service: GovernanceService, **options: Any) -> VerifyResult:
    with service.factory() as session:
        return verify(session, **options)


def sql(service: GovernanceService, statement: str, **params: Any) -> None:
    with service.engine.begin() as connection:
        connection.execute(text(statement), params)


def seq_of(service: GovernanceService, event_id: str) -> int:
    with service.factory() as session:
        return session.execute(
            select(AuditEventRow.seq).where(AuditEventRow.event_id == event_id)
        ).scalar_one()


def rows(service: GovernanceService) -> list[AuditEventRow]:
    with service.factory() as session:
        return list(session.execute(select(AuditEventRow).order_by(AuditEventRow.seq)).scalars())


@pytest.fixture
def service(make_service: ServiceFactory) -> GovernanceService:
    return make_service(POWERX_WORKER="0")


# -- the chain ----------------------------------------------------------------------------------------


def test_chain_links_every_record_and_verifies(service: GovernanceService) -> None:
    record_events(service, 0, 150)
    for i in range(150, 180):  # one transaction each, as the decision path does
        with transaction(service.factory) as session:
            record(session, event(i), service.clock())
    stored = rows(service)
    assert len(stored) == 180
    assert stored[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(stored):
        assert after.prev_hash == before.hash
        assert after.seq > before.seq
    for row in stored:
        assert row.hash == chain_hash(row.prev_hash, event_fields(row))
    result = check(service)
    assert result == VerifyResult(True, 180, last_seq=stored[-1].seq)


def test_record_joins_the_callers_transaction(service: GovernanceService) -> None:
    """Nothing is committed by `record`: a rolled-back transaction leaves no event and a valid chain."""
    record_events(service, 0, 5)
    session = service.factory()
    with session:
        session.begin()
        record(session, event(5), service.clock())
        session.rollback()  # the decision failed after its audit event was written
    record_events(service, 6, 5)  # PostgreSQL skipped a seq number: gaps are fine
    assert [row.event_id for row in rows(service)] == [f"ev-{i:04d}" for i in (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)]
    assert check(service).ok


def test_record_is_idempotent_by_event_id(service: GovernanceService) -> None:
    with transaction(service.factory) as session:
        first = record(session, event(1), service.clock())
        again = record(session, event(1, occurred_at=None), service.clock())  # a retry without a time
        assert again.seq == first.seq
    with pytest.raises(EventConflictError, match="ev-0001"), transaction(service.factory) as session:
        record(session, event(1, actor="someone-else"), service.clock())
    assert len(rows(service)) == 1


def test_event_errors_name_the_field() -> None:
    with pytest.raises(AuditEventError) as missing:
        event(1, actor="")
    assert missing.value.field == "actor"
    with pytest.raises(AuditEventError) as nan:
        event(1, meta={"score": float("nan")})
    assert nan.value.field == "meta.score"
    with pytest.raises(AuditEventError) as surrogate:
        event(1, meta={"note": "half a pair \ud800"})
    assert surrogate.value.field == "meta.note"
    with pytest.raises(AuditEventError) as key:
        event(1, changes={"during": {}})
    assert key.value.field == "changes.during"
    with pytest.raises(AuditEventError) as naive:
        event(1, occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time under test
    assert naive.value.field == "occurred_at"


def test_sensitive_values_are_masked_before_hashing_and_storing(service: GovernanceService) -> None:
    changes = {
        "after": {
            "contact": "alice.admin@example.com",
            "api_token": "pxg_abcdefghijklmnop",
            "note": "approved over chat, header was Bearer eyJhbGciOi.abc.def",
            "nested": [{"password": "hunter2"}],
        }
    }
    with transaction(service.factory) as session:
        meta = {"secret": "s3cr3t", "big": 1e20, "tiny": 1.5e-7, "zero": -0.0, "huge": 10**30, "at": START}
        record(session, event(1, changes=changes, meta=meta), service.clock())
    [row] = rows(service)
    after = row.changes["after"]
    assert after["contact"] == "a***@example.com"
    assert after["api_token"] == "***"
    assert after["note"] == "approved over chat, header was Bearer ***"
    assert after["nested"] == [{"password": "***"}]
    assert row.meta == {  # normalised so both stores give it back unchanged
        "secret": "***",
        "big": 10**20,
        "tiny": 1.5e-7,
        "zero": 0.0,
        "huge": 10**30,
        "at": "2026-11-01T00:00:00.000000Z",
    }
    assert "hunter2" not in json.dumps(event_fields(row), default=str)
    assert row.hash == chain_hash(row.prev_hash, event_fields(row))  # the hash covers what is stored
    assert check(service).ok


# -- tampering ----------------------------------------------------------------------------------------


def _swap(service: GovernanceService, first: int, second: int) -> None:
    """Exchange the contents of two records (a reordering), keeping their seq numbers."""
    names = [column.key for column in AuditEventRow.__table__.columns if column.key != "seq"]
    with transaction(service.factory) as session:
        a, b = session.get_one(AuditEventRow, first), session.get_one(AuditEventRow, second)
        was_a, was_b = ({n: getattr(row, n) for n in names} for row in (a, b))
        a.event_id = "swapping"  # event ids are unique
        session.flush()
        for name in names:
            setattr(b, name, was_a[name])
        session.flush()
        for name in names:
            setattr(a, name, was_b[name])


def _forge_after(service: GovernanceService, event_id: str, forged_id: str) -> int:
    """Insert a forged record right after `event_id`, with a correct link and a recomputed hash."""
    after = seq_of(service, event_id)
    sql(service, "UPDATE audit_events SET seq = -seq WHERE seq > :s", s=after)
    sql(service, "UPDATE audit_events SET seq = 1 - seq WHERE seq < 0", s=after)
    with transaction(service.factory) as session:
        prev = session.execute(select(AuditEventRow.hash).where(AuditEventRow.seq == after)).scalar_one()
        forged = AuditEventRow(
            seq=after + 1,
            event_id=forged_id,
            occurred_at=START,
            recorded_at=START,
            tenant_uuid=T1,
            correlation_id=None,
            source="governance",
            operation="decision.upgrade",
            resource_type="recommendation",
            resource_id="1",
            outcome="success",
            severity="info",
            actor="mallory",
            changes={},
            meta={},
            prev_hash=prev,
            hash="",
        )
        forged.hash = chain_hash(prev, event_fields(forged))
        session.add(forged)
    return after + 1


def _rewrite(service: GovernanceService, event_id: str) -> int:
    """Modify a record and recompute its own hash (what a forger who read this module would do)."""
    with transaction(service.factory) as session:
        row = session.execute(select(AuditEventRow).where(AuditEventRow.event_id == event_id)).scalar_one()
        row.actor = "mallory"
        row.hash = chain_hash(row.prev_hash, event_fields(row))
        return row.seq


def _expect(result: VerifyResult, seq: int, event_id: str | None, *words: str) -> None:
    assert not result.ok, result
    assert (result.first_bad_seq, result.first_bad_event_id) == (seq, event_id), result
    for word in words:
        assert word in (result.problem or ""), result


def test_verify_names_the_first_bad_record_of_every_kind(service: GovernanceService) -> None:
    """Tamper from the newest records back to the oldest: each time verify names the new first bad one.

    Sequential and parallel (range-split, several processes) verification must agree every time.
    """
    record_events(service, 0, 60)
    assert check(service).ok

    forged_tail = _forge_after(service, "ev-0059", "forged-tail")  # appended without the audit writer
    _expect(check(service), forged_tail, "forged-tail", "inserted outside")
    sql(service, "DELETE FROM audit_events WHERE event_id = 'forged-tail'")
    assert check(service).ok

    newest = seq_of(service, "ev-0059")
    sql(service, "DELETE FROM audit_events WHERE seq = :s", s=newest)
    _expect(check(service), newest, None, "missing", "deleted")

    modified = seq_of(service, "ev-0050")
    sql(service, "UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=modified)
    _expect(check(service), modified, "ev-0050", "modified")

    moved = seq_of(service, "ev-0040")
    _swap(service, moved, seq_of(service, "ev-0041"))
    _expect(check(service), moved, "ev-0041", "reordered")

    forged = _forge_after(service, "ev-0030", "forged-1")
    _expect(check(service), forged, "forged-1", "inserted")
    assert check(service, workers=2) == check(service)  # the break is where the two ranges meet

    deleted = seq_of(service, "ev-0020")
    sql(service, "DELETE FROM audit_events WHERE seq = :s", s=deleted)
    _expect(check(service), seq_of(service, "ev-0021"), "ev-0021", "deleted")

    rehashed = _rewrite(service, "ev-0010")  # a recomputed hash of its own: its successor's link breaks
    _expect(check(service), seq_of(service, "ev-0011"), "ev-0011", f"seq {rehashed} was modified")

    sql(service, "DELETE FROM audit_events WHERE event_id = 'ev-0000'")
    _expect(check(service), seq_of(service, "ev-0001"), "ev-0001", "before it were deleted")
    result = check(service)
    assert result.checked == 0


# -- concurrent writers -------------------------------------------------------------------------------

WRITER: Final = """
import os, sys
from datetime import UTC, datetime
from powerx_governance.audit.service import AuditEvent, record
from powerx_governance.db.session import make_engine, session_factory, transaction
name, count = sys.argv[1], int(sys.argv[2])
engine = make_engine(os.environ["AUDIT_TEST_DATABASE_URL"])
factory = session_factory(engine)
with engine.connect():
    pass
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    with transaction(factory) as session:
        event = AuditEvent(source="writer", operation="write", resource_type="test", resource_id=str(i),
                           actor=name, event_id=f"{name}-{i:04d}", meta={"i": i})
        record(session, event, datetime.now(UTC))
engine.dispose()
"""


def _writers(url: str, names: list[str], count: int) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "AUDIT_TEST_DATABASE_URL": url}
    return [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for name in names
    ]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_concurrent_processes_keep_one_linear_chain(service: GovernanceService, database_url: str) -> None:
    """4 OS processes each record 200 events at the same time, one transaction per event."""
    names = [f"writer{n}" for n in range(4)]
    writers = _writers(database_url, names, 200)
    try:
        for writer in writers:  # everyone connected before anyone writes
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            _, errors = writer.communicate(timeout=90)
            assert writer.returncode == 0, errors
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.communicate()
    stored = rows(service)
    assert len(stored) == 800
    assert Counter(row.actor for row in stored) == dict.fromkeys(names, 200)
    assert len({row.prev_hash for row in stored}) == 800  # no fork: every hash is someone's prev once
    assert check(service) == VerifyResult(True, 800, last_seq=stored[-1].seq)


def test_concurrent_threads_keep_one_linear_chain(service: GovernanceService) -> None:
    failures: list[Exception] = []

    def write(name: str) -> None:
        try:
            for i in range(50):
                with transaction(service.factory) as session:
                    record(session, event(i, event_id=f"{name}-{i}", actor=name), service.clock())
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"thread{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert check(service) == VerifyResult(True, 200, last_seq=rows(service)[-1].seq)


# -- export -------------------------------------------------------------------------------------------


def _export(service: GovernanceService, **options: Any) -> list[str]:
    with service.factory() as session:
        return list(export(session, **options))


def test_export_by_time_range_and_tenant_in_jsonl_and_csv(service: GovernanceService) -> None:
    record_events(service, 0, 40)  # event i occurred at START + i minutes, tenants alternate
    with transaction(service.factory) as session:
        risky = event(
            99,
            actor='=HYPERLINK("http://x")',
            resource_id="+1",
            occurred_at=START + timedelta(minutes=11, seconds=30),
        )
        record(session, risky, service.clock())
    window = {"start": START + timedelta(minutes=10), "end": START + timedelta(minutes=20)}

    lines = _export(service, **window, tenant_uuid=T1, fmt="jsonl")
    exported = [json.loads(line) for line in lines]
    assert [e["event_id"] for e in exported] == ["ev-0010", "ev-0012", "ev-0014", "ev-0016", "ev-0018"]
    assert all(line.endswith("\n") for line in lines)
    first = exported[0]
    assert first["occurred_at"] == "2026-11-01T00:10:00.000000Z"
    assert first["changes"]["after"]["reason"] == "reason 10"
    assert {"seq", "hash", "prev_hash", "severity", "outcome", "meta"} <= set(first)

    every_tenant = [json.loads(line)["event_id"] for line in _export(service, **window)]
    assert _export(service, **window, batch=2) == _export(service, **window)
    assert every_tenant == [f"ev-{i:04d}" for i in range(10, 20)] + ["ev-0099"]

    table = list(csv.DictReader(io.StringIO("".join(_export(service, **window, tenant_uuid=T2, fmt="csv")))))
    assert [r["event_id"] for r in table] == [
        "ev-0011",
        "ev-0013",
        "ev-0015",
        "ev-0017",
        "ev-0019",
        "ev-0099",
    ]
    forged = table[-1]
    assert forged["actor"] == '\'=HYPERLINK("http://x")'  # formula injection neutralised
    assert forged["resource_id"] == "'+1"
    assert json.loads(table[0]["changes"])["after"]["state"] == "ignored"
    assert _export(service, start=START + timedelta(days=9), end=START + timedelta(days=10), fmt="csv") == [
        ",".join(json.loads(lines[0]).keys()) + "\r\n"
    ]


# -- retention ----------------------------------------------------------------------------------------


def test_retention_under_a_year_is_refused(service: GovernanceService) -> None:
    check_retention(365)
    with pytest.raises(RetentionError, match="at least 365 days"):
        check_retention(364)
    now = service.clock()
    with transaction(service.factory) as session:
        with pytest.raises(RetentionError, match="at least 365 days"):
            prune(session, before=now - timedelta(days=400), retention_days=90, now=now)
        with pytest.raises(RetentionError, match="younger than the 365-day retention"):
            prune(session, before=now - timedelta(days=300), retention_days=365, now=now)


def _record_at(service: GovernanceService, moment: datetime, indexes: range) -> None:
    with transaction(service.factory) as session:
        for i in indexes:
            record(
                session, event(i, occurred_at=moment + timedelta(minutes=i)), moment + timedelta(minutes=i)
            )


def test_prune_keeps_the_rest_verifiable_and_tamper_evident(service: GovernanceService) -> None:
    now = service.clock()
    _record_at(service, now - timedelta(days=800), range(20))
    _record_at(service, now - timedelta(days=500), range(20, 30))
    _record_at(service, now - timedelta(days=10), range(30, 40))

    tampered = seq_of(service, "ev-0003")
    sql(service, "UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=tampered)
    with pytest.raises(ChainBrokenError, match=f"seq {tampered}"), transaction(service.factory) as session:
        prune(session, before=now - timedelta(days=700), retention_days=365, now=now)
    assert len(rows(service)) == 40  # refused: nothing deleted
    sql(service, "UPDATE audit_events SET actor = 'admin-0' WHERE seq = :s", s=tampered)  # evidence back

    with transaction(service.factory) as session:
        first = prune(session, before=now - timedelta(days=700), retention_days=365, now=now)
    assert (first.pruned, first.through_seq) == (20, seq_of(service, "ev-0020") - 1)
    assert first.checkpoint_event is not None
    assert first.checkpoint_event.meta["checkpoint"]["seq"] == first.through_seq
    assert check(service) == VerifyResult(True, 21, last_seq=first.checkpoint_event.seq)
    assert check(service, batch=3) == check(service)  # small windows: the pruned stretch is jumped over

    with transaction(service.factory) as session:  # a second pruning moves the checkpoint on
        second = prune(session, before=now - timedelta(days=400), retention_days=365, now=now)
        nothing = prune(session, before=now - timedelta(days=400), retention_days=365, now=now)
    assert second.pruned == 10
    assert nothing.pruned == 0
    assert [r.operation for r in rows(service)][-2:] == ["audit.pruned", "audit.pruned"]
    assert check(service).ok

    oldest = rows(service)[0]
    sql(service, "DELETE FROM audit_events WHERE seq = :s", s=oldest.seq)
    _expect(check(service), seq_of(service, "ev-0031"), "ev-0031", "before it were deleted")


# -- the CLI ------------------------------------------------------------------------------------------


def _powerx(database_url: str, var: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `powerx` executable in a subprocess, as operators run it."""
    return powerx_with({"POWERX_DATABASE_URL": database_url, "POWERX_VAR_DIR": str(var)}, "audit", *args)


def _audit_cli(database_url: str, var: Path, *args: str, **env: str) -> Result:
    """The same Typer app in this process (no interpreter start-up per call)."""
    env |= {"POWERX_DATABASE_URL": database_url, "POWERX_VAR_DIR": str(var)}
    return CliRunner().invoke(audit_app, list(args), env=env)


def test_cli_verify_exit_codes(service: GovernanceService, database_url: str, tmp_path: Path) -> None:
    record_events(service, 0, 30)
    intact = _audit_cli(database_url, tmp_path, "verify")
    last = rows(service)[-1].seq
    assert (intact.exit_code, intact.stdout.strip()) == (
        0,
        f"audit chain OK: 30 records verified (through seq {last})",
    )

    bad = seq_of(service, "ev-0012")
    sql(service, "UPDATE audit_events SET actor = 'mallory' WHERE seq = :s", s=bad)
    broken = _audit_cli(database_url, tmp_path, "verify")
    assert broken.exit_code == 1, broken.output
    assert f"audit chain BROKEN at seq {bad} (event ev-0012)" in broken.stdout
    assert "modified" in broken.stdout
    as_json = json.loads(_audit_cli(database_url, tmp_path, "verify", "--json").stdout)
    assert (as_json["ok"], as_json["first_bad_seq"], as_json["checked"]) == (False, bad, 12)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_export_prune_and_usage_errors(
    service: GovernanceService, database_url: str, tmp_path: Path
) -> None:
    record_events(service, 0, 20)
    target = tmp_path / "out" / "audit.csv"
    done = _audit_cli(
        database_url,
        tmp_path,
        *("export", "--start", "2026-11-01", "--end", "2026-11-02T00:00:00Z", "--tenant", T1),
        *("--format", "csv", "--output", str(target)),
    )
    assert done.exit_code == 0, done.output
    assert "10 audit records exported" in done.stderr
    with target.open(newline="", encoding="utf-8") as exported:
        assert len(list(csv.DictReader(exported))) == 10
    jsonl = _audit_cli(database_url, tmp_path, "export", "--start", "2026-11-01", "--end", "2026-11-02")
    assert len(jsonl.stdout.splitlines()) == 20

    for args, complaint in (
        (("export", "--start", "yesterday", "--end", "2026-11-02"), "not an RFC 3339 time"),
        (("export", "--start", "2026-11-01T00:00:00", "--end", "2026-11-02"), "no time zone"),
        (("export", "--start", "2026-11-02", "--end", "2026-11-01"), "later than --start"),
        (("prune", "--before", "2020-01-01", "--retention-days", "30"), "at least 365 days"),
        (("prune", "--before", "2026-11-01"), "younger than the 365-day retention"),
        (("verify", "--workers", "0"), "--workers"),
    ):
        refused = _audit_cli(database_url, tmp_path, *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert complaint in " ".join(refused.stderr.split()), refused.stderr
    configured = _audit_cli(
        database_url, tmp_path, "prune", "--before", "2020-01-01", POWERX_AUDIT_RETENTION_DAYS="90"
    )
    assert (configured.exit_code, "at least 365 days" in configured.stderr) == (2, True)
    nothing = _audit_cli(database_url, tmp_path, "prune", "--before", "2020-01-01")
    assert (nothing.exit_code, nothing.stdout.strip()) == (0, "nothing to prune")

    sql(service, "DELETE FROM audit_events WHERE event_id = 'ev-0007'")
    installed = _powerx(database_url, tmp_path, "verify")  # the `powerx` executable itself
    assert installed.returncode == 1, installed.stderr
    assert f"audit chain BROKEN at seq {seq_of(service, 'ev-0008')} (event ev-0008)" in installed.stdout


# -- POST / GET /internal/audit/version ----------------------------------------------------------------


def _body(i: int, **overrides: Any) -> dict[str, Any]:
    return {
        "event_id": f"ext-{i}",
        "occurred_at": f"2026-11-29T10:00:{i:02d}Z",
        "tenant_uuid": (T1, T2)[i % 2],
        "source": "powerx.plugin-manager",
        "operation": "plugin.upgrade",
        "resource_type": "installation",
        "resource_id": f"inst-{i}",
        "actor": "svc-rollout",
        "changes": {"before": {"version": "2.3.0"}, "after": {"version": "2.4.1"}},
        "meta": {"batch": 7},
    } | overrides


def _problem_fields(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [error["field"] for error in response.json()["errors"]]


def test_ingest_route_is_idempotent_validated_and_scoped(service: GovernanceService) -> None:
    internal = issue_token(service, Role.SERVICE)
    operator = issue_token(service, Role.OPERATOR)
    store_tenant(service, T1)
    viewer = issue_token(service, Role.VIEWER, T1)
    with LiveServer(service, background=False) as live, live.client(internal) as client:
        first = client.post(API, json=_body(1))
        assert first.status_code == 201, first.text
        assert (first.json()["event_id"], first.json()["created"]) == ("ext-1", True)
        again = client.post(API, json=_body(1))
        assert again.status_code == 200
        assert (again.json()["seq"], again.json()["hash"], again.json()["created"]) == (
            first.json()["seq"],
            first.json()["hash"],
            False,
        )
        conflict = client.post(API, json=_body(1, actor="someone-else"))
        assert conflict.status_code == 409
        assert conflict.json()["event_id"] == "ext-1"

        batch = client.post(API, json={"events": [_body(1), _body(2), _body(3)]})
        assert batch.status_code == 201
        assert batch.json()["created"] == 2
        assert [item["created"] for item in batch.json()["items"]] == [False, True, True]
        assert client.post(API, json={"events": [_body(2), _body(3)]}).status_code == 200

        assert _problem_fields(
            client.post(API, json={k: v for k, v in _body(4).items() if k != "source"})
        ) == ["source"]
        missing = {k: v for k, v in _body(5).items() if k != "operation"}
        assert _problem_fields(client.post(API, json={"events": [_body(4), missing]})) == [
            "events.1.operation"
        ]
        assert _problem_fields(client.post(API, json=_body(4, colour="red"))) == ["colour"]
        assert _problem_fields(client.post(API, json=_body(4, occurred_at="2026-11-29T10:00:00"))) == [
            "occurred_at"
        ]
        assert _problem_fields(client.post(API, json=_body(4, changes={"during": {}}))) == ["changes"]
        nan = client.post(
            API,
            content='{"source": "s", "operation": "o", "resource_type": "r", "actor": "a", "meta": {"x": NaN}}',  # noqa: E501
            headers={"content-type": "application/json"},
        )
        assert _problem_fields(nan) == ["meta.x"]

        with live.client(operator) as as_operator:
            assert as_operator.post(API, json=_body(6)).status_code == 403
            everything = as_operator.get(API).json()
            assert [e["event_id"] for e in everything["items"]] == ["ext-1", "ext-2", "ext-3"]
            page = as_operator.get(API, params={"limit": 2}).json()
            assert len(page["items"]) == 2
            rest = as_operator.get(API, params={"limit": 2, "cursor": page["next_cursor"]}).json()
            assert ([e["event_id"] for e in rest["items"]], rest["next_cursor"]) == (["ext-3"], None)
            found = as_operator.get(
                API, params={"resource_id": "inst-2", "operation": "plugin.upgrade"}
            ).json()
            assert [e["event_id"] for e in found["items"]] == ["ext-2"]
        with live.client(viewer) as as_viewer:
            assert [e["event_id"] for e in as_viewer.get(API).json()["items"]] == ["ext-2"]  # T1's only
            assert as_viewer.get(API, params={"tenant": T2}).status_code == 404
            assert as_viewer.post(API, json=_body(7)).status_code == 403
        with live.client() as anonymous:
            assert anonymous.post(API, json=_body(8)).status_code == 401
    with service.factory() as session:
        assert session.execute(select(func.count()).select_from(AuditEventRow)).scalar_one() == 3
    assert check(service).ok


# -- shipping to a remote audit service ---------------------------------------------------------------


class _Collector(ThreadingHTTPServer):
    """A remote audit service on loopback: stores each event once per Idempotency-Key, fails 30 %."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, fail_rate: float, seed: int = 7) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.fail_rate = fail_rate
        self.random = random.Random(seed)  # noqa: S311 - fault injection, not security
        self.lock = threading.Lock()
        self.stored: dict[str, dict[str, Any]] = {}
        self.deliveries: Counter[str] = Counter()
        self.faults = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def accept(self, key: str | None, body: dict[str, Any]) -> int:
        with self.lock:
            roll = self.random.random()
            if roll < self.fail_rate / 2:  # refused before storing
                self.faults += 1
                return 503
            if key is None or body.get("event_id") != key:
                return 400
            self.deliveries[key] += 1
            created = key not in self.stored
            self.stored.setdefault(key, body)
            if roll < self.fail_rate:  # stored, but the answer is lost: the client must retry
                self.faults += 1
                return 500
            return 201 if created else 200


class _CollectorHandler(BaseHTTPRequestHandler):
    server: _Collector
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.server.accept(self.headers.get("Idempotency-Key"), body)
        payload = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector(fail_rate=0.3)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def fast_sink_settings(settings: Settings) -> SinkSettings:
    """The audit component's settings section with quick retries (the tests' faults are many)."""
    return sink_settings(settings.environ, policy=FAST_RETRIES)


def with_sink(service: GovernanceService, env: dict[str, str]) -> GovernanceService:
    """The service restarted with this audit sink configuration and quick retries."""
    components = replacing(
        service.installed.components, "audit", settings=f"{__name__}:{fast_sink_settings.__name__}"
    )
    return service.reconfigured(env, components=components)


def _ship_everything(service: GovernanceService, rounds: int = 30) -> None:
    """Run the scheduler's follow-ups and the worker until the watermark reaches the newest record."""
    clock = service.clock
    assert isinstance(clock, FakeClock)
    for _ in range(rounds):
        for follow_up in service.installed.always_on_periodic:
            follow_up(service)
        service.run_pending()
        with service.factory() as session:
            newest = session.execute(select(func.max(AuditEventRow.seq))).scalar_one()
            if shipped_through(session) == newest:
                return
        clock.advance(3600)  # retried and re-queued jobs become due
    raise AssertionError("shipping did not catch up")


def test_http_sink_ships_every_event_exactly_once_through_faults(
    service: GovernanceService, collector: _Collector
) -> None:
    service = with_sink(service, {SINK_URL_ENV: collector.url})
    assert queue_shipping in service.installed.always_on_periodic
    record_events(service, 0, 120)
    _ship_everything(service)
    record_events(service, 120, 30)  # later events are shipped by a later job
    _ship_everything(service)

    expected = {row.event_id: row for row in rows(service)}
    assert set(collector.stored) == set(expected)  # nothing missing, nothing unexpected
    assert collector.faults > 20
    assert sum(collector.deliveries.values()) > len(expected)  # lost answers were retried ...
    for event_id, body in collector.stored.items():  # ... and each event is stored once, intact
        row = expected[event_id]
        assert (body["actor"], body["changes"], body["meta"]) == (row.actor, row.changes, row.meta)
    with service.factory() as session:
        assert shipped_through(session) == max(row.seq for row in expected.values())


def test_sink_task_needs_a_configured_url(service: GovernanceService) -> None:
    service = with_sink(service, {})
    assert queue_shipping not in service.installed.always_on_periodic
    with pytest.raises(SinkError, match=SINK_URL_ENV):
        service.tasks[SHIP_TASK]({"from_seq": 1})


def test_http_sink_feeds_a_powerx_audit_service(service: GovernanceService, tmp_path: Path) -> None:
    """Our events shipped to another instance's `POST /internal/audit/version` (its own chain)."""
    record_events(service, 0, 40)
    with built_services(sqlite_url(tmp_path / "remote.db"), tmp_path / "remote") as build:
        remote = build(POWERX_WORKER="0")
        token = issue_token(remote, Role.SERVICE)
        with LiveServer(remote, background=False) as live:
            service = with_sink(service, {SINK_URL_ENV: live.base_url, SINK_TOKEN_ENV: token})
            _ship_everything(service)
            with transaction(service.factory) as session:  # ship it all again: the remote dedupes
                session.execute(
                    text("UPDATE locks SET owner = :zero WHERE name = 'audit-shipped'"), {"zero": "0" * 20}
                )
            _ship_everything(service)
        received = rows(remote)
        ours = {r.event_id: (r.actor, r.changes, r.meta, r.occurred_at) for r in rows(service)}
        theirs = {r.event_id: (r.actor, r.changes, r.meta, r.occurred_at) for r in received}
        assert theirs == ours  # each once, intact (within a chunk the arrival order may differ)
        assert check(remote).ok
