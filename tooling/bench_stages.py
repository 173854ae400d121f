"""``wanli bench stages``: what one message costs at each stage of the live ingest path, in µs.

The service's own objects (``wanli.runtime.build_services``: the registry with the whole
generated street registered, the alert rules, the spool on local disk, the dead letters,
rate limits and disk guard as configured) and real servers (Mosquitto, InfluxDB 1.6.7), on
the load mix of ``wanli bench ingest``. Three measurements, each on its own messages:

1. **receive**: a backlog queued at Mosquitto for a persistent session at QoS 1, drained by the
   service's receiver process (``ingest/receiver.py``: paho, batching, the pipe), every batch
   acknowledged at once as ingest does once it is safe; the CPU the receiver process and the
   broker spent (``/proc/PID/stat``) and ingest's side (taking the frame off the pipe and
   building the batch), each per message;
2. **pipeline**: ``IngestPipeline.process`` over batches of 2,000, first untouched (the total),
   then with a timer around each stage's own function (decode, registry, hygiene, sequence,
   rules, points, spool append …), so the stages add up to about the total (the timers cost
   about 0.1 µs each; what no stage covers is printed as "the rest");
3. **store**: ``SpoolDrainer.drain_once`` moving what step 2 spooled into InfluxDB, with its
   stages timed the same way; then the device-state flush the service runs every 10 s.

Wall-clock µs per message on a shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.registry import DeviceBatch, DeviceRecord
from simulators.load import build_messages, publish, stamp
from tooling.bench import proc_ticks
from tooling.local_servers import InfluxV1Server, MosquittoServer
from tooling.street_files import street_on_disk
from foundation.service_clock import wall_ms

BATCH = 2000  # ingest's batch (the receiver's batch_size)


@dataclass
class StageFigures:
    messages: int = 0
    points: int = 0
    us: dict[str, float] = field(default_factory=dict)  # stage → µs per message
    notes: list[str] = field(default_factory=list)
    load: list[float] = field(default_factory=list)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    return proc_ticks(Path(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _timers(acc: Counter[str], calls: Counter[str], targets: list[tuple[object, str, str]]) -> Iterator[None]:
    """Wrap each ``owner.name`` with a timer adding its nanoseconds to ``acc[stage]`` (and a call to ``calls``)."""
    saved = []
    for owner, name, stage in targets:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        saved.append((owner, name, original))

        def timed(*args: Any, _f: Callable[..., Any] = original, _s: str = stage, **kwargs: Any) -> Any:
            started = time.perf_counter_ns()
            try:
                return _f(*args, **kwargs)
            finally:
                acc[_s] += time.perf_counter_ns() - started
                calls[_s] += 1

        setattr(owner, name, timed)
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


class _Calibration:
    def nothing(self) -> None:
        return None


def timer_cost_ns() -> tuple[float, float]:
    """What one timer adds, in ns: to an enclosing stage's figure (the whole wrapper), and to its own (its clock)."""
    target = _Calibration()
    acc: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    rounds = 200_000
    started = time.perf_counter_ns()
    for _ in range(rounds):
        target.nothing()
    bare = (time.perf_counter_ns() - started) / rounds
    with _timers(acc, calls, [(_Calibration, "nothing", "x")]):
        started = time.perf_counter_ns()
        for _ in range(rounds):
            target.nothing()
        wrapped = (time.perf_counter_ns() - started) / rounds
    return max(wrapped - bare, 0.0), max(acc["x"] / rounds - bare, 0.0)


def _raw_batches(records: list[DeviceRecord], count: int, seed: int, now_ms: int) -> list[list[Any]]:
    """``count`` messages of the load mix as ingest's batches (each device's sequence numbers in order)."""
    from ingest.pipeline import RawMessage

    msgs = build_messages(records, count, seed=seed, start_seq=1)
    raw = [RawMessage(t, stamp(p, now_ms - 1000), now_ms, 1, 0) for t, p in msgs]
    return [raw[i:i + BATCH] for i in range(0, len(raw), BATCH)]


