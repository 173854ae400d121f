"""The access rule, the login throttle and how the audit names a caller: pure, no server."""

from __future__ import annotations

import pytest

from dashboards.accounts import LoginThrottle, Principal, Role, parse_roles, permits
from dashboards.auth import actor_of
from wanli.errors import Invalid


@pytest.mark.parametrize(("held", "needed", "allowed"), [
    ({Role.VIEWER}, Role.VIEWER, True),
    ({Role.TESTER}, Role.VIEWER, True),  # every account reads
    ({Role.VIEWER}, Role.OPERATOR, False),
    ({Role.OPERATOR}, Role.MAINTAINER, False),
    ({Role.OPERATOR, Role.MAINTAINER}, Role.MAINTAINER, True),
    ({Role.RESPONDER}, Role.OPERATOR, False),
    ({Role.ADMIN}, Role.TESTER, True),  # admin may do everything
    (set(), Role.VIEWER, False),  # no role, no access at all
])
def test_a_role_permits_what_it_names_admin_everything_and_any_role_reads(held, needed, allowed) -> None:
    assert permits(held, needed) is allowed


def test_roles_are_parsed_in_a_stable_order_and_an_unknown_one_is_refused() -> None:
    assert parse_roles(["viewer", "operator", "operator"]) == (Role.OPERATOR, Role.VIEWER)
    with pytest.raises(Invalid, match="unknown role 'overlord'"):
        parse_roles(["overlord"])
    with pytest.raises(Invalid, match="at least one role"):
        parse_roles([])


def test_the_throttle_refuses_after_five_failures_until_the_window_passes() -> None:
    throttle = LoginThrottle(max_failures=5, window_ms=300_000)
    for t in range(5):
        assert throttle.blocked_for_s("WangFang", t * 1000) == 0
        throttle.failed("WangFang", t * 1000)
    assert throttle.blocked_for_s("wangfang", 10_000) == pytest.approx(290.0)  # names compare without case
    assert throttle.blocked_for_s("lisi", 10_000) == 0  # per username
    assert throttle.blocked_for_s("wangfang", 300_000) == 0  # the first failure has left the window
    throttle.failed("wangfang", 300_000)
    assert throttle.blocked_for_s("wangfang", 300_001) > 0
    throttle.succeeded("wangfang")
    assert throttle.blocked_for_s("wangfang", 300_001) == 0


def test_the_audit_names_the_account_and_a_token_may_say_for_whom() -> None:
    person = Principal("user", 1, "wangfang", "值班员 王芳", (Role.OPERATOR,))
    token = Principal("token", 7, "responder-app MFS-XQ", "", (Role.RESPONDER,))
    assert actor_of(person, "区长本人") == "值班员 王芳（wangfang）"  # a person is only ever themselves
    assert actor_of(Principal("user", 2, "lisi", "", (Role.VIEWER,))) == "lisi"
    assert actor_of(token) == "token:responder-app MFS-XQ"
    assert actor_of(token, " 队长 张伟 ") == "token:responder-app MFS-XQ（队长 张伟）"
    assert len(actor_of(token, "长" * 200)) == 100  # the trail's column
