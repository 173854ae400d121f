"""The MQTT shell of ingest: a receiver process in (ingest/receiver.py), one batch worker thread out.

Why paho, and why its own process: measured here, a paho subscriber receives 63k msg/s at
QoS 0 and 31k at QoS 1, aiomqtt 21k / 15k; but paho's network thread and the worker in one
process fought over one GIL (docs/benchmarks.md). The receiver process parses packets and
hands over batches; at most ``queue_size`` messages wait for the worker, after which the
receiver stops reading its socket and TCP pushes back to the broker (which queues for our
persistent session) instead of memory growing. The worker acknowledges a batch, and the
receiver then each of its QoS 1 messages (``manual_ack``), only after the pipeline has
stored it, so a crash of either process before that means redelivery, not loss. A receiver
that dies is started again; one whose ingest dies sees its pipe close and stops.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait

from sqlalchemy.exc import OperationalError

from devices.reserved import ALARM_LANE_SUFFIX
from devices.topics import device_id_of_topic
from ingest.dead_letters import DeadLetter
from ingest.pipeline import IngestPipeline, RawMessage, SpoolRefused, TelemetryHeld
from ingest.receiver import BATCH, DISCONNECTED, SUBSCRIBED, ReceiverConfig, ReceiverProcess
from foundation.background import Backoff
from foundation.errors import StoreUnavailable
from foundation.leases import Fenced
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)

# Failures that pass by themselves: wait and retry the same batch rather than give up on it.
# Fenced: the ingest role was lost here (foundation/leases.py); nothing is acknowledged, and the lease keeper stops
# this consumer while it waits.
TRANSIENT = (StoreUnavailable, OperationalError, sqlite3.OperationalError, Fenced)


class ConsumerStopped(Exception):
    """The consumer is stopping with a batch in hand: leave it unacknowledged for the broker to redeliver."""


def alarm_lane_filters(topic_filters: list[str]) -> list[str]:
    """The filters of the alarm lane: the ``event`` topics under each ``…/#`` filter. Pure.

    Topics are ``safety/v1/{street}/{kind}/{device_id}/{class}``; ``safety/#`` gives
    ``safety/+/+/+/+/event``, ``safety/v1/+/smoke_detector/#`` gives
    ``safety/v1/+/smoke_detector/+/event``. A filter without ``#`` (or one already deeper than
    the device level) has no lane of its own: its messages stay in the one lane.
    """
    out: list[str] = []
    for topic_filter in topic_filters:
        levels = topic_filter.split("/")
        if levels[-1] != "#" or len(levels) - 1 > 5:
            continue
        lane = "/".join([*levels[:-1], *["+"] * (5 - (len(levels) - 1)), "event"])
        if lane not in out:
            out.append(lane)
    return out


@dataclass
class Lane:
    name: str
    receiver: ReceiverProcess
    subscribed: bool = False
    restarts: int = 0


class MqttConsumer:
    def __init__(
        self,
        pipeline: IngestPipeline,
        host: str,
        port: int,
        topic_filters: list[str],
        *,
        share_group: str = "",
        client_id: str = "wanli-ingest",
        username: str = "",
        alarm_lane_username: str | None = None,
        password: str = "",
        batch_size: int = 2000,
        batch_wait_s: float = 0.02,
        queue_size: int = 50_000,
        state_flush_s: float = 10.0,
        alarm_lane: bool = True,
        alarm_slice: int = 250,
        clock_ms: ClockMs = wall_ms,
        lease_remaining: Callable[[], float] | None = None,
        main_receiver: str = "paho",
    ) -> None:
        """``lease_remaining``: with several instances, how long the ingest role's lease still runs here
        (foundation/leases.py); the receivers stay connected only that long unless told again (ingest/receiver.py).
        ``main_receiver``: the main lane's receiver, "paho" or "bulk" (ingest/bulk_receiver.py); the alarm lane's is paho."""
        self._pipeline = pipeline
        self._lease_remaining = lease_remaining

        # A shared subscription per family: a replacement worker can join the group before the
        # old one leaves, and the broker keeps the family's messages for the group meanwhile.
        def shared(filters: list[str]) -> list[str]:
            return [f"$share/{share_group}/{f}" if share_group else f for f in filters]

        def receiver(filters: list[str], lane_client_id: str, lane_username: str,
                     leave: tuple[str, ...] = (), implementation: str = "paho") -> ReceiverProcess:
            return ReceiverProcess(ReceiverConfig(
                host, port, shared(filters), lane_client_id, lane_username, password, batch_size=batch_size,
                batch_wait_s=batch_wait_s, max_batches_in_flight=max(1, queue_size // batch_size),
                log_level=logging.getLogger().getEffectiveLevel(), leave_to_other_lane=tuple(leave),
                grant_s=self.FIRST_GRANT_S if lease_remaining is not None else 0.0, implementation=implementation,
            ))

        # The alarm lane: events (alarms, presses, faults, dispatch answers) come on a session and
        # a TCP connection of their own, so a backlog of telemetry never stands in front of an
        # alarm, and the worker serves this lane first. The main lane leaves events to it.
        events = alarm_lane_filters(topic_filters) if alarm_lane else []
        # Its own login too where given: a broker that takes the username as the client id would
        # otherwise close one lane's connection whenever the other connects (Settings.mqtt_login).
        lane_username = username if alarm_lane_username is None else alarm_lane_username
        self._lanes = [Lane("alarms", receiver(events, f"{client_id}{ALARM_LANE_SUFFIX}", lane_username))] if events else []
        self._lanes.append(Lane("main", receiver(topic_filters, client_id, username, tuple(events), main_receiver)))
        self._alarm_lane = self._lanes[0] if events else None
        self._alarm_slice = alarm_slice
        self._state_flush_s = state_flush_s
        self._clock_ms = clock_ms
        self._stop = threading.Event()
        self.subscribed = threading.Event()
        self._worker = threading.Thread(target=self._run_worker, name="ingest-worker", daemon=True)
        self._flusher = threading.Thread(target=self._run_state_flusher, name="ingest-state-flusher", daemon=True)
        self._granter = threading.Thread(target=self._run_granter, name="ingest-granter", daemon=True)

    # -- lifecycle -------------------------------------------------------------------

    FIRST_GRANT_S = 2.0  # a receiver's permission before its first G frame (the granter sends one at once)
    GRANT_EVERY_S = 0.25

    def start(self) -> None:
        for lane in self._lanes:
            lane.receiver.start()
        self._worker.start()
        self._flusher.start()
        if self._lease_remaining is not None:
            self._granter.start()

    def _run_granter(self) -> None:
        """Tell the receivers how long the ingest role is still held here, several times a second."""
        assert self._lease_remaining is not None
        while not self._stop.is_set():
            remaining = self._lease_remaining()
            if remaining > 0:
                until = time.monotonic() + remaining  # absolute: a frame read after a freeze extends nothing
                for lane in self._lanes:
                    lane.receiver.grant(until)
            self._stop.wait(self.GRANT_EVERY_S)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand, then stop the receiver. Unacknowledged messages stay with the broker."""
        self._stop.set()
        self._worker.join(timeout_s)
        self._flusher.join(timeout_s)
        self._flush_states()
        for lane in self._lanes:
            lane.receiver.stop(timeout_s)

    @property
    def backlog(self) -> int:
        """Messages received and not yet made safe (waiting in the receivers, or in the worker's hands)."""
        return sum(lane.receiver.pending for lane in self._lanes)

    @property
    def receiver_restarts(self) -> int:
        return sum(lane.restarts for lane in self._lanes)

    @property
    def receiver_pid(self) -> int | None:
        """The main lane's receiver process."""
        return self._lanes[-1].receiver.pid

    @property
    def receiver_pids(self) -> dict[str, int | None]:
        return {lane.name: lane.receiver.pid for lane in self._lanes}

    # -- worker thread --------------------------------------------------------------------

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            lane, frame = self._next_frame()
            if lane is None or frame is None:
                continue
            try:
                self._handle(lane, frame)
            except ConsumerStopped:
                return

    def _handle(self, lane: Lane, frame: tuple[bytes, object]) -> None:
        kind, body = frame
        if kind == BATCH:
            batch_no, messages = body  # type: ignore[misc]
            offset = self._clock_ms() - wall_ms()  # the receiver's wall clock, in the service's clock
            batch = [RawMessage(topic, payload, ms + offset, qos, mid) for topic, payload, ms, qos, mid in messages]
            # A backlog's batch of 2,000 takes the worker a tenth of a second or more; an alarm arriving
            # meanwhile is served between slices of it, not after it. The batch is acknowledged whole.
            step = self._alarm_slice if lane is not self._alarm_lane and self._alarm_lane is not None else len(batch)
            for start in range(0, len(batch), max(step, 1)):
                if start:
                    self._serve_alarm_lane()
                self._process_safely(batch[start:start + step], lane)
            lane.receiver.acknowledge(batch_no)
        elif kind in (SUBSCRIBED, DISCONNECTED):
            lane.subscribed = kind == SUBSCRIBED
            if all(lane.subscribed for lane in self._lanes):
                self.subscribed.set()
            else:
                self.subscribed.clear()

    def _serve_alarm_lane(self) -> None:
        """Whatever the alarm lane has ready now, handled before the main lane's batch goes on."""
        lane = self._alarm_lane
        while lane is not None and not self._stop.is_set():
            try:
                frame = lane.receiver.next_frame(timeout_s=0)
            except (EOFError, OSError):
                return  # the worker's next turn restarts it (_next_frame)
            if frame is None:
                return
            self._handle(lane, frame)

    def _next_frame(self) -> tuple[Lane | None, tuple[bytes, object] | None]:
        """The next frame, the alarm lane's first: after every batch it is asked before the main lane."""
        for lane in self._lanes:
            try:
                frame = lane.receiver.next_frame(timeout_s=0)
            except (EOFError, OSError):
                self._restart_receiver(lane)
                return None, None
            if frame is not None:
                return lane, frame
        wait([c for lane in self._lanes if (c := lane.receiver.connection) is not None], timeout=0.2)
        return None, None

    def _restart_receiver(self, lane: Lane) -> None:
        """A receiver process died (it should not): whatever it held unacknowledged, the broker redelivers."""
        lane.subscribed = False
        self.subscribed.clear()
        if self._stop.is_set():
            return
        if self._lease_remaining is not None and self._lease_remaining() <= 0:
            self._stop.wait(0.5)  # the role is not held here (now): the lease keeper stops this consumer
            return
        log.error("the MQTT receiver process of the %s lane (pid %s) died; starting a new one",
                  lane.name, lane.receiver.pid)
        lane.receiver.stop(timeout_s=1.0)
        if self._stop.wait(1.0):
            return
        lane.restarts += 1
        lane.receiver.start()

    def _run_state_flusher(self) -> None:
        """Write device health and sequence state now and then, off the worker's path (a street is 50,000 rows)."""
        while not self._stop.wait(self._state_flush_s):
            self._flush_states()

    def _flush_states(self) -> None:
        try:
            self._pipeline.flush_device_states()
        except Exception:  # kept dirty in memory; the next flush tries again
            log.exception("could not write device states; will retry")

    def _process_safely(self, batch: list[RawMessage], lane: Lane | None = None) -> None:
        """Process a batch; return only once every message in it is kept somewhere.

        A transient failure (the database is unreachable) is waited out, retrying the whole
        batch: nothing is acknowledged meanwhile, so the broker holds the rest (backpressure).
        Telemetry the spool cannot take (``TelemetryHeld``: the batch's events are committed)
        is retried the same way. While a main-lane batch waits, the alarm lane is served: an
        alarm never waits for telemetry storage. Any other failure splits the batch so that one
        poisonous message cannot block the others; a message that still fails alone is
        dead-lettered.
        """
        on_alarm_lane = lane is not None and lane is self._alarm_lane
        # Only a main lane beside an alarm lane may hold its telemetry back: alone, it carries the alarms too.
        hold = not on_alarm_lane and self._alarm_lane is not None
        backoff = Backoff(0.2, 10.0)
        while not self._stop.is_set():
            try:
                self._pipeline.process(batch, hold_telemetry=hold)
                return
            except SpoolRefused:
                continue  # nothing was committed; the pipeline now knows the spool refuses: again at once
            except TelemetryHeld as exc:
                delay = backoff.next_s()
                log.warning("ingest holding %d telemetry messages for %.1f s: %s", exc.held, delay, exc.why)
                self._wait(delay, serve_alarms=not on_alarm_lane)
            except TRANSIENT as exc:
                delay = backoff.next_s()
                log.error("ingest waiting %.1f s: %s: %s", delay, type(exc).__name__, exc)
                self._wait(delay, serve_alarms=not on_alarm_lane)
            except Exception:
                log.exception("ingest batch of %d failed; processing its messages one by one", len(batch))
                for raw in batch:
                    self._process_alone(raw, hold, serve_alarms=not on_alarm_lane)
                return
        raise ConsumerStopped  # stopping: leave the batch unacknowledged for next time

    def _wait(self, seconds: float, serve_alarms: bool) -> None:
        """Wait before a retry; a main-lane wait serves the alarm lane meanwhile."""
        until = time.monotonic() + seconds
        while not self._stop.is_set() and (left := until - time.monotonic()) > 0:
            lane = self._alarm_lane
            if not serve_alarms or lane is None or lane.receiver.connection is None:
                self._stop.wait(left)
                return
            wait([lane.receiver.connection], timeout=min(left, 0.2))
            self._serve_alarm_lane()

    def _process_alone(self, raw: RawMessage, hold: bool = False, serve_alarms: bool = False) -> None:
        """One message of a batch that failed as a whole; waits like ``_process_safely`` (serving the alarm lane)."""
        backoff = Backoff(0.2, 10.0)
        while not self._stop.is_set():
            try:
                self._pipeline.process([raw], hold_telemetry=hold)
                return
            except SpoolRefused:
                continue
            except (TelemetryHeld, *TRANSIENT):
                self._wait(backoff.next_s(), serve_alarms)
            except Exception as exc:  # noqa: BLE001 - whatever it is, the message must be kept
                letter = DeadLetter(raw.received_ms, raw.topic, device_id_of_topic(raw.topic), "internal_error",
                                    f"{type(exc).__name__}: {exc}", raw.payload, len(raw.payload))
                try:
                    self._pipeline.dead_letter(letter)
                    return
                except TRANSIENT:
                    self._wait(backoff.next_s(), serve_alarms)
        raise ConsumerStopped
