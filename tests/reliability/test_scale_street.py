"""The street at a faster cadence against a ``wanli run`` of its own, short version (the long one: ``wanli bench street``).

Real Mosquitto and InfluxDB 1.x; tooling/bench_street.py plays the population, stamps each
message with the wall time it is sent at, and counts every message per kind at the
publisher, in ingest and in InfluxDB, while sampling the service's memory (its process and
its receiver) every second.
"""

import pytest

from tooling.bench_street import MemoryFigures, print_street, run_street

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb, pytest.mark.slow]


def test_street_at_sixty_times_its_cadence_loses_nothing_and_memory_stays_bounded(tmp_path, mosquitto, influxdb_v1):
    r = run_street(tmp_path, mosquitto, influxdb_v1, speed=60, minutes=0.5, buildings=60, alarm_every_s=3,
                   warmup_s=10)
    print_street(r)
    assert r.devices > 5000 and r.total_published > r.announce + 1000  # the steady phase carried real traffic
    assert r.acknowledged == r.total_published
    for kind, published in r.published.items():  # every message of every kind received, and stored once
        # (two messages of one device and type in one millisecond are one point in InfluxDB: counted apart, rare)
        assert (kind, r.readings[kind], r.stored[kind]) == (kind, published, published - r.collisions[kind])
    assert sum(r.collisions.values()) <= 5
    assert r.received == r.total_published and r.duplicates == 0 and not r.rejected
    assert len(r.alarm_latency_ms) == r.alarms_sent >= 8  # each alarm opened its own incident
    assert r.memory.samples >= 15
    assert r.memory.growth_mb < 40, r.memory  # bounded: the street's state is in place after the 'online' burst
    assert r.memory.peak_mb < 1000, r.memory


def test_memory_figures_take_the_slope_after_warm_up():
    samples = [(0.0, 100.0), (5.0, 180.0)] + [(10.0 + t, 200.0 + 0.5 * t) for t in range(61)]
    m = MemoryFigures.of(samples, warmup_s=10)
    assert (m.start_mb, m.end_mb, m.peak_mb, m.samples) == (200.0, 230.0, 230.0, 61)
    assert m.slope_mb_per_min == pytest.approx(30.0)  # 0.5 MB/s, the warm-up's jump left out
    assert m.late_slope_mb_per_min == pytest.approx(30.0)
