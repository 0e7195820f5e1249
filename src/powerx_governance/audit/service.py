"""The audit trail: append-only events with PowerX's audit fields, chained by SHA-256.

Chain. Every row stores `prev_hash` (the `hash` of the row before it in `seq` order; the first
row of a fresh trail uses 64 zeros) and `hash = hex(sha256(ascii(prev_hash) + canonical JSON))`.
The canonical JSON is the object of every stored column but seq, prev_hash and hash, plus
`"schema": "powerx.audit-event/v1"`, with sorted keys, no whitespace, UTF-8, and timestamps as
RFC 3339 UTC with microseconds and `Z` (`event_fields` builds it from a row). Changing,
deleting, inserting or reordering any row breaks a hash or a link, and `verify` names the first
record where that happens. The seq numbers only order the chain: gaps are fine.

Writers. `record`/`record_many` append in the caller's transaction (they flush, never commit), so
a decision and its audit event commit together. The chain stays linear with any number of
writers: before reading the last hash a writer takes the chain lock, held until its transaction
ends — `pg_advisory_xact_lock(AUDT, hashtext(current_schema()))` on PostgreSQL (one chain per
schema; READ COMMITTED is required so the next statement sees the previous holder's row), and on
SQLite the database write lock, taken by writing this component's own `locks` row. Call `record`
late in a transaction: the lock serialises audit writers until commit.

What a hash chain alone cannot show: someone with write access to the database who rewrites
the newest records and the head marker together, or empties the table and the markers. The
outside witness for that is the remote audit service the events are shipped to (`sink.py`).

State kept in the `locks` table (rows owned by this component, `owner` holds the value):
- `audit-chain`: `"<seq>:<hash>"` of the newest record, written with it. `verify` checks the
  chain reaches it, so deleting the newest records is detected too.
- `audit-pruned`: `"<seq>:<hash>"` of the last record removed by `prune`. After pruning, the
  oldest remaining record must link to it instead of the genesis hash. `prune` also appends an
  `audit.pruned` event carrying the same checkpoint, so the pruning itself is on the record.

Masking. `changes` and `meta` go through `observability.logging.mask` (sensitive keys, tokens and
e-mail addresses) before they are hashed and stored, so the hash covers what is stored. The
identity columns (actor, resource, tenant, correlation id) are kept as given: they are what an
audit trail is for.

JSON values are normalised so both stores give them back unchanged: keys become strings, tuples
lists, datetimes RFC 3339 strings, integral floats written with an exponent (1e20) integers and
-0.0 becomes 0.0 (PostgreSQL's jsonb keeps numbers as decimals); NaN, infinities and NUL
characters are refused.

The trail is split by role: `model` (events, validation, errors), `chain` (canonical JSON, the
hash chain, the writers), `walk` (reading the stored chain in seq order), `verify`, `queries`,
`export` and `prune`. This module is the public face other components import.
"""

from powerx_governance.audit.chain import (
    CHAIN_MARKER,
    CHECKPOINT_MARKER,
    GENESIS,
    SCHEMA,
    Recorded,
    canonical,
    chain_hash,
    event_fields,
    hashed_fields,
    ingest,
    read_marker,
    record,
    record_many,
    write_marker,
)
from powerx_governance.audit.export import EXPORT_FIELDS, EXPORT_FORMATS, ExportFormat, export
from powerx_governance.audit.model import (
    LIMITS,
    AuditError,
    AuditEvent,
    AuditEventError,
    ChainBrokenError,
    EventConflictError,
    RetentionError,
    StoredEvent,
    VerifyResult,
    rfc3339,
)
from powerx_governance.audit.prune import (
    MIN_RETENTION_DAYS,
    PRUNED_OPERATION,
    PruneResult,
    check_retention,
    prune,
)
from powerx_governance.audit.queries import EventFilter, list_events, record_view
from powerx_governance.audit.verify import PARALLEL_FROM, range_worker, verify

__all__ = [
    "CHAIN_MARKER",
    "CHECKPOINT_MARKER",
    "EXPORT_FIELDS",
    "EXPORT_FORMATS",
    "GENESIS",
    "LIMITS",
    "MIN_RETENTION_DAYS",
    "PARALLEL_FROM",
    "PRUNED_OPERATION",
    "SCHEMA",
    "AuditError",
    "AuditEvent",
    "AuditEventError",
    "ChainBrokenError",
    "EventConflictError",
    "EventFilter",
    "ExportFormat",
    "PruneResult",
    "Recorded",
    "RetentionError",
    "StoredEvent",
    "VerifyResult",
    "canonical",
    "chain_hash",
    "check_retention",
    "event_fields",
    "export",
    "hashed_fields",
    "ingest",
    "list_events",
    "prune",
    "range_worker",
    "read_marker",
    "record",
    "record_many",
    "record_view",
    "rfc3339",
    "verify",
    "write_marker",
]