def measure_receive(workdir: Path, broker: MosquittoServer, records: list[DeviceRecord], count: int,
                    implementation: str = "paho") -> StageFigures:
    """The receiver process draining a QoS 1 backlog; CPU per message of the receiver, the broker and ingest's side.
    ``implementation``: the receiver's (ReceiverConfig.implementation: paho, or bulk: ingest/bulk_receiver.py)."""
    from ingest.pipeline import RawMessage
    from ingest.receiver import BATCH as FRAME_BATCH
    from ingest.receiver import ReceiverConfig, ReceiverProcess

    fig = StageFigures(messages=count, load=[os.getloadavg()[0]])
    client_id = f"stages-{time.time_ns()}"
    receiver = ReceiverProcess(ReceiverConfig(broker.host, broker.port, ["safety/#"], client_id,
                                              implementation=implementation))
    receiver.start()
    _wait_subscribed(receiver)
    assert receiver.pid is not None
    startup_cpu = _cpu_s(receiver.pid)  # its start, imports, connect, subscribe: taken out of the figure below
    receiver.stop()  # the session exists and is subscribed: the backlog queues for it
    publish(build_messages(records, count, seed=11, start_seq=10**9), broker.host, broker.port, qos=1)
    broker_pid = broker.pid or 0
    broker_cpu = _cpu_s(broker_pid)
    receiver.start()
    pid = receiver.pid
    assert pid is not None
    got, ingest_side_s, started = 0, 0.0, time.perf_counter()
    while got < count and time.perf_counter() - started < 120:
        frame = receiver.next_frame(1.0)
        if frame is None:
            continue
        t0 = time.perf_counter()
        kind, body = frame
        if kind == FRAME_BATCH:
            batch_no, messages = body
            batch = [RawMessage(topic, payload, ms, qos, mid) for topic, payload, ms, qos, mid in messages]
            got += len(batch)
            receiver.acknowledge(batch_no)
        ingest_side_s += time.perf_counter() - t0
    seconds = time.perf_counter() - started
    time.sleep(0.3)  # the last acknowledgements reach the broker
    reads = "paho read" if implementation == "paho" else f"{implementation}: recv_into + mqtt5"
    fig.us[f"receive: receiver process ({reads}, PUBACK, batch, pipe)"] = \
        (_cpu_s(pid) - startup_cpu) * 1e6 / max(got, 1)
    fig.us["receive: broker (Mosquitto delivering, taking PUBACKs)"] = \
        (_cpu_s(broker_pid) - broker_cpu) * 1e6 / max(got, 1)
    fig.us["receive: ingest's side (frame off the pipe, RawMessage)"] = ingest_side_s * 1e6 / max(got, 1)
    fig.notes.append(f"receive: {got:,} of {count:,} messages in {seconds:.2f} s = {got / seconds:,.0f} msg/s "
                     f"(CPU per message; the receiver's start, {startup_cpu:.2f} s of CPU on an empty session, taken out)")
    receiver.stop()
    fig.load.append(os.getloadavg()[0])
    return fig


def _wait_subscribed(receiver: Any) -> None:
    from ingest.receiver import SUBSCRIBED

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        frame = receiver.next_frame(0.5)
        if frame is not None and frame[0] == SUBSCRIBED:
            return
    raise RuntimeError("the receiver did not subscribe within 30 s")


def _per_message(acc: Counter[str], calls: Counter[str], outer: dict[str, list[str]], n: int,
                 cost: tuple[float, float]) -> dict[str, float]:
    """µs per message of each stage, the timers' own cost taken out; ``outer``: stage → the stages it encloses
    (their time comes out of it, and their timers' cost)."""
    outer_ns, own_ns = cost
    ns = {k: v - calls[k] * own_ns for k, v in acc.items()}
    for stage, inner in outer.items():
        ns[stage] -= sum(calls[i] * outer_ns for i in inner)
    return {k: v / 1e3 / n for k, v in ns.items()}


