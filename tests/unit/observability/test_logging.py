"""Structured logs mask tokens, emails and secrets wherever they appear."""

from __future__ import annotations

import io
import json
import logging

from powerx_governance.observability.logging import JsonFormatter, mask


def _log_line(message: str, **extra: object) -> dict[str, object]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("powerx.test.masking")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info(message, extra=extra)
    line: dict[str, object] = json.loads(stream.getvalue())
    return line


def test_tokens_emails_and_secret_fields_are_masked() -> None:
    line = _log_line(
        "admin alice@example.invalid used pxg_abcdefghijklmnop with Bearer eyJhbGciOi.payload.sig",
        tenant="sandbox-tenant-a",
        webhook_secret="s3cr3t",
        headers={"Authorization": "Bearer xyz", "Accept": "application/json"},
        recipients=["bob@example.invalid"],
    )
    text = json.dumps(line)
    for leaked in ("alice@", "pxg_abcdefghijklmnop", "eyJhbGciOi", "s3cr3t", "Bearer xyz", "bob@"):
        assert leaked not in text
    assert line["tenant"] == "sandbox-tenant-a"
    assert line["webhook_secret"] == "***"
    assert line["headers"] == {"Authorization": "***", "Accept": "application/json"}
    assert line["recipients"] == ["b***@example.invalid"]
    assert "a***@example.invalid" in str(line["message"])


def test_json_line_has_time_level_and_logger() -> None:
    line = _log_line("scan finished", plugin="com.powerx.plugins.crm", risk="critical")
    assert line["level"] == "info"
    assert line["logger"] == "powerx.test.masking"
    assert str(line["time"]).endswith("Z")
    assert (line["plugin"], line["risk"]) == ("com.powerx.plugins.crm", "critical")


def test_mask_leaves_plain_values_alone() -> None:
    assert mask({"version": "2.4.0", "count": 3, "ok": True}) == {"version": "2.4.0", "count": 3, "ok": True}
