"""Which topics the alarm lane takes (ingest/mqtt_consumer.py alarm_lane_filters). Pure."""

import socket

import pytest

from ingest.mqtt_consumer import MqttConsumer, alarm_lane_filters
from ingest.pipeline import TelemetryHeld
from ingest.receiver import BATCH
from foundation.mqtt import matches


@pytest.mark.parametrize(("filters", "lane"), [
    (["safety/#"], ["safety/+/+/+/+/event"]),
    (["safety/v1/+/smoke_detector/#"], ["safety/v1/+/smoke_detector/+/event"]),
    (["safety/v1/wanli/#", "safety/v1/other/#"], ["safety/v1/wanli/+/+/event", "safety/v1/other/+/+/event"]),
    (["safety/v1/wanli/smoke_detector/SD-1/#"], ["safety/v1/wanli/smoke_detector/SD-1/event"]),
    (["safety/v1/wanli/smoke_detector/+/telemetry"], []),  # no '#': nothing to split
    (["safety/#", "safety/#"], ["safety/+/+/+/+/event"]),
])
def test_the_alarm_lane_takes_the_event_topics_under_each_family(filters, lane):
    assert alarm_lane_filters(filters) == lane


def test_every_event_topic_of_the_contract_goes_to_the_lane_and_nothing_else_does():
    lane = alarm_lane_filters(["safety/#"])
    assert all(matches(lane[0], t) for t in (
        "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event", "safety/v1/wanli/elderly_alarm/EA-1/event"))
    assert not any(matches(lane[0], t) for t in (
        "safety/v1/wanli/smoke_detector/SD-XQ01-0101/telemetry", "safety/v1/wanli/smoke_detector/SD-1/status",
        "safety/v1/wanli/event", "safety/v1/wanli/smoke_detector/SD-1/event/extra"))


class RecordingPipeline:
    """Stands in for the ingest pipeline (not a server): records what the worker hands it, in order."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def process(self, batch, *, hold_telemetry=True):
        self.calls.append([m.topic for m in batch])


class QueuedReceiver:
    """Stands in for a receiver process's pipe: frames handed out in turn, acknowledgements noted."""

    def __init__(self, frames, log, name, ready=lambda: True) -> None:
        self.frames, self.log, self.name, self.ready = list(frames), log, name, ready

    def next_frame(self, timeout_s):
        return self.frames.pop(0) if self.frames and self.ready() else None

    def acknowledge(self, batch_no):
        self.log.append(f"ack {self.name} {batch_no}")


def messages(topic, n):
    return [(topic, b"{}", 0, 1, i) for i in range(n)]


def test_an_alarm_arriving_during_a_large_telemetry_batch_is_served_between_its_slices():
    pipeline, log = RecordingPipeline(), []
    consumer = MqttConsumer(pipeline, "127.0.0.1", 1883, ["safety/#"], batch_size=2000, alarm_slice=250)
    alarms, main = consumer._lanes
    alarm_topic = "safety/v1/wanli/smoke_detector/SD-1/event"
    # The alarm reaches its lane's receiver once the worker is into the telemetry batch.
    alarms.receiver = QueuedReceiver([(BATCH, (7, messages(alarm_topic, 1)))], log, "alarms",
                                     ready=lambda: len(pipeline.calls) >= 1)
    main.receiver = QueuedReceiver([], log, "main")
    consumer._handle(main, (BATCH, (3, messages("safety/v1/wanli/smoke_detector/SD-2/telemetry", 1000))))

    sizes = [len(c) if alarm_topic not in c else "alarm" for c in pipeline.calls]
    assert sizes == [250, "alarm", 250, 250, 250]
    assert log == ["ack alarms 7", "ack main 3"]  # the telemetry batch is acknowledged whole, after all its slices


def test_without_an_alarm_lane_a_batch_is_processed_whole():
    pipeline, log = RecordingPipeline(), []
    consumer = MqttConsumer(pipeline, "127.0.0.1", 1883, ["safety/#"], alarm_lane=False, alarm_slice=250)
    (main,) = consumer._lanes
    main.receiver = QueuedReceiver([], log, "main")
    consumer._handle(main, (BATCH, (1, messages("safety/v1/wanli/smoke_detector/SD-2/telemetry", 1000))))
    assert [len(c) for c in pipeline.calls] == [1000] and log == ["ack main 1"]


class HeldUntilAlarmPipeline:
    """Stands in for the pipeline: a batch of several fails as a whole (a poisonous message); alone, the telemetry
    message is held (the spool refuses) until an alarm has gone through."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.alarm_seen = False
        self.give_up = lambda: None  # called when held too often: the alarm lane was never served

    def process(self, batch, *, hold_telemetry=True):
        topics = [m.topic for m in batch]
        if len(batch) > 1:
            self.calls.append("whole batch")
            raise RuntimeError("one message in it is poisonous")
        (topic,) = topics
        if topic.endswith("/event"):
            self.alarm_seen = True
        elif not self.alarm_seen:
            self.calls.append("held " + topic.rsplit("/", 2)[1])
            if self.calls.count(self.calls[-1]) > 2:
                self.give_up()
            raise TelemetryHeld(1, "the spool is at its bound")
        self.calls.append(topic.rsplit("/", 2)[1])


def test_a_message_retried_alone_while_its_telemetry_is_held_still_lets_the_alarm_lane_through():
    pipeline, log = HeldUntilAlarmPipeline(), []
    consumer = MqttConsumer(pipeline, "127.0.0.1", 1883, ["safety/#"])
    pipeline.give_up = consumer._stop.set  # fail fast (ConsumerStopped) rather than wait for ever
    alarms, main = consumer._lanes
    ready, other_end = socket.socketpair()  # the alarm lane's pipe has something to read
    other_end.send(b"x")
    try:
        alarms.receiver = QueuedReceiver([(BATCH, (9, messages("safety/v1/wanli/smoke_detector/SD-9/event", 1)))],
                                         log, "alarms")
        alarms.receiver.connection = ready
        main.receiver = QueuedReceiver([], log, "main")
        batch = messages("safety/v1/wanli/smoke_detector/SD-2/telemetry", 1) + messages(
            "safety/v1/wanli/smoke_detector/SD-3/status", 1)
        consumer._handle(main, (BATCH, (4, batch)))
    finally:
        ready.close()
        other_end.close()
    assert pipeline.calls == ["whole batch", "held SD-2", "SD-9", "SD-2", "SD-3"]
    assert log == ["ack alarms 9", "ack main 4"]
