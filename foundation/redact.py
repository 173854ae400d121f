"""Addresses fit for a log line: the city platform's webhook carries its key in the URL.

WeCom's and DingTalk's robot webhooks authenticate by a query parameter (``?key=…``,
``?access_token=…``); a URL may also hold ``user:password@``. An error that quotes the URL
(httpx's ``HTTPStatusError`` does) would write the secret into the log and the outbox.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without its user information, query and fragment (each shown as ``…`` when present)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    netloc = ("…@" if "@" in parts.netloc else "") + (f"[{host}]" if ":" in host else host) + port
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", "…" if parts.fragment else ""))
