"""The tester page is reachable from every page of the screen shell: each page's navigation lists the same pages."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "dashboards" / "static"
PAGES = {"index.html": "/ops/", "history.html": "/ops/history.html", "map.html": "/ops/map.html", "devices.html": "/ops/devices.html",
         "profile.html": None, "tester.html": "/ops/tester.html"}


class _Nav(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, bool]] = []  # (href, is the current page)
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "nav" and "shell-nav" in (a.get("class") or ""):
            self._inside = True
        elif tag == "a" and self._inside:
            self.links.append((a.get("href") or "", a.get("aria-current") == "page"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._inside = False


def nav(page: str) -> list[tuple[str, bool]]:
    parser = _Nav()
    parser.feed((STATIC / page).read_text("utf-8"))
    return parser.links


def test_every_page_links_the_same_pages_the_tester_page_among_them_and_marks_itself():
    expected = ["/ops/", "/ops/history.html", "/ops/map.html", "/ops/devices.html", "/ops/tester.html"]
    for page, own in PAGES.items():
        links = nav(page)
        assert [href for href, _ in links] == expected, page
        assert [href for href, current in links if current] == ([own] if own else []), page
