"""Aliyun SMS (短信服务, ``SendSms``) and voice notification (语音服务, ``IvrCall``: Mandarin TTS, keypress).

Both are Aliyun RPC APIs, signed as its documentation says (签名机制, signature version 1.0):
the request's parameters, common ones included, sorted by name, each name and value
percent-encoded (RFC 3986: space ``%20``, ``*`` ``%2A``, ``~`` kept), joined ``k=v&…``; the
string to sign is ``{METHOD}&%2F&{percent-encoded canonical query}``; the signature is
``base64(HMAC-SHA1(key=AccessKeySecret + "&", string to sign))`` sent as ``Signature``.

Answers are JSON ``{"Code": "OK", "BizId"|"CallId": …, "RequestId": …}``; any other code is an
error: ``isv.BUSINESS_LIMIT_CONTROL`` and ``Throttling.*`` are rate limits, ``isp.*`` and
``InternalError`` are Aliyun's own trouble, the rest (a bad number, signature, template,
balance) are refusals. ``OutId`` carries the attempt's key, and receipts (``SmsReport``,
``VoiceReport``) name it back: that is how a delivery receipt or a keypress finds its attempt.

Why not Aliyun's SDK (alibabacloud-dysmsapi20170525): it brings the Tea/Darabonba runtime for two
signed POSTs, and the signature is a documented 15-line function checked against Aliyun's own
example in tests/unit/test_notify_providers.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx

from alerts.notify.base import Channel, Message, ProviderRejected, ProviderUnavailable, RateLimited, SendResult
from foundation.service_clock import ClockMs, wall_ms

SMS_URL = "https://dysmsapi.aliyuncs.com/"
VOICE_URL = "https://dyvmsapi.aliyuncs.com/"
API_VERSION = "2017-05-25"  # both SendSms and IvrCall
TEMPLATE_VALUE_MAX = 35  # characters per template variable (Aliyun's limit for variables of type "other")
CONFIRM_KEY = "1"  # 按1确认


def percent_encode(value: str) -> str:
    return urllib.parse.quote(value, safe="~")


def rpc_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """The ``Signature`` of an Aliyun RPC request (signature version 1.0, HMAC-SHA1), not yet URL-encoded."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def _rate_limited(code: str) -> bool:
    return code == "isv.BUSINESS_LIMIT_CONTROL" or code.startswith("Throttling")


def _transient(code: str) -> bool:
    return code.startswith("isp.") or code in ("InternalError", "ServiceUnavailable")


class AliyunRpc:
    """Signs and posts RPC calls to one Aliyun endpoint."""

    def __init__(self, url: str, access_key_id: str, access_key_secret: str, *, region: str = "cn-hangzhou",
                 timeout_s: float = 10.0, clock_ms: ClockMs = wall_ms) -> None:
        self._url, self._key_id, self._secret, self._region = url, access_key_id, access_key_secret, region
        self._clock_ms = clock_ms
        self._http = httpx.Client(timeout=timeout_s)

    def call(self, action: str, params: Mapping[str, str], provider: str, channel: Channel) -> dict:
        stamp = datetime.fromtimestamp(self._clock_ms() / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        signed = {"AccessKeyId": self._key_id, "Action": action, "Format": "JSON", "RegionId": self._region,
                  "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
                  "Timestamp": stamp, "Version": API_VERSION, **params}
        signed["Signature"] = rpc_signature("POST", signed, self._secret)
        try:
            resp = self._http.post(self._url, content=urllib.parse.urlencode(signed, quote_via=urllib.parse.quote),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"{type(exc).__name__}: {exc}", channel=channel, provider=provider) from None
        try:
            answer = resp.json()
        except ValueError:
            raise ProviderUnavailable(f"HTTP {resp.status_code}, not JSON", channel=channel, provider=provider,
                                      code=str(resp.status_code)) from None
        code = str(answer.get("Code", "")) if isinstance(answer, dict) else ""
        if code == "OK":
            return answer
        detail = str(answer.get("Message", "")) if isinstance(answer, dict) else ""
        if _rate_limited(code):
            raise RateLimited(detail, channel=channel, provider=provider, code=code)
        if _transient(code) or resp.status_code >= 500:
            raise ProviderUnavailable(detail, channel=channel, provider=provider, code=code or str(resp.status_code))
        raise ProviderRejected(detail, channel=channel, provider=provider, code=code or str(resp.status_code))

    def close(self) -> None:
        self._http.close()


def _template_params(values: Mapping[str, str]) -> str:
    return json.dumps({k: v[:TEMPLATE_VALUE_MAX] for k, v in values.items()}, ensure_ascii=False, separators=(",", ":"))


class AliyunSms:
    """``SendSms`` with an approved signature and template; the template's variables come from the message."""

    name = "aliyun_sms"
    channel = Channel.SMS

    def __init__(self, rpc: AliyunRpc, sign_name: str, template_code: str) -> None:
        self._rpc, self._sign_name, self._template = rpc, sign_name, template_code

    def send(self, message: Message) -> SendResult:
        answer = self._rpc.call("SendSms", {
            "PhoneNumbers": message.address, "SignName": self._sign_name, "TemplateCode": self._template,
            "TemplateParam": _template_params(message.tts_params), "OutId": message.attempt_key,
        }, self.name, self.channel)
        return SendResult(self.name, str(answer.get("BizId", "")))

    def close(self) -> None:
        self._rpc.close()


class AliyunVoice:
    """``IvrCall``: the incident read out by a TTS template; key 1 confirms (the keypress comes back in VoiceReport)."""

    name = "aliyun_voice"
    channel = Channel.VOICE

    def __init__(self, rpc: AliyunRpc, show_number: str, tts_code: str, confirm_tts_code: str, *,
                 play_times: int = 2, timeout_ms: int = 10_000) -> None:
        self._rpc, self._show_number, self._tts_code, self._confirm = rpc, show_number, tts_code, confirm_tts_code
        self._play_times, self._timeout_ms = play_times, timeout_ms

    def send(self, message: Message) -> SendResult:
        answer = self._rpc.call("IvrCall", {
            "CalledNumber": message.address, "CalledShowNumber": self._show_number,
            "StartCode": self._tts_code, "StartTtsParams": _template_params(message.tts_params),
            "MenuKeyMap.1.Key": CONFIRM_KEY, "MenuKeyMap.1.Code": self._confirm,
            "PlayTimes": str(self._play_times), "Timeout": str(self._timeout_ms), "OutId": message.attempt_key,
        }, self.name, self.channel)
        return SendResult(self.name, str(answer.get("CallId", "")))

    def close(self) -> None:
        self._rpc.close()
