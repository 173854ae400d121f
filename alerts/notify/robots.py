"""Group robots: WeCom (企业微信群机器人), DingTalk (钉钉自定义机器人) and Feishu (飞书自定义机器人), over their webhook APIs.

WeCom: ``POST {url}?key={key}`` with ``{"msgtype": "text", "text": {"content": …,
"mentioned_mobile_list": […]}}``; content at most 2048 bytes of UTF-8; 20 messages a minute
per robot (errcode 45009 beyond); answers ``{"errcode": 0, "errmsg": "ok"}``.

DingTalk: ``POST {url}?access_token={token}&timestamp={ms}&sign={sign}`` where ``sign`` is
``urlencode(base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")))`` (the robot's
"加签" security setting; the timestamp must be within an hour of DingTalk's clock), body
``{"msgtype": "text", "text": {"content": …}, "at": {"atMobiles": […], "isAtAll": false}}``;
20 messages a minute per robot (errcode 130101 beyond); a bad signature is errcode 310000.

Feishu: ``POST {url}/{token}`` with ``{"timestamp": "{s}", "sign": …, "msg_type": "text",
"content": {"text": …}}`` where ``sign`` is ``base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}",
msg=b""))`` (the robot's "签名校验"; seconds, within an hour); 100 messages a minute and 5 a second
per robot (code 11232 beyond); a bad signature is code 19021; answers ``{"code": 0, …}``.

None takes an idempotency key. Apprise has both, but with the providers' hosts fixed in
code (no contract test could reach it) and without their error codes; these are one POST each.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping

import httpx

from alerts.notify.base import (
    Channel,
    Message,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    SendResult,
    utf8_truncate,
)
from foundation.service_clock import ClockMs, wall_ms

WECOM_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"
DINGTALK_URL = "https://oapi.dingtalk.com/robot/send"
WECOM_MAX_BYTES = 2048
WECOM_RATE_LIMITED = {45009}
DINGTALK_RATE_LIMITED = {130101}
DINGTALK_MAX_BYTES = 20000
FEISHU_URL = "https://open.feishu.cn/open-apis/bot/v2/hook"
FEISHU_RATE_LIMITED = {11232}
FEISHU_MAX_BYTES = 20000


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """The ``sign`` query value DingTalk checks (already URL-encoded, as its documentation builds it)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def feishu_sign(timestamp_s: int, secret: str) -> str:
    """The ``sign`` field Feishu checks: the key is "{timestamp}\\n{secret}", the message empty."""
    return base64.b64encode(hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def _post_json(http: httpx.Client, url: str, body: dict[str, object], provider: str, channel: Channel) -> dict:
    try:
        resp = http.post(url, json=body)
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"{type(exc).__name__}: {exc}", channel=channel, provider=provider) from None
    if resp.status_code >= 500:
        raise ProviderUnavailable(f"HTTP {resp.status_code}", channel=channel, provider=provider, code=str(resp.status_code))
    try:
        answer = resp.json()
    except ValueError:
        raise ProviderUnavailable(f"HTTP {resp.status_code}, not JSON", channel=channel, provider=provider) from None
    if not isinstance(answer, dict):
        raise ProviderUnavailable(f"HTTP {resp.status_code}, unexpected answer", channel=channel, provider=provider)
    return answer


def _check(answer: dict, rate_codes: set[int], provider: str, channel: Channel) -> None:
    code = answer.get("errcode", answer.get("code", answer.get("StatusCode")))
    if code == 0:
        return
    error = RateLimited if code in rate_codes else ProviderRejected
    raise error(str(answer.get("errmsg", answer.get("msg", ""))), channel=channel, provider=provider, code=str(code))


class WeComRobot:
    """A WeCom group robot; the contact point's address is the robot's key, the person is @-mentioned by mobile."""

    name = "wecom"
    channel = Channel.WECOM

    def __init__(self, url: str = WECOM_URL, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._http = httpx.Client(timeout=timeout_s)

    def send(self, message: Message) -> SendResult:
        text: dict[str, object] = {"content": utf8_truncate(f"{message.subject}\n{message.text}", WECOM_MAX_BYTES)}
        if message.mention_mobile:
            text["mentioned_mobile_list"] = [message.mention_mobile]
        url = f"{self._url}?{urllib.parse.urlencode({'key': message.address})}"
        _check(_post_json(self._http, url, {"msgtype": "text", "text": text}, self.name, self.channel),
               WECOM_RATE_LIMITED, self.name, self.channel)
        return SendResult(self.name, message.attempt_key, delivered=True)  # WeCom gives no message id

    def close(self) -> None:
        self._http.close()


class DingTalkRobot:
    """A DingTalk group robot with the "加签" setting; the address is its access token, secrets come from settings."""

    name = "dingtalk"
    channel = Channel.DINGTALK

    def __init__(self, secrets: Mapping[str, str], url: str = DINGTALK_URL, *, timeout_s: float = 10.0,
                 clock_ms: ClockMs = wall_ms) -> None:
        self._secrets, self._url, self._clock_ms = dict(secrets), url, clock_ms
        self._http = httpx.Client(timeout=timeout_s)

    def send(self, message: Message) -> SendResult:
        secret = self._secrets.get(message.address) or self._secrets.get("*", "")
        query = {"access_token": message.address}
        if secret:
            ts = self._clock_ms()
            query_s = f"{urllib.parse.urlencode(query)}&timestamp={ts}&sign={dingtalk_sign(ts, secret)}"
        else:  # a robot secured by keywords or IP instead
            query_s = urllib.parse.urlencode(query)
        body = {"msgtype": "text",
                "text": {"content": utf8_truncate(f"{message.subject}\n{message.text}", DINGTALK_MAX_BYTES)},
                "at": {"atMobiles": [message.mention_mobile] if message.mention_mobile else [], "isAtAll": False}}
        _check(_post_json(self._http, f"{self._url}?{query_s}", body, self.name, self.channel),
               DINGTALK_RATE_LIMITED, self.name, self.channel)
        return SendResult(self.name, message.attempt_key, delivered=True)

    def close(self) -> None:
        self._http.close()


class FeishuRobot:
    """A Feishu group robot; the address is the token at the end of its webhook, secrets come from settings."""

    name = "feishu"
    channel = Channel.FEISHU

    def __init__(self, secrets: Mapping[str, str], url: str = FEISHU_URL, *, timeout_s: float = 10.0,
                 clock_ms: ClockMs = wall_ms) -> None:
        self._secrets, self._url, self._clock_ms = dict(secrets), url.rstrip("/"), clock_ms
        self._http = httpx.Client(timeout=timeout_s)

    def send(self, message: Message) -> SendResult:
        secret = self._secrets.get(message.address) or self._secrets.get("*", "")
        text = utf8_truncate(f"{message.subject}\n{message.text}", FEISHU_MAX_BYTES)
        body: dict[str, object] = {"msg_type": "text", "content": {"text": text}}
        if secret:
            ts = self._clock_ms() // 1000
            body |= {"timestamp": str(ts), "sign": feishu_sign(ts, secret)}
        url = f"{self._url}/{urllib.parse.quote(message.address, safe='')}"
        _check(_post_json(self._http, url, body, self.name, self.channel), FEISHU_RATE_LIMITED, self.name, self.channel)
        return SendResult(self.name, message.attempt_key, delivered=True)

    def close(self) -> None:
        self._http.close()
