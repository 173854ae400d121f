"""The access rule, station binding and how the audit names a caller: pure, no server
(the login throttle: tests/unit/test_login_throttle.py)."""

from __future__ import annotations

import pytest

from dashboards.accounts import Principal, Role, parse_roles, permits
from dashboards.auth import actor_of
from foundation.errors import Invalid


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


def test_a_responder_is_station_bound_unless_it_also_acts_street_wide() -> None:
    assert Principal("token", 1, "app", "", (Role.RESPONDER,), stations=("MFS-XQ",)).station_bound
    assert Principal("token", 1, "app", "", (Role.RESPONDER,)).station_bound  # bound to nothing: may act on nothing
    assert not Principal("user", 1, "duty", "", (Role.OPERATOR, Role.RESPONDER)).station_bound
    assert not Principal("user", 1, "chief", "", (Role.ADMIN,)).station_bound
    assert not Principal("token", 1, "wall", "", (Role.VIEWER,)).station_bound


def test_the_audit_names_the_credential_never_what_the_request_says() -> None:
    person = Principal("user", 1, "wangfang", "值班员 王芳", (Role.OPERATOR,))
    token = Principal("token", 7, "responder-app MFS-XQ", "", (Role.RESPONDER,))
    assert actor_of(person, "区长本人") == "值班员 王芳（wangfang）"  # a person is only ever themselves
    assert actor_of(Principal("user", 2, "lisi", "", (Role.VIEWER,))) == "lisi"
    assert actor_of(token) == "token:responder-app MFS-XQ"
    assert actor_of(token, " 队长 张伟 ") == "token:responder-app MFS-XQ"  # a token names no one else either
    assert len(actor_of(Principal("token", 8, "长" * 200, "", (Role.VIEWER,)))) == 100  # the trail's column
