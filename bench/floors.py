"""Floor processes: read what a command reads, and nothing more, with as few imports as possible.

    python -m bench.floors inventory URL   every tenant and installation, as the scan reads them
    python -m bench.floors audit URL       every stored column of every audit event, in seq order

Each prints one JSON line with what it read. The benches run them as whole processes next to
the command they are the floor of.
"""

from __future__ import annotations

import json
import sys
from typing import Any

_AUDIT_SQL = (
    "SELECT seq, event_id, occurred_at, recorded_at, tenant_uuid, correlation_id, source, operation,"
    " resource_type, resource_id, outcome, severity, actor, CAST(changes AS TEXT), CAST(meta AS TEXT),"
    " prev_hash, hash FROM audit_events ORDER BY seq"
)


def inventory(url: str) -> dict[str, Any]:
    """The stored manifests through the store's own reader (what a full scan from the store reads)."""
    from powerx_governance.db.session import make_engine, session_factory  # noqa: PLC0415 - lean start
    from powerx_governance.inventory.store import load_manifests  # noqa: PLC0415

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            manifests = load_manifests(session)
    finally:
        engine.dispose()
    return {"tenants": len(manifests), "installations": sum(len(m.plugins) for m in manifests)}


def audit(url: str) -> dict[str, Any]:
    """Every audit column through the bare driver: no SQLAlchemy, no hashing, in constant memory
    (on PostgreSQL through a server-side cursor, as a client-side one holds every row at once)."""
    if url.startswith("sqlite"):
        import sqlite3  # noqa: PLC0415 - lean start

        connection: Any = sqlite3.connect(url.split(":///", 1)[1])
        cursor = connection.cursor()
    else:
        import psycopg  # noqa: PLC0415

        base, _, query = url.replace("postgresql+psycopg", "postgresql").partition("?")
        options = query.removeprefix("options=").replace("%3D", "=")
        connection = psycopg.connect(base, options=options) if options else psycopg.connect(base)
        cursor = connection.cursor(name="audit_floor")
    rows = 0
    with connection:
        cursor.execute(_AUDIT_SQL)
        while batch := cursor.fetchmany(20_000):
            rows += len(batch)
    return {"rows": rows}


def main() -> None:
    what, url = sys.argv[1], sys.argv[2]
    print(json.dumps(inventory(url) if what == "inventory" else audit(url)))


if __name__ == "__main__":
    main()
