"""What makes a password acceptable: long enough, not a common one, not the username.

The common passwords are zxcvbn's list (about 30,000 of the most used passwords, from real
leaks), shipped with the package, so the service needs no file of its own and no network.
A password is refused when it, lower-cased, is on the list, or is one of them with digits or
punctuation around it (``password123!``), or contains the username, or the username contains it.
"""

from __future__ import annotations

import re
from functools import cache

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


@cache
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS  # a large module: loaded on first use

    return frozenset(FREQUENCY_LISTS["passwords"])


def _core(password: str) -> str:
    """The password without the digits and punctuation people pad a common word with."""
    return re.sub(r"^[\W\d_]+|[\W\d_]+$", "", password.lower())


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` may not be used by ``username`` (Chinese, then English), or None when it may."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"密码至少 {MIN_PASSWORD_LENGTH} 个字符（the password needs at least {MIN_PASSWORD_LENGTH} characters）"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"密码不能超过 {MAX_PASSWORD_LENGTH} 个字符（the password is longer than {MAX_PASSWORD_LENGTH} characters）"
    lowered = password.lower()
    name = username.strip().lower()
    if name and (name in lowered or lowered in name):
        return "密码不能包含用户名（the password may not contain the username）"
    common = common_passwords()
    core = _core(password)
    if lowered in common or (len(core) >= 4 and core in common) or len(set(lowered)) <= 2:
        return "这是常见密码，容易被猜中，请换一个（a common password, easily guessed: choose another）"
    return None
