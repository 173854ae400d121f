"""One interface for every channel that reaches a person: ``Provider.send(message) -> SendResult``.

Errors (all under ``foundation.errors.WanliError``)::

    NotifyError                  a notice could not go out on a channel; carries the channel and provider code
    ├── ProviderRejected         the provider refused it for good (bad number, bad signature, unknown robot):
    │                            retrying cannot help, the next contact point is tried at once
    └── ProviderUnavailable      the provider did not answer or answered "later" (network, 5xx):
        └── RateLimited          the provider's own rate limit (WeCom 45009, DingTalk 130101, Feishu 11232, Aliyun
                                 isv.BUSINESS_LIMIT_CONTROL): retried after a pause, then the next contact point

A message names the attempt it carries (``attempt_key``): providers that take an idempotency
key or an out-id get it, so a receipt or a callback names the attempt it answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from foundation.errors import WanliError


class Channel(StrEnum):
    """How a person is reached. A channel is served by one or more providers (``sms``: Aliyun, then Gammu)."""

    VOICE = "voice"
    SMS = "sms"
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    EMAIL = "email"


class ContactKind(StrEnum):
    """What a person's contact point is: a mobile (SMS and voice), a landline (voice only), a robot, an address."""

    MOBILE = "mobile"
    PHONE = "phone"
    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    EMAIL = "email"


# Which contact kinds a channel can use, in order of preference.
CHANNEL_CONTACTS: dict[Channel, tuple[ContactKind, ...]] = {
    Channel.VOICE: (ContactKind.MOBILE, ContactKind.PHONE),
    Channel.SMS: (ContactKind.MOBILE,),
    Channel.WECOM: (ContactKind.WECOM,),
    Channel.DINGTALK: (ContactKind.DINGTALK,),
    Channel.FEISHU: (ContactKind.FEISHU,),
    Channel.EMAIL: (ContactKind.EMAIL,),
}


class NotifyError(WanliError):
    def __init__(self, detail: str, *, channel: str = "", provider: str = "", code: str = "") -> None:
        super().__init__(detail)
        self.detail, self.channel, self.provider, self.code = detail, channel, provider, code

    def __str__(self) -> str:
        code = f" [{self.code}]" if self.code else ""
        return f"{self.provider or self.channel}{code}: {self.detail}"


class ProviderRejected(NotifyError):
    """Refused for good: retrying the same contact point cannot help."""


class ProviderUnavailable(NotifyError):
    """Not answered, or answered "later": worth retrying after a pause."""


class RateLimited(ProviderUnavailable):
    """The provider's own rate limit."""


@dataclass(frozen=True, slots=True)
class Message:
    """What one provider call carries: one person, one address, one or more incidents (storm grouping)."""

    attempt_key: str  # the first attempt's idempotency key: out-id, Message-ID, outbox file name
    channel: Channel
    address: str  # a mobile number, a robot's key or access token, an e-mail address
    person: str
    subject: str  # one line: 【万里安全】紧急 独居老人一键呼叫
    text: str  # the body, with the answer link when there is one
    mention_mobile: str = ""  # robots: @ this mobile in the group
    tts_params: dict[str, str] = field(default_factory=dict)  # voice: the template's variables


@dataclass(frozen=True, slots=True)
class SendResult:
    provider: str
    message_id: str  # the provider's id for it (BizId, CallId, Message-ID, outbox file name)
    delivered: bool = False  # the provider says it reached the person (a robot's group), not only accepted it


class Provider(Protocol):
    """One external system that carries messages on one channel."""

    name: str
    channel: Channel

    def send(self, message: Message) -> SendResult:
        """Send now; raise ProviderRejected or ProviderUnavailable, never anything else on purpose."""
        ...

    def close(self) -> None:
        ...


def mask(address: str) -> str:
    """An address fit for logs and for viewers: 136****0001, wecom …a1b2, z***@example.com."""
    if "@" in address:
        user, _, host = address.partition("@")
        return f"{user[:1]}***@{host}"
    if address.isdigit() and len(address) >= 7:
        return f"{address[:3]}****{address[-4:]}"
    return f"…{address[-4:]}" if len(address) > 4 else "…"


def utf8_truncate(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never in the middle of a character."""
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode(errors="ignore") + "…"
