"""``ThermalRunaway``'s stations find their rising ports for every column at once: the same (port, slope, latest
temperature) as asking port by port, as it did (the reference below), on arbitrary histories: ports reporting or
not in each snapshot, snapshots out of order, late, in the same millisecond, windows of any length."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from devices.kinds.charging_station import contract as cs
from devices.kinds.charging_station.rules import _PortTemperatures, temperature_slopes


def rising_port_by_port(station: _PortTemperatures, min_span_ms: int) -> list[tuple[int, float, float]]:
    """``_PortTemperatures.rising`` as it was: a port at a time."""
    slopes = temperature_slopes(station.t_ms, station.temps)
    out = []
    for port, col in station.column.items():
        if np.isnan(slopes[col]):
            continue
        have = ~np.isnan(station.temps[:, col])
        t, temps = station.t_ms[have], station.temps[have, col]
        if t.max() - t.min() >= min_span_ms:
            out.append((port, float(slopes[col]), float(temps[np.argmax(t)])))
    return out


_port = st.builds(lambda port, temp: cs.Port(port=port, state="charging", temperature_c=temp),
                  st.integers(1, 6), st.one_of(st.none(), st.floats(-60, 1200), st.sampled_from([22.0, 22.5, 80.0])))
_snapshot = st.tuples(st.one_of(st.integers(0, 900_000), st.integers(0, 15).map(lambda m: m * 60_000)),
                      st.lists(_port, max_size=6))


@hsettings(max_examples=400, deadline=None)
@given(st.lists(_snapshot, max_size=25), st.integers(1_000, 600_000),
       st.one_of(st.integers(0, 120_000), st.sampled_from([60_000, 120_000, 180_000])))
def test_every_column_at_once_is_every_port_on_its_own(snapshots, window_ms, min_span_ms):
    station = _PortTemperatures()
    for ts, ports in snapshots:
        station.add(1_800_000_000_000 + ts, ports, window_ms)
        got, want = station.rising(min_span_ms), rising_port_by_port(station, min_span_ms)
        assert got == want
        assert [type(x) for row in got for x in row] == [type(x) for row in want for x in row]


def test_a_port_climbing_is_found_with_its_slope_and_latest_temperature():
    station = _PortTemperatures()
    for minute, temp in enumerate((30.0, 34.0, 38.0, 42.0)):
        station.add(minute * 60_000, [cs.Port(port=3, state="charging", temperature_c=temp),
                                      cs.Port(port=5, state="idle")], 300_000)
    assert station.rising(60_000) == [(3, 4.0, 42.0)]
    assert station.rising(3 * 60_000) == [(3, 4.0, 42.0)]  # its samples span three minutes
    assert station.rising(3 * 60_000 + 1) == []
