"""The dispatcher: sends the outbox's pending notices, over MQTT to each responder's topic and to
the city platform's webhook, and marks them sent; what fails stays pending and is retried.

A responder's app (or a micro fire station's duty terminal) subscribes to its own topic,
``dispatch/v1/{street}/{tier}/{place}/{role}`` (``…/fire_station/{station}/duty`` for a
station), and acknowledges through the API or, for a station, with its ``dispatch_ack``
message on its own device topic.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import httpx

from alerts.outbox import CHANNEL_MQTT, CHANNEL_WEBHOOK, Claim, Outbox, OutboxRow
from foundation.background import Backoff, WakeableLoop
from foundation.mqtt import Client, MQTTMessage, Publisher
from foundation.redact import redact_url
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)


def with_notice_id(payload: str, notice_id: int) -> str:
    """The notice's JSON object with ``"notice_id"`` (its outbox row) last: every copy of one notice carries the
    same id, so a receiver drops one it has seen, and the dispatcher's witness knows which row it saw."""
    body = payload.rstrip()
    if not body.endswith("}") or '"notice_id"' in body:
        return payload
    return f'{body[:-1]},"notice_id":{notice_id}}}' if body != "{}" else f'{{"notice_id":{notice_id}}}'


def notice_id_of(payload: bytes) -> int | None:
    try:
        value = json.loads(payload).get("notice_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


# Notices (outbox ids) seen on the broker: mark them sent; return those that could not be decided now (locked)
Witnessed = Callable[[list[int]], "set[int] | None"]


class NoticePublisher(Publisher):
    """The dispatcher's connection (``foundation.mqtt.Publisher``): notices at QoS 1, a batch at a time, all of
    it in flight at once and confirmed together (``publish_notices``: the broker's acknowledgement of each
    awaited). What the broker had not acknowledged when a connection ended is not sent again by paho
    (``resend=False``): its notice is still pending in the outbox, and the dispatcher sends it again itself.

    **The witness** (with several instances, ``witness_filter`` set: one topic filter, or several comma-separated,
    the first holding the marker): the connection also reads the notices back,
    on a persistent session shared by every instance's dispatcher (the same client id, held by the dispatch
    role's holder only), and each notice seen is marked sent (``on_witnessed``) before it is acknowledged to the
    broker. A dispatcher killed after the broker took a notice but before its own commit leaves that notice
    unacknowledged in the session; the next holder's witness reads it first thing (before it sends anything:
    a marker published after subscribing comes back after the backlog) and marks it sent, so it is not sent
    twice.
    """

    def __init__(self, host: str, port: int, *, client_id: str, username: str = "", password: str = "",
                 timeout_s: float = 5.0, witness_filter: str = "", on_witnessed: Witnessed | None = None) -> None:
        self._witness = bool(witness_filter and on_witnessed)
        super().__init__(host, port, client_id=client_id, username=username, password=password, qos=1,
                         clean_session=not self._witness, manual_ack=self._witness, backoff=Backoff(0.5, 10.0),
                         resend=False)
        self._client.max_inflight_messages_set(self.WINDOW)  # paho's default, 20, would halve a batch's pace
        self._timeout_s = timeout_s
        self._witness_filter = witness_filter
        self._on_witnessed = on_witnessed
        first = witness_filter.split(",")[0]
        self._marker_topic = first.rstrip("#").rstrip("/") + "/_witness" if witness_filter else ""
        self._marker = ""
        self._seen: queue.Queue[tuple[int | None, int] | str] = queue.Queue()
        self._witness_thread: threading.Thread | None = None
        self._witnessing = False
        self._undecided: frozenset[int] = frozenset()  # notices the witness holds, not yet marked (rows locked)
        self.witnessed = 0  # notices read back and decided (sent; by this dispatcher or one that died before its commit)
        # With several instances the dispatchers log in alike (one account, and the broker may take the username
        # as the client id): only the dispatch role's holder may be connected. A connection dropped while the
        # role is not held here is not taken up again (``may_reconnect``: a dispatcher that froze would take the
        # session back from the next holder, and they would close each other's connections for ever): the next
        # publish, made only by a holder, connects anew.
        self.gate: Callable[[], bool] = lambda: True

    WINDOW = 1000  # notices in flight at once, unacknowledged (the broker's own bound, max_inflight_messages, is higher)

    def may_reconnect(self) -> bool:
        return self.gate()

    def undecided(self) -> frozenset[int]:
        """Notices the witness saw on the broker but could not mark yet (their rows locked: a dispatcher between
        its publish and its commit, or a dead one's whose session the database has not cut yet). The dispatcher
        claims none of them: the witness marks each once its lock falls, and a round that took one first would
        send it again."""
        return self._undecided

    def on_connected(self, client: Client) -> None:
        if not self._witness:
            super().on_connected(client)
            return
        # read the session's backlog first; ready once the marker, published after it, has come back through
        # the witness thread (everything before it marked)
        self._marker = uuid.uuid4().hex
        client.subscribe([(f, 1) for f in self._witness_filter.split(",")])
        client.publish(self._marker_topic, self._marker.encode(), qos=1)

    def _on_message(self, client: Client, _u: object, msg: MQTTMessage) -> None:
        if msg.topic == self._marker_topic:
            client.ack(msg.mid, msg.qos)
            if msg.payload.decode(errors="replace") == self._marker:
                self._seen.put(self._marker)
            return
        self._seen.put((notice_id_of(msg.payload), msg.mid))  # the DB is not touched on paho's thread

    def _run_witness(self) -> None:
        """Mark what was seen sent, then acknowledge it to the broker. A notice that cannot be decided now (its
        row locked) waits here, unacknowledged, and is asked again; one that failed (the database away) is not
        acknowledged either: the session keeps it for the next connection."""
        waiting: dict[int, list[int]] = {}  # notice id → broker message ids, not yet decided
        came_back = ""  # the last marker that came back: this connection's once it is the current one
        while self._witnessing:
            try:
                items = [self._seen.get(timeout=0.1)]
            except queue.Empty:
                items = []
            while items and len(items) < 500:
                try:
                    items.append(self._seen.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                if isinstance(item, str):
                    came_back = item
                    continue
                notice, mid = item
                if notice is None:
                    self._client.ack(mid, 1)  # not a notice of ours (no id): nothing to mark
                else:
                    waiting.setdefault(notice, []).append(mid)
            if waiting and self._on_witnessed is not None:
                try:
                    undecided = self._on_witnessed(list(waiting)) or set()
                except Exception:  # the database is away: unacknowledged, asked again
                    log.exception("dispatch witness could not mark %d notices; asked again", len(waiting))
                    self._stop_wait(0.5)
                    continue
                for notice in [n for n in waiting if n not in undecided]:
                    self.witnessed += 1
                    for mid in waiting.pop(notice):
                        self._client.ack(mid, 1)
            self._undecided = frozenset(waiting)
            # ready once this connection's marker came back (a reconnection publishes a new one: its backlog is
            # read again first), and only while connected
            if came_back and came_back == self._marker and self.connected:
                self._ready.set()

    def _stop_wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._witnessing and time.monotonic() < deadline:
            time.sleep(0.05)

    def connect(self, timeout_s: float | None = None, *, fail_fast: bool = False) -> bool:  # type: ignore[override]
        """Connected, and (with the witness) the session's backlog read and marked; ConnectionError if not in
        ``timeout_s``. True if it had to connect (the witness may have marked notices meanwhile). A
        dispatcher's round asks this before it locks any notice: the witness's marks must not wait for a lock
        of the round itself."""
        if not self.gate():  # asked again here: a send that froze half-way wakes up after the role left
            raise ConnectionError("the dispatch role is not held by this instance now")
        if not self.running:
            self._stop_witness()  # a loop that ended (the role left meanwhile): its witness goes with it
            if self._witness:
                self._client.on_message = self._on_message
                self._seen = queue.Queue()
                self._witnessing = True
                self._witness_thread = threading.Thread(target=self._run_witness, name="dispatch-witness",
                                                        daemon=True)
                self._witness_thread.start()
        return super().connect(self._timeout_s if timeout_s is None else timeout_s)

    def publish_notice(self, topic: str, payload: str) -> None:
        """One notice; ConnectionError if the broker did not acknowledge it."""
        self.connect()
        self.publish_confirmed(topic, payload.encode(), self._timeout_s)

    def publish_notices(self, notices: Sequence[tuple[str, str]]) -> list[str]:
        """Send (topic, payload) each, all in flight at once, and wait for the broker's acknowledgements (the
        connection's ``timeout_s`` in all); for each, ``""`` when acknowledged, else why not. ConnectionError
        when there is no connection to send on (nothing was sent)."""
        self.connect()
        return self.publish_all_confirmed([(t, p.encode()) for t, p in notices], self._timeout_s)

    def _stop_witness(self) -> None:
        self._witnessing = False
        if self._witness_thread is not None:
            self._witness_thread.join(5)
            self._witness_thread = None
        self._undecided = frozenset()

    def close(self) -> None:
        """Disconnect (a publish after it connects again)."""
        super().close()
        self._stop_witness()


class Dispatcher(WakeableLoop):
    BATCH = 100  # MQTT notices claimed, sent and marked together
    ROUND = 1000  # at most this many a round; a full round is followed by the next at once
    WEBHOOK_TRIES = 3  # webhook notices failed in a row that end a round's webhook sends (one bad notice blocks none)

    def __init__(self, outbox: Outbox, publisher: NoticePublisher, webhook_url: str = "",
                 clock_ms: ClockMs = wall_ms, batch: int = BATCH) -> None:
        super().__init__("dispatcher")
        if batch < 1:
            raise ValueError(f"a batch is at least 1 notice, got {batch}")
        self._batch = batch
        self._outbox = outbox
        self._publisher = publisher
        self._webhook_url = webhook_url
        self._http = httpx.Client(timeout=10) if webhook_url else None
        self._clock_ms = clock_ms
        self.sent = 0
        self.failures = 0
        # Told after each round which incidents' notices went (the live feed: the wall shows who was told).
        self.on_sent: Callable[[set[str]], None] = lambda _incident_ids: None

    @property
    def publisher(self) -> NoticePublisher:
        return self._publisher

    def disconnect(self) -> None:
        """Leave the broker (the dispatch role went elsewhere); the next round that sends connects again."""
        self._publisher.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        self._publisher.close()
        if self._http is not None:
            self._http.close()

    def send_pending(self) -> int:
        """One round: send what is pending (at most ``ROUND`` notices), mark what went; return how many went.

        MQTT notices go a batch at a time (``Outbox.claim``: up to ``batch`` rows locked in one transaction),
        all in flight at once, confirmed by the broker together and marked in one commit; what the broker did
        not acknowledge stays pending with its error. The webhook's go one at a time: a POST may wait 10 s,
        and one notice's lock, not a batch's, is held that long."""
        went: dict[int, str] = {}  # notice → its incident, for those that went this round
        tried: set[int] = set()  # notices that failed this round: not asked for again in it
        if self._outbox.has_pending(CHANNEL_MQTT):
            broker_down: ConnectionError | None = None
            try:  # the witness first: what it saw sent is marked before any notice is locked here
                self._publisher.connect()
            except ConnectionError as exc:  # the MQTT notices fail this round, each recorded; the webhook's go on
                broker_down = exc
            while len(went) < self.ROUND and self.gate():  # the role lost meanwhile: the next holder sends the rest
                skip = tried | self._publisher.undecided()
                with self._outbox.claim(CHANNEL_MQTT, self._batch, skip) as claim:
                    if not claim.rows:
                        break
                    if broker_down is not None:
                        errors = [f"ConnectionError: {broker_down}"] * len(claim.rows)
                    else:
                        try:
                            errors = [f"ConnectionError: {e}" if e else "" for e in self._publisher.publish_notices(
                                [(r.topic, with_notice_id(r.payload, r.id)) for r in claim.rows])]
                        except ConnectionError as exc:  # no connection to send on: none of the batch was sent
                            errors = [f"ConnectionError: {exc}"] * len(claim.rows)
                    confirmed = self._settle(claim, errors, tried)
                went.update(confirmed)  # once committed
                if len(confirmed) < len(claim.rows) or len(claim.rows) < self._batch:
                    break  # the broker is in trouble, or nothing more is pending
        if self._http is not None:
            in_a_row = 0  # failures in a row: the webhook is away, and each try may wait 10 s; the next round tries again
            by_mqtt = len(went)  # the webhook has its own ROUND: a storm's MQTT notices never starve it
            while len(went) - by_mqtt < self.ROUND and in_a_row < self.WEBHOOK_TRIES and self.gate():
                with self._outbox.claim(CHANNEL_WEBHOOK, 1, tried) as claim:
                    if not claim.rows:
                        break
                    row = claim.rows[0]
                    try:
                        self._post(with_notice_id(row.payload, row.id))
                        errors = [""]
                    except Exception as exc:  # noqa: BLE001 - every failure is retried; say which
                        errors = [f"{type(exc).__name__}: {exc}"]
                    confirmed = self._settle(claim, errors, tried)
                went.update(confirmed)
                in_a_row = 0 if confirmed else in_a_row + 1
        self.sent += len(went)
        if went:
            try:
                self.on_sent(set(went.values()))
            except Exception:  # a screen's news never stops a notice
                log.exception("could not tell the live feed which notices went")
        return len(went)

    def _settle(self, claim: Claim, errors: Sequence[str], tried: set[int]) -> dict[int, str]:
        """Mark the claimed notices sent (``""``) or failed (their error), in the claim's transaction; return
        those sent (notice → incident)."""
        sent = {row.id: row.incident_id for row, error in zip(claim.rows, errors, strict=True) if not error}
        claim.sent(list(sent), self._clock_ms())
        failed: dict[str, list[OutboxRow]] = {}
        for row, error in zip(claim.rows, errors, strict=True):
            if error:
                failed.setdefault(error, []).append(row)
        for error, rows in failed.items():
            self.failures += len(rows)
            tried.update(r.id for r in rows)
            log.warning("%d notices via %s not sent (%s for incident=%s%s): %s", len(rows), rows[0].channel,
                        rows[0].id, rows[0].incident_id, f" and {len(rows) - 1} more" if len(rows) > 1 else "",
                        error)
            claim.failed([r.id for r in rows], error)
        return sent

    def _post(self, payload: str) -> None:
        """POST one notice. A failure names the webhook by ``redact_url`` only: its URL may carry its key."""
        assert self._http is not None
        where = redact_url(self._webhook_url)
        try:
            resp = self._http.post(self._webhook_url, content=payload.encode(), headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            raise ConnectionError(f"webhook {where}: {type(exc).__name__}: "
                                  f"{str(exc).replace(self._webhook_url, where)}") from None
        if resp.is_error:
            raise ConnectionError(f"webhook {where} answered {resp.status_code} {resp.reason_phrase}")

    def _run(self) -> None:
        backoff = Backoff(2.0, 30.0)
        while not self._stop.is_set():
            if self._held_back():
                continue
            try:
                failures = self.failures
                sent = self.send_pending()
                # Back off only while sends fail (the broker or the webhook away). A notice skipped because another
                # dispatcher holds it (one that froze mid-send) is asked for again in a second.
                if self.failures > failures:
                    delay = backoff.next_s()
                else:
                    delay = 0.0 if sent >= self.ROUND else 1.0  # a full round: more may be pending
                    backoff.reset()
            except Exception:  # the database is away: try again later; nothing is marked sent
                log.exception("dispatcher round failed")
                delay = backoff.next_s()
            self._pause(delay)
