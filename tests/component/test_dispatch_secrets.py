"""The webhook's key (in its URL) never reaches a log line or the outbox, whatever the webhook answers.

A real HTTP server on loopback answers 500; a closed port refuses the connection. The
dispatcher's MQTT side points at a closed port too (only the webhook is looked at here).
"""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from alerts.dispatch import Dispatcher, NoticePublisher
from alerts.escalation import Notice
from alerts.outbox import CHANNEL_WEBHOOK, Outbox, notifications_table
from tests.fixtures.servers import free_port
from tests.fixtures.service import wait_for
from foundation.db import create_schema, make_engine

SECRET = "SECRET-3f9a1c"
NOW = 1_795_000_000_000


class Refusing(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def refusing_webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/robot/send"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("answer", ["500", "refused"])
def test_a_failing_webhook_is_logged_and_kept_without_its_key(tmp_path, refusing_webhook, caplog, answer):
    base = refusing_webhook if answer == "500" else f"http://127.0.0.1:{free_port()}/robot/send"
    url = f"{base}?access_token={SECRET}"
    engine = make_engine(f"sqlite:///{tmp_path / 'o.db'}")
    create_schema(engine)
    outbox = Outbox(engine, webhook=True)
    with engine.begin() as conn:
        outbox.add([Notice("inc_1", 1, "building", "xq-01", "duty", "王", "", "dispatch/v1/x", '{"a":1}')], NOW, conn)
    dispatcher = Dispatcher(outbox, NoticePublisher("127.0.0.1", free_port(), client_id="t", timeout_s=0.2), url)
    def errors():
        with engine.connect() as conn:
            return dict(conn.execute(select(notifications_table.c.channel, notifications_table.c.last_error)
                                     .where(notifications_table.c.attempts > 0)).all())

    caplog.set_level(logging.INFO)
    dispatcher.start()
    try:
        errors = wait_for(lambda: len(e := errors()) == 2 and e, timeout_s=10)
    finally:
        dispatcher.stop()
        engine.dispose()
    expected = "answered 500" if answer == "500" else "ConnectError"
    assert expected in errors[CHANNEL_WEBHOOK] and "/robot/send?…" in errors[CHANNEL_WEBHOOK]
    assert SECRET not in errors[CHANNEL_WEBHOOK]
    # httpx's own request lines quote the URL: `wanli` keeps that logger at WARNING (wanli/cli.py main).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")
    assert "/robot/send?…" in logged and SECRET not in logged
