"""Email over SMTP (smtplib): text and HTML alternatives, a Message-ID derived from the idempotency key.

A repeated attempt of the same delivery carries the same Message-ID, so mail systems and
clients that deduplicate on it show the message once. STARTTLS is used when configured
(and credentials are never sent without it, see `config`).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from powerx_governance.notifications.channels.interface import (
    OutboundMessage,
    PermanentChannelError,
    Receipt,
    TransientChannelError,
)
from powerx_governance.notifications.config import SmtpSettings
from powerx_governance.notifications.templates import Part

log = logging.getLogger("powerx.notifications.smtp")


def message_id(idempotency_key: str, sender: str) -> str:
    """A stable RFC 5322 Message-ID for a delivery: same key, same id."""
    domain = sender.rsplit("@", 1)[-1].strip("<> ") if "@" in sender else "powerx-governance.invalid"
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<pxg.{digest}@{domain}>"


def build_email(message: OutboundMessage, sender: str) -> EmailMessage:
    """The email of one message: subject, text part, HTML alternative, stable Message-ID."""
    email = EmailMessage()
    email["Subject"] = message.render(Part.EMAIL_SUBJECT)
    email["From"] = sender
    email["To"] = ", ".join(message.fill(address) for address in message.recipient.to)
    email["Date"] = format_datetime(datetime.now(UTC))
    email["Message-ID"] = message_id(message.idempotency_key, sender)
    email["X-PowerX-Idempotency-Key"] = message.idempotency_key
    email["X-PowerX-Priority"] = message.risk_level
    email.set_content(message.render(Part.EMAIL_TEXT))
    email.add_alternative(message.render(Part.EMAIL_HTML), subtype="html")
    return email


def _refused(name: str, refused: Mapping[str, tuple[int, bytes]]) -> Exception:
    detail = "; ".join(
        f"{addr}: {code} {text.decode(errors='replace')}" for addr, (code, text) in refused.items()
    )
    if all(400 <= code < 500 for code, _ in refused.values()):
        return TransientChannelError(name, f"recipients deferred: {detail}")
    return PermanentChannelError(name, f"recipients refused: {detail}")


class SmtpChannel:
    """Sends each message as one email to the recipient's addresses."""

    name = "email"

    def __init__(self, settings: SmtpSettings, *, timeout: float) -> None:
        self._settings = settings
        self._timeout = timeout

    def send(self, message: OutboundMessage) -> Receipt:
        """Send over a fresh SMTP session; 4xx and connection failures are transient, 5xx permanent."""
        email = build_email(message, self._settings.sender)
        try:
            refused = self._submit(email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(self.name, exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            text = error.decode(errors="replace") if isinstance(error, bytes) else error
            detail = f"{exc.smtp_code} {text}"
            if 400 <= exc.smtp_code < 500:
                raise TransientChannelError(self.name, detail) from exc
            raise PermanentChannelError(self.name, detail) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentChannelError(self.name, f"server does not support it: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientChannelError(self.name, f"{type(exc).__name__}: {exc}") from exc
        if refused:  # the others have it: a retry would duplicate it for them, so note and move on
            log.warning("some email recipients refused", extra={"refused": sorted(refused)})
            return Receipt(f"{email['Message-ID']} refused: {', '.join(sorted(refused))}")
        return Receipt(str(email["Message-ID"]))

    def _submit(self, email: EmailMessage) -> dict[str, tuple[int, bytes]]:
        s = self._settings
        with smtplib.SMTP(s.host, s.port, timeout=self._timeout) as smtp:
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.user:
                smtp.login(s.user, s.password or "")
            return smtp.send_message(email)
