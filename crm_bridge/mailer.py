"""Sending the assistant's emails: through an SMTP server, or into a local outbox folder.

Without ``SMTP_HOST`` nothing leaves the machine: each message is written as an RFC 5322
``.eml`` file in ``var/outbox/`` (readable by any mail client), which is what demos and
tests use. Neither mailer logs an address or a body: messages carry one-time codes.
"""

from __future__ import annotations

import logging
import os
import secrets
import smtplib
import ssl
import tempfile
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from crm_bridge.errors import Unavailable
from crm_bridge.settings import CrmSettings

logger = logging.getLogger(__name__)

SMTP_TIMEOUT_SECONDS = 10


class MailUnavailable(Unavailable):
    """The message could not be handed to the mail server (or written to the outbox)."""


class Mailer(Protocol):
    """Anything that can send a plain-text email."""

    def send(self, to: str, subject: str, body: str) -> None:
        """Send ``body`` to ``to``; MailUnavailable when it could not be handed over."""


def build_message(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text RFC 5322 message (the email package refuses line breaks in headers)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain="rapport.invalid")
    message.set_content(body)
    return message


class SmtpMailer:
    """Sends through an SMTP server, STARTTLS when asked, logging in when a user is set."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        starttls: bool,
        sender: str,
        timeout: float = SMTP_TIMEOUT_SECONDS,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.username, self._password = username, password
        self.starttls, self.sender = starttls, sender

    def __repr__(self) -> str:  # never the password
        return f"SmtpMailer({self.host}:{self.port}, starttls={self.starttls})"

    def send(self, to: str, subject: str, body: str) -> None:
        """Hand one message to the server; MailUnavailable when that fails."""
        message = build_message(self.sender, to, subject, body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            # Only the error's kind and SMTP code: smtplib's own texts can carry the
            # recipient's address or the server's reply to our login.
            code = getattr(error, "smtp_code", None)
            detail = type(error).__name__ + (f" {code}" if code else "")
            # "from None": the cause (with those texts) must not reach a logged traceback.
            raise MailUnavailable(
                f"The mail server {self.host}:{self.port} did not take the message ({detail})."
            ) from None


class OutboxMailer:
    """Writes each message as a ``.eml`` file (mode 0600) into ``folder``."""

    def __init__(self, folder: Path, sender: str = "Rapport <no-reply@localhost>") -> None:
        self.folder = Path(folder)
        self.sender = sender

    def send(self, to: str, subject: str, body: str) -> None:
        """Write the message atomically (a reader never sees half a file)."""
        message = build_message(self.sender, to, subject, body)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp creates the file 0600 and in the same folder, so the rename is atomic.
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(message.as_bytes())
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise MailUnavailable(
                f"The outbox folder could not be written ({type(error).__name__})."
            ) from None
        logger.debug("wrote a message to the outbox as %s", target.name)


def mailer_from_settings(settings: CrmSettings) -> Mailer:
    """SMTP when ``SMTP_HOST`` is set, else the outbox folder in the var folder."""
    if settings.smtp_host:
        return SmtpMailer(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_starttls,
            settings.mail_from,
        )
    return OutboxMailer(settings.var_dir / "outbox", settings.mail_from)
