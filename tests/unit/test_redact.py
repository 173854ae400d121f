"""URLs in log lines keep no secret (foundation/redact.py)."""

import pytest

from foundation.redact import redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET-1", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?…"),
    ("https://oapi.dingtalk.com/robot/send?access_token=SECRET-1#x", "https://oapi.dingtalk.com/robot/send?…#…"),
    ("http://user:SECRET-1@127.0.0.1:8080/hook", "http://…@127.0.0.1:8080/hook"),
    ("http://[::1]:9000/p", "http://[::1]:9000/p"),
    ("http://platform.example/in", "http://platform.example/in"),
    ("http://h:99999999/x?SECRET-1", "(an unreadable URL)"),
])
def test_user_information_query_and_fragment_are_left_out(url, shown):
    assert redact_url(url) == shown
    assert "SECRET" not in redact_url(url)
