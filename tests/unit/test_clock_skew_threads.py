"""The server-clock watch (ingest/hygiene.py ``ClockSkew``) is written by ingest and read by the health probe's thread."""

from __future__ import annotations

import sys
import threading
import time

from ingest.hygiene import ClockSkew


def test_the_health_probe_reads_the_median_while_ingest_observes_devices() -> None:
    """Without the table's lock the probe's read failed with "OrderedDict mutated during iteration" (seen under
    load in wanli bench alerts: that round's clock check was lost). Threads switch every microsecond here, so
    an unguarded read meets a write within the second."""
    skew = ClockSkew(devices=200, min_devices=1)
    stop = threading.Event()

    def ingest() -> None:
        n = 0
        while not stop.is_set():
            skew.observe(f"SD-{n % 400}", 1_000_000 + n % 1000, 1_000_000, live=True)
            n += 1

    writer = threading.Thread(target=ingest)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    writer.start()
    medians: list[int | None] = []
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            medians.append(skew.median_ms)
    finally:
        stop.set()
        writer.join()
        sys.setswitchinterval(switch)
    assert medians and all(m is not None and 0 <= m < 1000 for m in medians)
