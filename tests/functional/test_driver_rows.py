"""`DriverRows` converts values as `bulk_insert` does, on both stores: a document with one member
spliced in (`with_member`) is exactly the document converted whole, and rows it inserts read back
as `bulk_insert`'s do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest
from sqlalchemy import select

from powerx_governance.db.bulk import DriverRows, bulk_insert
from powerx_governance.db.session import transaction
from powerx_governance.recommendations.tables import VerdictRow
from tests.conftest import NOW, ServiceFactory

if TYPE_CHECKING:
    import psycopg

FACTS: dict[str, Any] = {
    "tenant_key": None,
    "core_version": "4.2.0",
    "channel": "stable",
    "compatibility": ["needs core ≥ 4.1", 'quoted "x"\\'],
    "co_upgrades": [],
    "manifest_stale": False,
    "manifest_as_of": None,
}


def test_a_member_spliced_in_is_the_document_converted_whole(make_service: ServiceFactory) -> None:
    service = make_service()
    with transaction(service.factory) as session:
        rows = DriverRows(session, VerdictRow, ["fingerprint", "document", "created_at"])
        spliced = rows.with_member("document", FACTS, "tenant_key")
        for key in (None, "acme", "Überprüfung — 检查", 'q"uote\\', "\ue000member\ue000", "", "tab\there"):
            assert spliced(key) == rows.value("document", {**FACTS, "tenant_key": key}), key
        last = rows.with_member("document", {"a": 1, "z": "x"}, "z")  # the member last, and a new one
        assert last("y") == rows.value("document", {"a": 1, "z": "y"})
        added = rows.with_member("document", {"a": 1}, "b")
        assert added(None) == rows.value("document", {"a": 1, "b": None})


def test_driver_rows_read_back_as_bulk_insert_rows(make_service: ServiceFactory) -> None:
    service = make_service()
    documents = [{**FACTS, "tenant_key": f"k{i}"} for i in range(5)]
    with transaction(service.factory) as session:
        bulk_insert(
            session,
            VerdictRow,
            [{"fingerprint": f"a{i}", "document": d, "created_at": NOW} for i, d in enumerate(documents)],
        )
        rows = DriverRows(session, VerdictRow, ["fingerprint", "document", "created_at"])
        spliced = rows.with_member("document", FACTS, "tenant_key")
        rows.insert(
            [(f"b{i}", spliced(f"k{i}"), rows.repeated("created_at", NOW)) for i in range(len(documents))]
        )
    with service.factory() as session:
        stored = {
            fp: (doc, at)
            for fp, doc, at in session.execute(
                select(VerdictRow.fingerprint, VerdictRow.document, VerdictRow.created_at)
            )
        }
    for i, document in enumerate(documents):
        assert stored[f"a{i}"] == stored[f"b{i}"] == (document, NOW)


def test_rows_copied_as_text_lines_read_back_as_inserted_rows(make_service: ServiceFactory) -> None:
    """PostgreSQL: lines made of `field`s (`copy_of`) store what `insert` stores, special characters
    and NULL included; SQLite has no COPY text."""
    service = make_service()
    keys = ["plain", "tab\there", "line\nbreak", "back\\slash", "cr\rlf", "Überprüfung — 检查"]
    with transaction(service.factory) as session:
        rows = DriverRows(session, VerdictRow, ["fingerprint", "document", "created_at"])
        if not rows.copies_text:
            pytest.skip("SQLite has no COPY")
        values = [rows.value("document", {**FACTS, "tenant_key": key}) for key in keys]
        rows.insert([(f"a{key}", value, NOW) for key, value in zip(keys, values, strict=True)])
        lines = [
            f"{rows.field('b' + key)}\t{rows.field(value)}\t{rows.field(NOW)}\n"
            for key, value in zip(keys, values, strict=True)
        ]
        rows.copy_of(lines)()
    with service.factory() as session:
        stored = {
            fp: (doc, at)
            for fp, doc, at in session.execute(
                select(VerdictRow.fingerprint, VerdictRow.document, VerdictRow.created_at)
            )
        }
    for key in keys:
        assert stored[f"b{key}"] == stored[f"a{key}"] == ({**FACTS, "tenant_key": key}, NOW), key


def test_a_field_is_the_driver_s_own_copy_text(make_service: ServiceFactory) -> None:
    """`field` of each kind of value a first ingest writes is what psycopg's COPY row formatting sends."""
    service = make_service()
    with transaction(service.factory) as session:
        rows = DriverRows(session, VerdictRow, ["fingerprint", "document", "created_at"])
        if not rows.copies_text:
            pytest.skip("SQLite has no COPY")
        from psycopg._copy_base import format_row_text  # noqa: PLC0415 - the reference formatting
        from psycopg.adapt import Transformer  # noqa: PLC0415

        raw = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
        values = [None, True, False, 1, 0, 12345678901, NOW, "a\tb\\c\nd\re\bf\vg\fh", "x", ""]
        formatted = bytearray()
        format_row_text(values, Transformer(raw), formatted)
        assert "\t".join(map(rows.field, values)).encode() + b"\n" == bytes(formatted)
