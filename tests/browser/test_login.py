"""The login page in real Chromium: a page asked for without a session goes to login and comes back
after it; a wrong password is refused in words; the header names who is signed in; 退出 signs out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import DESK, WatchedPage, watched_page
from tests.fixtures.service import accounts, add_person
from wanli.runtime import WanliService

pytestmark = pytest.mark.browser

REFUSED_401 = r"status of 401"  # the browser logs a refused sign-in as a console error: that is the point


@pytest.fixture
def visitor(chromium: Browser, service: WanliService, artifacts: Path) -> Iterator[WatchedPage]:
    """A browser with no session at all."""
    with watched_page(chromium, WatchedPage, service.http_url, artifacts, DESK) as page:
        yield page


def test_a_page_without_a_session_goes_to_login_and_back_after_signing_in(visitor: WatchedPage,
                                                                           service: WanliService) -> None:
    store = accounts(service)
    store.add_user("wangfang", "correct horse battery", ["operator"], 0, display_name="值班员 王芳")
    page = visitor.page
    page.goto(f"{visitor.base_url}/ops/devices.html#list")
    expect(page).to_have_url(re.compile(r"/ops/login\.html\?next=/ops/devices\.html"))
    expect(page.locator("#login h2")).to_have_text("登录")
    expect(page.locator("#username")).to_be_focused()

    visitor.tolerate(REFUSED_401)
    page.locator("#username").fill("wangfang")
    page.locator("#password").fill("wrong password")
    page.locator("#login-submit").click()
    expect(page.locator("#login-error")).to_have_text("账号或密码不正确")
    expect(page).to_have_url(re.compile(r"/ops/login\.html"))
    visitor.screenshot("login-refused.png")
    assert len(visitor.take_problems()) <= 1  # at most the refused request itself

    page.locator("#password").fill("correct horse battery")
    page.locator("#password").press("Enter")
    expect(page).to_have_url(re.compile(r"/ops/devices\.html#list$"))
    expect(page.locator("#whoami .name")).to_have_text("值班员 王芳")
    expect(page.locator("#whoami")).to_have_attribute("title", "wangfang · 值班员")
    cookie = next(c for c in page.context.cookies() if c["name"] == "wanli_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read the session

    page.locator("#logout").click()
    expect(page).to_have_url(re.compile(r"/ops/login\.html\?next="))
    page.goto(f"{visitor.base_url}/ops/")
    expect(page).to_have_url(re.compile(r"/ops/login\.html\?next=/ops/$"))  # the session is gone on the server too


def test_the_login_page_as_it_looks(visitor: WatchedPage, service: WanliService) -> None:
    visitor.page.goto(f"{visitor.base_url}/ops/")
    expect(visitor.page.locator("#login-submit")).to_be_visible()
    visitor.screenshot("login.png")


def test_a_session_that_ends_while_the_page_is_open_sends_it_to_login(visitor: WatchedPage,
                                                                      service: WanliService) -> None:
    username, password = add_person(service, "maintainer")
    page = visitor.page
    page.goto(f"{visitor.base_url}/ops/login.html")
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("#login-submit").click()
    expect(page).to_have_url(re.compile(r"/ops/$"))
    expect(page.locator("#link")).to_have_class("link up")

    # An admin disables the account: its sessions end; the page's next request is refused and it goes to login.
    accounts(service).update_user(username, 0, disabled=True)
    visitor.tolerate(REFUSED_401)
    page.evaluate("fetch('/api/kpi')")
    expect(page).to_have_url(re.compile(r"/ops/login\.html\?next=%2Fops%2F|/ops/login\.html\?next=/ops/"))
