"""Playing a population live: a building, a community or the whole street publishing at its real cadence.

``play_population`` starts every device (``online``, then periodic messages spread over
one interval, as real ones drift apart) and publishes what falls due, from one connection
with a bounded window of QoS 1 messages in flight, until ``stop`` is set or ``duration_s``
of simulated time has passed. It reports what it is doing in a ``Progress`` the CLI and
the tester page read.

Micro fire stations among the devices answer the dispatches addressed to them (see
``simulators.scenario``), so a simulated building behaves like a real one during a drill.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from devices.drill import refuse_real
from simulators.clock import SimClock
from simulators.population import Population
from simulators.publisher import BrokerAddress, MqttPublisher
from simulators.scenario import DispatchListener, Progress
from foundation.service_clock import ClockMs


class ExternalClock(SimClock):
    """The clock of a service this process does not control: read through a function, no jumps. ``speed``: how
    fast that clock runs (a tester's accelerated service, ``WANLI_CLOCK_SPEED``), for waits and progress."""

    def __init__(self, now_ms: ClockMs, speed: float = 1.0) -> None:
        super().__init__(now_ms(), 1.0, shared=False)
        self._read = now_ms
        self._speed = speed

    def now_ms(self) -> int:
        return self._read()


class OffsetClock(ExternalClock):
    """A remote service's clock followed locally: its time and speed read once (``GET /api/clock``), then
    extrapolated (polling the API for every timestamp would flood it)."""

    def __init__(self, service_now_ms: int, speed: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        base_mono = monotonic()
        super().__init__(lambda: service_now_ms + int((monotonic() - base_mono) * 1000 * speed), speed)


def play_population(population: Population, broker: BrokerAddress, clock: SimClock, *, stop: threading.Event,
                    progress: Progress | None = None, duration_s: float | None = None, announce: bool = True,
                    username: str = "", password: str = "", inflight: int = 2000, drill: bool = False) -> Progress:
    """Play ``population`` at its real cadence until ``stop`` (or ``duration_s``). ``drill``: its devices are drill
    twins (simulators/drill.py) and its stations read their dispatches on ``drill/v1``."""
    progress = progress or Progress()
    progress.devices = len(population)
    if drill:
        refuse_real(population.devices)  # a drill publishes only as drill devices
    pub = MqttPublisher(broker, client_id=f"wanli-sim-{time.time_ns() % 10**12}", username=username,
                        password=password, inflight=inflight)
    listener = (DispatchListener(broker, population.records[0].street_id, drill=drill)
                if population.stations() else None)
    try:
        start = clock.now_ms()
        progress.say(f"{len(population):,} 台设备上线" if announce else f"{len(population):,} 台设备开始上报")
        for topic, payload in population.start(start, announce=announce):
            pub.publish(topic, payload)
        progress.say(f"{len(population):,} 台设备按真实周期上报")
        end = start + int(duration_s * 1000) if duration_s is not None else None
        while not stop.is_set():
            now = clock.now_ms()
            if end is not None and now >= end:
                break
            if listener is not None:
                _answer_dispatches(population, listener, now, progress)
            for topic, payload in population.tick(now):
                pub.publish(topic, payload)
            progress.sent, progress.acked, progress.sim_ms = pub.sent, pub.acked, now
            if end is not None:
                progress.fraction = min(1.0, (now - start) / max(1, end - start))
                progress.left_s = clock.real_seconds(max(0, end - now))
            gap = clock.real_seconds(max(0, population.next_due_ms() - clock.now_ms()))
            stop.wait(min(0.2, max(0.005, gap)))
        pub.flush(10)
        progress.sent, progress.acked = pub.sent, pub.acked
        progress.say("已停止")
        return progress
    finally:
        progress.done = True
        if listener is not None:
            listener.close()
        pub.close()


def _answer_dispatches(population: Population, listener: DispatchListener, now_ms: int, progress: Progress) -> None:
    while True:
        try:
            station_id, body = listener.notices.get_nowait()
        except queue.Empty:
            return
        station = population.devices.get(station_id)
        if station is not None and hasattr(station, "on_dispatch") and station.on_dispatch(body, now_ms):
            progress.say(f"{station_id} 响应派单")
            population.touch(station)
