"""The password policy: long enough, not a common password (zxcvbn's list), not the username."""

from __future__ import annotations

import pytest

from dashboards.password_policy import MIN_PASSWORD_LENGTH, common_passwords, password_problem


@pytest.mark.parametrize("password", ["12345678", "password", "wanli-dev", "a" * (MIN_PASSWORD_LENGTH - 1)])
def test_short_passwords_are_refused(password: str) -> None:
    assert "at least 12 characters" in (password_problem(password, "wangfang") or "")


@pytest.mark.parametrize("password", ["password1234", "123456789012", "Password123!", "qwertyuiopasdf",
                                      "iloveyou1234", "!!!password!!!", "aaaaaaaaaaaa", "abababababab",
                                      "abcdefghijkl"])
def test_common_passwords_and_padded_ones_are_refused(password: str) -> None:
    assert "common password" in (password_problem(password, "wangfang") or "")


@pytest.mark.parametrize(("username", "password"), [("wangfang", "wangfang2026!"), ("wangfang", "WANGFANG-wanli"),
                                                    ("zhangwei-duty-officer", "duty-officer")])
def test_the_username_in_the_password_or_the_password_in_the_username_is_refused(username: str, password: str) -> None:
    problem = password_problem(password, username) or ""
    assert "username" in problem or "at least" in problem


@pytest.mark.parametrize("password", ["correct horse battery", "万里街道值班室2026春", "tq8-Vx2m-Lp4r", "s3cret-enough-42"])
def test_long_uncommon_passwords_are_accepted(password: str) -> None:
    assert password_problem(password, "wangfang") is None


def test_the_list_is_the_packages_and_large() -> None:
    common = common_passwords()
    assert len(common) > 10_000 and "password" in common and "123456" in common


def test_an_overlong_password_is_refused() -> None:
    assert "longer than 1024" in (password_problem("x7" * 600, "wangfang") or "")
