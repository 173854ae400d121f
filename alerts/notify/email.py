"""E-mail over SMTP (the standard library's smtplib): STARTTLS or implicit TLS, login when given."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from alerts.notify.base import Channel, Message, ProviderRejected, ProviderUnavailable, SendResult


class SmtpEmail:
    name = "smtp"
    channel = Channel.EMAIL

    def __init__(self, host: str, port: int, sender: str, *, username: str = "", password: str = "",
                 security: str = "starttls", timeout_s: float = 10.0) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"SMTP security must be none, starttls or tls, not {security!r}")
        self._host, self._port, self._sender = host, port, sender
        self._username, self._password, self._security, self._timeout_s = username, password, security, timeout_s

    def send(self, message: Message) -> SendResult:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self._sender, message.address, message.subject
        msg["Date"] = formatdate(localtime=False)
        # Derived from the attempt: a message sent again after a crash carries the same id, and mail
        # systems that deduplicate on it show it once.
        msg["Message-ID"] = f"<{message.attempt_key}@wanli.notify>"
        msg.set_content(message.text)
        try:
            if self._security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self._host, self._port, timeout=self._timeout_s,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)
            with smtp:
                if self._security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password)
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise ProviderRejected(f"recipient refused: {exc.recipients}", channel=self.channel, provider=self.name,
                                   code="recipient_refused") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderRejected(f"login refused ({exc.smtp_code})", channel=self.channel, provider=self.name,
                                   code=str(exc.smtp_code)) from None
        except smtplib.SMTPResponseException as exc:
            error = ProviderRejected if 500 <= exc.smtp_code < 600 else ProviderUnavailable
            raise error(f"server answered {exc.smtp_code}", channel=self.channel, provider=self.name,
                        code=str(exc.smtp_code)) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}", channel=self.channel, provider=self.name) from None
        if refused:
            raise ProviderRejected(f"recipient refused: {sorted(refused)}", channel=self.channel, provider=self.name)
        return SendResult(self.name, str(msg["Message-ID"]))

    def close(self) -> None:
        pass
