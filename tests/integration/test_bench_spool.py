"""The spool replay bench's own pieces against a real InfluxDB 1.x: an outage, a full spool, every point back."""

import pytest

from tooling.bench_spool import run_spool
from tooling.bench_workers import order_figures

pytestmark = pytest.mark.influxdb


def test_spool_filled_during_an_outage_drains_every_point_into_influxdb(tmp_path, influxdb_v1):
    r = run_spool(tmp_path, influxdb_v1, points=5000, batch_points=1000)
    assert influxdb_v1.running
    assert r.first_attempt_failed  # InfluxDB really was away while the spool filled
    assert r.points >= 5000 and r.stored == r.expected_stored == r.points  # every point carries seq, all back
    assert r.rate > 0 and r.spool_bytes > 0


def test_order_figures_tell_split_devices_reordering_and_loss_apart():
    sent = {"a": [1, 2, 3, 4], "b": [1, 2]}
    whole = order_figures([{"a": [1, 2, 3, 4]}, {"b": [1, 2]}], sent)
    assert (whole.split, whole.out_of_order_within_a_worker, whole.stored_once) == (0, 0, True)
    split = order_figures([{"a": [1, 3], "b": [2]}, {"a": [2, 4], "b": [1]}], sent)
    assert (split.split, split.out_of_order_within_a_worker, split.stored_once) == (2, 0, True)
    bad = order_figures([{"a": [2, 1, 3]}, {"a": [3], "b": [1]}], sent)
    assert (bad.out_of_order_within_a_worker, bad.stored_once, bad.missing, bad.extra) == (1, False, 2, 1)
