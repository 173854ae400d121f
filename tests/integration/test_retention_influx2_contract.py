"""Contract test of the InfluxDB 2.x retention (Debian ships no InfluxDB 2.x, so it cannot run here).

A local HTTP server answers the endpoints of InfluxDB's v2 API that ``InfluxV2Retention`` uses, as its
API reference specifies them (``/api/v2/orgs``, ``/api/v2/buckets``, ``/api/v2/tasks``), keeps what is
created, and records every request; the test checks the requests and that a second ``ensure`` changes
nothing and a changed period patches the bucket.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.retention import TASK_NAME, InfluxV2Retention, RetentionPolicy

TOKEN = "contract-test-token"


class FakeInflux2:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict]] = []
        self.buckets: dict[str, dict] = {}
        self.tasks: dict[str, dict] = {}
        self.org = {"id": "0a1b2c3d4e5f6a7b", "name": "wanli"}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    return self._reply(401, {"code": "unauthorized", "message": "unauthorized access"})
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                outer.requests.append((method, url.path, body))
                status, answer = outer.answer(method, url.path, query, body)
                self._reply(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        if (method, path) == ("GET", "/api/v2/orgs"):
            return 200, {"orgs": [self.org] if query.get("org") in (None, "wanli") else []}
        if (method, path) == ("GET", "/api/v2/buckets"):
            return 200, {"buckets": [b for b in self.buckets.values() if b["name"] == query.get("name")]}
        if (method, path) == ("POST", "/api/v2/buckets"):
            assert body["orgID"] == self.org["id"] and body["name"] not in {b["name"] for b in self.buckets.values()}
            bucket = {**body, "id": uuid.uuid4().hex[:16], "type": "user"}
            self.buckets[bucket["id"]] = bucket
            return 201, bucket
        if method == "PATCH" and path.startswith("/api/v2/buckets/"):
            bucket = self.buckets[path.rsplit("/", 1)[1]]
            bucket.update({k: v for k, v in body.items() if k in ("name", "description", "retentionRules")})
            return 200, bucket
        if (method, path) == ("GET", "/api/v2/tasks"):
            return 200, {"tasks": [t for t in self.tasks.values() if t["name"] == query.get("name")]}
        if (method, path) == ("POST", "/api/v2/tasks"):
            assert body["orgID"] == self.org["id"] and body["status"] == "active"
            task = {**body, "id": uuid.uuid4().hex[:16], "name": TASK_NAME, "every": "1h"}
            self.tasks[task["id"]] = task
            return 201, task
        if method == "PATCH" and path.startswith("/api/v2/tasks/"):
            task = self.tasks[path.rsplit("/", 1)[1]]
            task.update(body)
            return 200, task
        return 404, {"code": "not found", "message": f"{method} {path}"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def influx2():
    fake = FakeInflux2()
    yield fake
    fake.close()


def test_bucket_retention_an_hourly_bucket_and_the_downsampling_task(influx2):
    retention = InfluxV2Retention(influx2.url, "wanli", "wanli", TOKEN, RetentionPolicy.from_days(30, 730))
    try:
        influx2.buckets["pre"] = {"id": "pre", "name": "wanli", "orgID": influx2.org["id"], "retentionRules": []}
        done = retention.ensure()
        assert done == ["set retention of wanli", "create bucket wanli_hourly", f"create task {TASK_NAME}"]
        by_name = {b["name"]: b for b in influx2.buckets.values()}
        assert [r["everySeconds"] for r in by_name["wanli"]["retentionRules"]] == [30 * 86_400]
        assert [r["everySeconds"] for r in by_name["wanli_hourly"]["retentionRules"]] == [730 * 86_400]
        (task,) = influx2.tasks.values()
        assert 'from(bucket: "wanli")' in task["flux"] and 'to(bucket: "wanli_hourly", org: "wanli")' in task["flux"]
        assert f'name: "{TASK_NAME}", every: 1h' in task["flux"]

        before = len(influx2.requests)
        assert retention.ensure() == []  # kept: only reads the second time
        assert {m for m, _p, _b in influx2.requests[before:]} == {"GET"}

        shorter = InfluxV2Retention(influx2.url, "wanli", "wanli", TOKEN, RetentionPolicy.from_days(7, 730))
        assert shorter.ensure() == ["set retention of wanli"]
        shorter.close()
        assert [r["everySeconds"] for r in by_name["wanli"]["retentionRules"]] == [7 * 86_400]
    finally:
        retention.close()
