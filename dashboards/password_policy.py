"""What makes a password acceptable: long enough, not a common one, not the username.

The common passwords are zxcvbn's list (about 30,000 of the most used passwords, from real
leaks), shipped with the package, so the service needs no file of its own and no network.
A password is refused when it, lower-cased, is on the list, or is one of them with digits or
punctuation around it (``password123!``), or contains the username, or the username contains it,
or zxcvbn's estimator finds it easily guessed (score below 2: under about 10^8 guesses, such as
``123456789012``, ``qwertyuiopasdf``, ``abcdefghijkl``, a common word with a year).
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
    if lowered in common or (len(core) >= 4 and core in common) or len(set(lowered)) <= 2 or _guessable(password, name):
        return "这是常见或容易猜中的密码，请换一个（a common password, or one easily guessed: choose another）"
    return None


def _guessable(password: str, username: str) -> bool:
    from zxcvbn import zxcvbn  # the estimator: keyboard walks, sequences, dates, words with substitutions

    # zxcvbn refuses more than 72 characters; a password that long is judged on its first 72
    return bool(zxcvbn(password[:72], user_inputs=[username] if username else [])["score"] < 2)