def measure_pipeline(services: Any, records: list[DeviceRecord], count: int) -> tuple[StageFigures, StageFigures]:
    """``IngestPipeline.process``: its total untouched, then stage by stage; then the drain and the state flush."""
    import ingest.pipeline as pipeline_module
    import ingest.spool as spool_module
    from alerts.service import AlertBatch
    from ingest.dead_letters import DeadLetterStore
    from ingest.hygiene import ClockSkew
    from ingest.pipeline import IngestPipeline
    from ingest.rate_limit import DeviceRateLimits
    from ingest.spool import Spool

    pipeline, drainer, spool = services.pipeline, services.drainer, services.spool
    cost = timer_cost_ns()
    now = wall_ms()
    batches = _raw_batches(records, BATCH + 2 * count, 22, now)
    warm, untouched, timed = batches[:1], batches[1:1 + count // BATCH], batches[1 + count // BATCH:]
    for batch in warm:  # caches, first statements
        pipeline.process(batch)
    gc.freeze()  # as the service keeps its heap (foundation/heap.py)
    fig = StageFigures(messages=count, load=[os.getloadavg()[0]])
    started, cpu = time.perf_counter(), time.process_time()
    for batch in untouched:
        pipeline.process(batch)
    total_untouched, cpu_untouched = time.perf_counter() - started, time.process_time() - cpu

    acc: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    hygiene = "hygiene: clock skew, clock check, rate limit"
    stages = [
        (pipeline_module, "decode_message", "decode + validate (msgspec, the kind's schema)"),
        (IngestPipeline, "_check_registered", "registry lookup (registered, kind, street)"),
        (ClockSkew, "observe", hygiene),
        (ClockSkew, "observe_many", hygiene),  # the batch's clocks at once (issue 18)
        (pipeline_module, "check_clock", hygiene),
        (DeviceRateLimits, "admit", hygiene),
        (DeviceBatch, "admit", "sequence + device state (DeviceBatch.admit)"),
        (AlertBatch, "evaluate", "rules (AlertBatch.evaluate)"),
        (spool_module, "encode_readings", "points as line protocol (Reading → lines, encode_readings)"),
        (Spool, "append_row", "spool: SQLite insert + fsync"),
        (AlertBatch, "write", "commit: incidents, notices"),
        (DeadLetterStore, "add_batch", "commit: dead letters"),
        (IngestPipeline, "process", "total"),
    ]
    points_before = spool.state().points
    with _timers(acc, calls, stages):
        started = time.perf_counter()
        for batch in timed:
            pipeline.process(batch)
        total_timed = time.perf_counter() - started
    n = sum(map(len, timed))
    names = [s for _, _, s in stages]
    decode, lookup = stages[0][2], stages[1][2]  # decode_message asks for the registration (the lookup) inside it
    us = _per_message(acc, calls, {"total": [s for s in dict.fromkeys(names) if s != "total"], decode: [lookup]},
                      n, cost)
    us[decode] -= us[lookup]
    whole = us.pop("total")
    fig.us.update({k: us.get(k, 0.0) for k in dict.fromkeys(names) if k != "total"})
    fig.us["the rest of process (batch bookkeeping, counters, transactions)"] = whole - sum(us.values())
    fig.us["pipeline total (untouched run)"] = total_untouched * 1e6 / sum(map(len, untouched))
    fig.us["pipeline total, CPU of the process (untouched run)"] = cpu_untouched * 1e6 / sum(map(len, untouched))
    fig.notes.append(f"pipeline: batches of {BATCH:,}: {sum(map(len, untouched)) / total_untouched:,.0f} msg/s "
                     f"untouched, {n / total_timed:,.0f} msg/s with the timers (their cost, "
                     f"{cost[0]:.0f} ns a call, taken out of the stages: sum {whole:.1f} µs a message); "
                     f"{spool.state().points - points_before:,} points spooled by the timed run")
    fig.load.append(os.getloadavg()[0])

    store = StageFigures(load=[os.getloadavg()[0]])
    acc, calls = Counter(), Counter()
    drain_stages = [
        (Spool, "_oldest_rows", "drain: spool read (SQLite select)"),
        (Spool, "peek_lines", "drain: one body of the rows' lines"),
        (type(services.telemetry), "_post_write", "drain: InfluxDB /write (HTTP, the server's answer)"),
        (Spool, "release", "drain: spool release (SQLite delete)"),
        (type(drainer), "drain_once", "drain total"),
    ]
    pts = spool.state().points
    m = sum(map(len, batches))  # every message processed above is drained now
    with _timers(acc, calls, drain_stages):
        started, cpu = time.perf_counter(), time.process_time()
        while drainer.drain_once():
            pass
        drain_s, drain_cpu = time.perf_counter() - started, time.process_time() - cpu
    names = [s for _, _, s in drain_stages]
    us = _per_message(acc, calls, {"drain: one body of the rows' lines": ["drain: spool read (SQLite select)"],
                                   "drain total": names[:-1]}, m, cost)
    us["drain: one body of the rows' lines"] -= us["drain: spool read (SQLite select)"]
    drain_total = us.pop("drain total")
    store.us.update(us)
    store.us["drain: the rest (latency window)"] = drain_total - sum(us.values())
    store.us["drain total"] = drain_total
    store.us["drain total, CPU of the process (timers included)"] = drain_cpu * 1e6 / m
    started = time.perf_counter()
    rows = pipeline.flush_device_states()
    flush_s = time.perf_counter() - started
    store.us["device-state flush (every 10 s in the service)"] = flush_s * 1e6 / m
    store.messages, store.points = m, pts
    store.notes.append(f"drain: {pts:,} points of {m:,} messages in {drain_s:.2f} s = {pts / drain_s:,.0f} points/s "
                       f"({pts / m:.2f} points a message; its stages in µs per message)")
    per_row = flush_s * 1e6 / max(rows, 1)
    store.notes.append(f"device-state flush: {rows:,} device rows in {flush_s:.2f} s after {m:,} messages "
                       f"= {per_row:.0f} µs a row; at 25,000 msg/s a 10 s interval is 250,000 messages over at most "
                       f"every device ({rows:,} here): at least {per_row * rows / 250_000:.1f} µs a message")
    store.load.append(os.getloadavg()[0])
    return fig, store


def run_stages(workdir: Path, count: int) -> list[StageFigures]:
    from wanli.runtime import build_services
    from wanli.settings import Settings

    street_file, records = street_on_disk(workdir)
    broker = MosquittoServer(workdir / "mosquitto")
    influx = InfluxV1Server(workdir / "influxdb")
    broker.start()
    influx.start()
    services = None
    try:
        receive = measure_receive(workdir, broker, records, count)
        settings = Settings(data_dir=workdir / "data", hierarchy_file=street_file, telemetry_backend="influxdb1",
                            influx_url=influx.url, influx_database="stages", mqtt_url=broker.url,
                            simulate_building=False)
        services = build_services(settings)
        services.registry.register_many(records, "bench", wall_ms())
        services.telemetry.ensure_database()
        pipe, store = measure_pipeline(services, records, count)
        return [receive, pipe, store]
    finally:
        if services is not None:
            services.spool.close()
            services.telemetry.close()
            services.engine.dispose()
        influx.stop()
        broker.stop()


def print_stages(figures: list[StageFigures]) -> None:
    print("| stage | µs per message |")
    print("|---|---|")
    for fig in figures:
        for stage, us in fig.us.items():
            bold = "**" if "total" in stage else ""
            print(f"| {bold}{stage}{bold} | {bold}{us:,.1f}{bold} |")
    for fig in figures:
        for note in fig.notes:
            print(f"- {note}; load avg {fig.load[0]:.2f} → {fig.load[-1]:.2f}")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-stages-"))
    try:
        figures = run_stages(workdir, args.messages)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_stages(figures)
    return 0


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("stages", help="µs per message at each stage of the live ingest path")
    p.add_argument("--messages", type=int, default=30_000, help="messages per measurement")
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=main)
