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

from sqlalchemy.exc import OperationalError

from ingest.dead_letters import DeadLetter
from ingest.pipeline import IngestPipeline, RawMessage
from ingest.receiver import BATCH, DISCONNECTED, SUBSCRIBED, ReceiverConfig, ReceiverProcess, wall_ms
from ingest.spool import SpoolFull
from wanli.errors import StoreUnavailable

log = logging.getLogger(__name__)

# Failures that pass by themselves: wait and retry the same batch rather than give up on it.
TRANSIENT = (SpoolFull, StoreUnavailable, OperationalError, sqlite3.OperationalError)


class ConsumerStopped(Exception):
    """The consumer is stopping with a batch in hand: leave it unacknowledged for the broker to redeliver."""


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
        password: str = "",
        batch_size: int = 2000,
        batch_wait_s: float = 0.02,
        queue_size: int = 50_000,
        state_flush_s: float = 10.0,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._pipeline = pipeline
        # A shared subscription per family: a replacement worker can join the group before the
        # old one leaves, and the broker keeps the family's messages for the group meanwhile.
        filters = [f"$share/{share_group}/{f}" if share_group else f for f in topic_filters]
        self._receiver = ReceiverProcess(ReceiverConfig(
            host, port, filters, client_id, username, password, batch_size=batch_size, batch_wait_s=batch_wait_s,
            max_batches_in_flight=max(1, queue_size // batch_size), log_level=logging.getLogger().getEffectiveLevel(),
        ))
        self._state_flush_s = state_flush_s
        self._clock_ms = clock_ms
        self._stop = threading.Event()
        self.subscribed = threading.Event()
        self.receiver_restarts = 0
        self._worker = threading.Thread(target=self._run_worker, name="ingest-worker", daemon=True)
        self._flusher = threading.Thread(target=self._run_state_flusher, name="ingest-state-flusher", daemon=True)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._receiver.start()
        self._worker.start()
        self._flusher.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand, then stop the receiver. Unacknowledged messages stay with the broker."""
        self._stop.set()
        self._worker.join(timeout_s)
        self._flusher.join(timeout_s)
        self._flush_states()
        self._receiver.stop(timeout_s)

    @property
    def backlog(self) -> int:
        """Messages received and not yet made safe (waiting in the receiver, or in the worker's hands)."""
        return self._receiver.pending

    @property
    def receiver_pid(self) -> int | None:
        return self._receiver.pid

    # -- worker thread --------------------------------------------------------------------

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._receiver.next_frame(timeout_s=0.2)
            except (EOFError, OSError):
                self._restart_receiver()
                continue
            if frame is None:
                continue
            kind, body = frame
            if kind == BATCH:
                batch_no, messages = body
                offset = self._clock_ms() - wall_ms()  # the receiver's wall clock, in the service's clock
                batch = [RawMessage(topic, payload, ms + offset, qos, mid) for topic, payload, ms, qos, mid in messages]
                try:
                    self._process_safely(batch)
                except ConsumerStopped:
                    return
                self._receiver.acknowledge(batch_no)
            elif kind == SUBSCRIBED:
                self.subscribed.set()
            elif kind == DISCONNECTED:
                self.subscribed.clear()

    def _restart_receiver(self) -> None:
        """The receiver process died (it should not): whatever it held unacknowledged, the broker redelivers."""
        self.subscribed.clear()
        if self._stop.is_set():
            return
        log.error("the MQTT receiver process (pid %s) died; starting a new one", self._receiver.pid)
        self._receiver.stop(timeout_s=1.0)
        if self._stop.wait(1.0):
            return
        self.receiver_restarts += 1
        self._receiver.start()

    def _run_state_flusher(self) -> None:
        """Write device health and sequence state now and then, off the worker's path (a street is 50,000 rows)."""
        while not self._stop.wait(self._state_flush_s):
            self._flush_states()

    def _flush_states(self) -> None:
        try:
            self._pipeline.flush_device_states()
        except Exception:  # kept dirty in memory; the next flush tries again
            log.exception("could not write device states; will retry")

    def _process_safely(self, batch: list[RawMessage]) -> None:
        """Process a batch; return only once every message in it is kept somewhere.

        A transient failure (the spool is full, the database is unreachable) is waited out,
        retrying the whole batch: nothing is acknowledged meanwhile, so the broker holds the
        rest (backpressure). Any other failure splits the batch so that one poisonous message
        cannot block the others; a message that still fails alone is dead-lettered.
        """
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._pipeline.process(batch)
                return
            except TRANSIENT as exc:
                log.error("ingest waiting %.1f s: %s: %s", delay, type(exc).__name__, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                log.exception("ingest batch of %d failed; processing its messages one by one", len(batch))
                for raw in batch:
                    self._process_alone(raw)
                return
        raise ConsumerStopped  # stopping: leave the batch unacknowledged for next time

    def _process_alone(self, raw: RawMessage) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._pipeline.process([raw])
                return
            except TRANSIENT:
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # noqa: BLE001 - whatever it is, the message must be kept
                letter = DeadLetter(raw.received_ms, raw.topic, "", "internal_error", f"{type(exc).__name__}: {exc}",
                                    raw.payload, len(raw.payload))
                try:
                    self._pipeline.dead_letter(letter)
                    return
                except TRANSIENT:
                    self._stop.wait(delay)
                    delay = min(delay * 2, 10.0)
        raise ConsumerStopped
