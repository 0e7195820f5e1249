"""The core settings, built from one snapshot of the environment by a function (never at import time).

Components read their own sections from the same snapshot (`environ`) once, at start: each
declares a settings reader (`kernel.Component.settings`) and gets its typed section in `install`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from powerx_governance.durations import parse_duration
from powerx_governance.feature_flags import ConfiguredFlag, Flag, configured_flags

# the every-tenant advisory of the reference fleet (20,000 installations) stays one job: the push
# latency path; two full-scan shards' worth of installations (2 x 500 tenants x ~50) is sharded
DEFAULT_DELTA_SHARD_FROM = 50_000


@dataclass(frozen=True, slots=True)
class Settings:
    rules_path: Path | None  # POWERX_RULES
    compat_path: Path | None  # POWERX_COMPAT
    var_dir: Path  # POWERX_VAR_DIR
    max_document_bytes: int  # POWERX_MAX_DOCUMENT_BYTES
    database_url: str  # POWERX_DATABASE_URL
    tenant_source: (
        str | None
    )  # POWERX_TENANT_SOURCE: a manifest directory / JSON-lines file, or an http(s) URL
    catalog_source: (
        str | None
    )  # POWERX_CATALOG_SOURCE: a catalog file, or an http(s) URL of the catalog service
    source_token: str | None  # POWERX_SOURCE_TOKEN: bearer token sent to HTTP sources
    host: str  # POWERX_HOST
    port: int  # POWERX_PORT
    max_body_bytes: int  # POWERX_MAX_BODY_BYTES: request bodies larger than this get 413
    web_workers: int  # POWERX_WEB_WORKERS: API processes of `serve` (the jobs run once, in the supervisor)
    scheduler: bool  # POWERX_SCHEDULER: run periodic scans in this process
    worker: bool  # POWERX_WORKER: run the job worker in this process
    retry_delay_seconds: float  # POWERX_SCAN_RETRY_DELAY: failed scans are retried after it (<= 120 s)
    poll_seconds: float  # POWERX_POLL_INTERVAL: how often the worker looks for jobs
    # POWERX_SCAN_SHARD_SIZE: tenants per shard job of a full scan; 0 = one job; unset = 500 on the
    # procrastinate queue, 0 on the local one
    scan_shard_size: int | None
    # POWERX_SCAN_DELTA_SHARD_FROM: a delta scan evaluating at least this many installations is sharded
    # like a full scan (when shards are on); smaller deltas stay one job
    scan_delta_shard_from: int
    settings_file: Path | None  # POWERX_SETTINGS_FILE: YAML with a `flags:` section
    flags: Mapping[Flag, ConfiguredFlag]  # POWERX_FLAG_*, else the settings file, else on
    auth_throttle_address: str  # POWERX_AUTH_THROTTLE_ADDRESS: failed authentications per client address
    auth_throttle_token: str  # POWERX_AUTH_THROTTLE_TOKEN: failed authentications per token prefix
    # POWERX_SCAN_WORKERS: processes a file scan (`powerx version scan`) is split across; None: one per
    # usable CPU, at most 4 (scans/parallel.py); 1: this process alone
    scan_workers: int | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # the snapshot read once

    @property
    def default_database(self) -> bool:
        return self.database_url.startswith("sqlite")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _shard_size(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        size = int(value)
    except ValueError as exc:
        raise ValueError(f"POWERX_SCAN_SHARD_SIZE must be a whole number of tenants, not {value!r}") from exc
    if not 0 <= size <= 1_000_000:
        raise ValueError(f"POWERX_SCAN_SHARD_SIZE must be from 0 to 1000000, not {value!r}")
    return size


def _delta_shard_from(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_DELTA_SHARD_FROM
    try:
        size = int(value)
    except ValueError as exc:
        raise ValueError(
            f"POWERX_SCAN_DELTA_SHARD_FROM must be a whole number of installations, not {value!r}"
        ) from exc
    if size < 1:
        raise ValueError(f"POWERX_SCAN_DELTA_SHARD_FROM must be at least 1, not {value!r}")
    return size


def _processes(value: str | None, variable: str) -> int | None:
    """A number of processes from 1 to 64, or None when unset; ValueError naming the variable."""
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 64:
        raise ValueError(f"{variable} must be a whole number of processes from 1 to 64, not {value!r}")
    return int(value)


def _rate(env: Mapping[str, str], variable: str, default: str) -> str:
    """A rate setting, checked by `limits` when it is set: the defaults are known rates, and a
    command that never throttles (a file scan) does not import `limits` (about 0.1-0.25 s)."""
    value = env.get(variable, default)
    if value != default:
        from powerx_governance.auth.throttle import parse_limit  # noqa: PLC0415 - see above

        parse_limit(value, variable)
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)  # read once: components read this snapshot
    var_dir = Path(env.get("POWERX_VAR_DIR", "var"))
    settings_file = _path(env.get("POWERX_SETTINGS_FILE"))
    retry = parse_duration(env.get("POWERX_SCAN_RETRY_DELAY", "60s")).total_seconds()
    if retry > 120:
        raise ValueError(
            "POWERX_SCAN_RETRY_DELAY must be at most 120s (failed scans are retried within 2 minutes)"
        )
    throttle_address = _rate(env, "POWERX_AUTH_THROTTLE_ADDRESS", "30/minute")
    throttle_token = _rate(env, "POWERX_AUTH_THROTTLE_TOKEN", "10/minute")
    return Settings(
        rules_path=_path(env.get("POWERX_RULES")),
        compat_path=_path(env.get("POWERX_COMPAT")),
        var_dir=var_dir,
        max_document_bytes=int(env.get("POWERX_MAX_DOCUMENT_BYTES", str(64 * 1024 * 1024))),
        database_url=env.get("POWERX_DATABASE_URL", f"sqlite+pysqlite:///{var_dir / 'governance.db'}"),
        tenant_source=env.get("POWERX_TENANT_SOURCE"),
        catalog_source=env.get("POWERX_CATALOG_SOURCE"),
        source_token=env.get("POWERX_SOURCE_TOKEN"),
        host=env.get("POWERX_HOST", "127.0.0.1"),
        port=int(env.get("POWERX_PORT", "8717")),
        max_body_bytes=int(env.get("POWERX_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
        web_workers=_processes(env.get("POWERX_WEB_WORKERS"), "POWERX_WEB_WORKERS") or 1,
        scheduler=_flag(env.get("POWERX_SCHEDULER"), default=True),
        worker=_flag(env.get("POWERX_WORKER"), default=True),
        retry_delay_seconds=retry,
        poll_seconds=parse_duration(env.get("POWERX_POLL_INTERVAL", "1s")).total_seconds(),
        scan_shard_size=_shard_size(env.get("POWERX_SCAN_SHARD_SIZE")),
        scan_delta_shard_from=_delta_shard_from(env.get("POWERX_SCAN_DELTA_SHARD_FROM")),
        settings_file=settings_file,
        flags=configured_flags(env, settings_file),
        auth_throttle_address=throttle_address,
        auth_throttle_token=throttle_token,
        scan_workers=_processes(env.get("POWERX_SCAN_WORKERS"), "POWERX_SCAN_WORKERS"),
        environ=env,
    )
