"""``wanli simulate building|community|street|load`` and ``wanli scenario list|run``, with live progress.

    wanli simulate building xq-01                   香泉 1号楼's devices at their real cadence, until Ctrl-C
    wanli simulate community xiangquan --duration 600
    wanli simulate street --buildings 477           the generated street (50,615 devices with all 637 buildings)
    wanli simulate load --count 200000 --rate 5000  the load generator: a realistic mix, bounded QoS 1 window
    wanli scenario list
    wanli scenario run kitchen_false_alarm          on its own service and simulated clock (embedded broker)
    wanli scenario run real_fire_spreading --mqtt-url mqtt://127.0.0.1:1883      … on that broker
    wanli scenario run elderly_press --api http://127.0.0.1:8000 --mqtt-url …    against a running service

``simulate`` publishes to the broker of a running service (``--mqtt-url``, default the
embedded broker's address) and first registers its devices through that service's API
(``--api``; ``--no-register`` if they already are). Against a running service every run is a
drill (devices/drill.py): its devices are the drill twins ``DRILL-…`` of the place's devices,
registered through ``/api/drills`` and archived when it ends; it never publishes as a real device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from devices.registry import DeviceRecord
from simulators.clock import SimClock, shanghai
from simulators.drill import drill_rows
from simulators.player import ExternalClock
from simulators.scenario import Progress
from foundation.errors import WanliError
from foundation.service_clock import wall_ms


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    simulate = sub.choices.get("simulate") or sub.add_parser("simulate", help="publish simulated device messages")
    sim_sub = next((a for a in simulate._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sim_sub is None:
        sim_sub = simulate.add_subparsers(dest="what", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mqtt-url", help="broker (default: the embedded broker's address, mqtt://127.0.0.1:1883)")
        api_options(p)
        p.add_argument("--no-register", action="store_true", help="the devices are registered already")
        p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
        p.add_argument("--no-announce", action="store_true", help="no burst of 'online' messages at the start")
        p.add_argument("--seed", type=int, default=0)
        p.set_defaults(func=_cmd_simulate)

    b = sim_sub.add_parser("building", help="one building's devices at their real cadence")
    b.add_argument("building", help="building id, e.g. xq-01")
    common(b)
    c = sim_sub.add_parser("community", help="one community's devices at their real cadence")
    c.add_argument("community", help="community id, e.g. xiangquan")
    common(c)
    s = sim_sub.add_parser("street", help="the whole generated street (477 high-rises): 50,615 devices")
    s.add_argument("--buildings", type=int, help="only the first N buildings (default: all 637)")
    s.add_argument("--hierarchy", help="the street's hierarchy JSON (default: `wanli street generate`'s street)")
    common(s)

    load = sim_sub.add_parser("load", help="the load generator: pre-built messages published as fast as possible")
    load.add_argument("--count", type=int, default=100_000)
    load.add_argument("--rate", type=float, default=0.0, help="messages per second (default: as fast as possible)")
    load.add_argument("--inflight", type=int, default=2000, help="QoS 1 messages in flight at most")
    load.add_argument("--mix", choices=["street", "bench"], default="street")
    load.add_argument("--mqtt-url", help="broker (default mqtt://127.0.0.1:1883)")
    load.set_defaults(func=_cmd_load)

    scenario = sub.add_parser("scenario", help="the scenario library: list, run one and check its expected outcomes")
    sc_sub = scenario.add_subparsers(dest="what", required=True)
    sc_sub.add_parser("list", help="every scenario with what it expects").set_defaults(func=_cmd_scenario_list)
    run = sc_sub.add_parser("run", help="play a scenario and judge its expected outcomes")
    run.add_argument("name")
    run.add_argument("--mqtt-url", help="broker (default: an embedded one of the scenario's own service)")
    api_options(run, default_api=None, what="a running service to play against, as a drill (DRILL-… devices), "
                                           "instead of the scenario's own service")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=_cmd_scenario_run)


def api_options(p: argparse.ArgumentParser, default_api: str | None = "http://127.0.0.1:8000",
                what: str = "the running service, to register the drill's devices") -> None:
    """--api, --token (default: WANLI_TOKEN) and --login, the same on every command that speaks to the service."""
    p.add_argument("--api", default=default_api,
                   help=f"{what} (default {default_api or 'none'}; `wanli run` prints its address)")
    p.add_argument("--token", default=os.environ.get("WANLI_TOKEN", ""),
                   help="API token with the tester role, sent as Authorization: Bearer (default: the WANLI_TOKEN "
                        "environment variable; without one, sign in with --login)")
    p.add_argument("--login", default="dev:wanli-dev", help="user:password to sign in with when there is no token "
                                                             "(default: development mode's account, docs/access.md)")


def _broker(url: str | None) -> Any:
    from simulators.publisher import BrokerAddress
    from wanli.settings import Settings

    host, port = Settings(mqtt_url=url or "").mqtt_host_port
    return BrokerAddress(host, port)


class _LiveLine(threading.Thread):
    """One status line, rewritten every second: messages sent, rate, simulated time, what is happening."""

    def __init__(self, progress: Progress, out: Any = None) -> None:
        super().__init__(name="progress", daemon=True)
        self.out = out if out is not None else sys.stderr
        self.progress, self.stop = progress, threading.Event()
        self._said = 0
        # Rewriting a line takes terminal escape codes: into a file or a pipe only the story's lines go.
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.draw()
        self.draw()
        if self.tty:
            self.out.write("\n")

    def draw(self) -> None:
        p = self.progress
        clear = "\r\x1b[K" if self.tty else ""
        for line in p.log[self._said:]:
            self.out.write(f"{clear}  · {line}\n")
        self._said = len(p.log)
        if self.tty:
            sim = f"{shanghai(p.sim_ms):%m-%d %H:%M:%S}" if p.sim_ms else "-"
            known = p.fraction is not None and p.left_s is not None
            left = f" · {p.fraction:.0%}, {p.left_s:,.0f} s left" if known else ""
            self.out.write(f"{clear}{p.sent:,} sent ({p.acked:,} acked) · {p.rate:,.0f} msg/s · "
                           f"{p.devices:,} devices · simulated {sim}{left} · {p.phase}")
        self.out.flush()


def _cmd_simulate(args: argparse.Namespace) -> int:
    from devices.hierarchy import hierarchy_from_dict, load_hierarchy
    from devices.street_generator import generate_street
    from simulators.player import play_population
    from simulators.population import Population, place_rows

    if args.what == "street":
        raw = json.loads(Path(args.hierarchy).read_text("utf-8")) if args.hierarchy else generate_street()
        hierarchy = hierarchy_from_dict(raw)
        buildings = [b for c in hierarchy.communities.values() for b in c.building_ids]
        rows = place_rows(hierarchy, building_ids=buildings[: args.buildings]) if args.buildings else \
            place_rows(hierarchy, whole_street=True)
    else:
        hierarchy = load_hierarchy()
        try:
            rows = place_rows(hierarchy, building_ids=[args.building] if args.what == "building" else [],
                              community_ids=[args.community] if args.what == "community" else [])
        except WanliError as exc:
            print(f"wanli: {exc}", file=sys.stderr)
            return 2
    # A drill on the live street: the place's drill twins, never its real devices (devices/drill.py).
    population = Population.from_rows(drill_rows(rows), hierarchy.street_id, seed=args.seed,
                                      start_seq=wall_ms())
    api = None
    if not args.no_register:
        import httpx

        try:
            api = _api(args)
            api.register_drill(population.records)
        except (httpx.HTTPError, WanliError) as exc:  # the service is not there, refuses, or knows no such building
            if api is not None:
                api.close()
            print(f"wanli: cannot register the drill's devices through {args.api}: {_short(exc)}\n"
                  f"  (is `wanli run{' --hierarchy street.json' if args.what == 'street' else ''}` running there? "
                  f"{running_service_hint()}or pass --no-register)", file=sys.stderr)
            return 1
    progress = Progress(scenario=f"simulate {args.what}")
    stop = threading.Event()
    line = _LiveLine(progress)
    line.start()
    try:
        play_population(population, _broker(args.mqtt_url), SimClock.wall(), stop=stop, progress=progress,
                        duration_s=args.duration, announce=not args.no_announce, drill=True)
    except KeyboardInterrupt:
        stop.set()
    finally:
        line.stop.set()
        line.join(3)
        if api is not None:
            _archive(api, list(population.devices))
    print(f"sent {progress.sent:,} messages from {progress.devices:,} drill devices ({progress.acked:,} acknowledged)")
    return 0


def _archive(api: Any, device_ids: list[str]) -> None:
    """The drill's devices retired (archived) when it ends, however it ends."""
    try:
        n = api.end_drill(device_ids)
        print(f"archived {n} drill devices", file=sys.stderr)
    except Exception as exc:  # noqa: BLE001 - say what is left behind, one line
        print(f"wanli: the drill's devices could not be archived: {_short(exc)} "
              f"(POST /api/drills/end archives every drill device left)", file=sys.stderr)
    finally:
        api.close()


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


def running_service_hint() -> str:
    """Where a service started here says it listens (``{data_dir}/service.json``, written by ``wanli run``)."""
    from wanli.runtime import read_service_file
    from wanli.settings import Settings

    try:
        found = read_service_file(Settings.model_construct().data_dir)
    except Exception:  # noqa: BLE001 - a hint, never an error of its own
        return ""
    if not found:
        return ""
    return f"the service started in this data directory said --api {found['http_url']} --mqtt-url {found['mqtt_url']}; "


def cmd_simulate_alarm(args: argparse.Namespace) -> int:
    """One smoke alarm as a drill: the drill twin of DEVICE alarms in its unit, its station's twin answers."""
    from devices.drill import DRILL_ZH, drill_id, real_id
    from devices.hierarchy import load_hierarchy
    from wanli.settings import Settings

    api = _api(args)
    real = api.device(real_id(args.device))
    if real is None:
        api.close()
        print(f"wanli: device {real_id(args.device)} is not registered at {args.api}: nothing published "
              f"(`wanli devices list --api {args.api}` lists the registered ones)", file=sys.stderr)
        return 1
    if real.get("lifecycle", "active") != "active":
        api.close()
        print(f"wanli: {real['device_id']} is retired: a drill stands beside active devices only; nothing published",
              file=sys.stderr)
        return 2
    if real["kind"] != "smoke_detector":
        api.close()
        print(f"wanli: {real['device_id']} is a {real['kind']}, not a smoke detector: nothing published",
              file=sys.stderr)
        return 2
    settings = Settings.model_construct()
    loc = real["location"]
    street = loc.get("street_id") or settings.street
    twin = drill_id(real["device_id"])
    records = [DeviceRecord(twin, "smoke_detector", street, loc["building_id"], loc.get("floor"),
                            loc.get("unit") or "", label=f"【{DRILL_ZH}】{real.get('label') or real['device_id']}")]
    try:
        station = load_hierarchy(settings.hierarchy_file).nearest_station(loc["building_id"])
    except Exception:  # noqa: BLE001 - another street's hierarchy here: the alarm goes out, nobody answers it
        station = None
    if station is not None:
        records.append(DeviceRecord(drill_id(station.id), "fire_station", street, loc["building_id"], None, "",
                                    label=f"【{DRILL_ZH}】{station.name}"))
    try:
        api.register_drill(records)
        return _sound_drill_alarm(args, street, twin, real["device_id"],
                                  drill_id(station.id) if station is not None else "")
    finally:
        _archive(api, [r.device_id for r in records])


def _sound_drill_alarm(args: argparse.Namespace, street: str, twin: str, real: str, station_twin: str) -> int:
    from devices.kinds.fire_station.simulator import FireStationSim
    from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
    from simulators.publisher import MqttPublisher
    from simulators.scenario import DispatchListener

    broker = _broker(args.mqtt_url)
    now = wall_ms()
    pub = MqttPublisher(broker, client_id=f"wanli-drill-{now % 10**9}")
    listener = DispatchListener(broker, street, drill=True) if station_twin else None
    try:
        topic, payload = SmokeDetectorSim(twin, street=street, seq=now).alarm(now)
        pub.publish(topic, payload)
        pub.flush(10)
        if pub.acked < 1:
            print(f"wanli: the broker at {broker.host}:{broker.port} did not acknowledge the alarm", file=sys.stderr)
            return 1
        print(f"published a drill alarm of {twin} (the drill twin of {real}; its incident is marked 演练): {topic}")
        if station_twin:
            duty = FireStationSim(station_twin, street=street, seq=now, response="drill")
            _answer_as_station(listener, duty, pub, args.answer_for)
        return 0
    finally:
        if listener is not None:
            listener.close()
        pub.close()


def _answer_as_station(listener: Any, duty: Any, pub: Any, seconds: float) -> None:
    """The drill's station answers its dispatch (acknowledge, depart, on scene) for ``seconds``."""
    if listener is None or duty is None or seconds <= 0:
        return
    deadline = time.monotonic() + seconds
    duty.start(wall_ms(), announce=False)
    while time.monotonic() < deadline:
        try:
            station_id, body = listener.notices.get(timeout=0.2)
            if station_id == duty.device_id and duty.on_dispatch(body, wall_ms()):
                print(f"  · {duty.device_id} received dispatch {json.loads(body).get('dispatch_id')}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
            pass
        for topic, payload in duty.tick(wall_ms()):
            if topic.endswith("/event"):
                pub.publish(topic, payload)
        if duty.answered and all(len(steps) >= 3 for steps in duty.answered.values()):
            break
    pub.flush(10)


def _cmd_load(args: argparse.Namespace) -> int:
    from devices.hierarchy import hierarchy_from_dict
    from devices.street_generator import generate_street
    from simulators.load import STREET_MIX, LoadMix, build_messages, publish
    from simulators.population import Population

    population = Population.of(hierarchy_from_dict(generate_street()), whole_street=True)
    mix = STREET_MIX if args.mix == "street" else LoadMix()
    print(f"building {args.count:,} messages from {len(population):,} devices…", file=sys.stderr)
    messages = build_messages(population.records, args.count, mix, start_seq=wall_ms())
    broker = _broker(args.mqtt_url)
    tty = sys.stderr.isatty()  # rewriting a line takes escape codes: into a file or a pipe, no progress line
    report = publish(messages, broker.host, broker.port, rate=args.rate, inflight=args.inflight,
                     progress=(lambda i: print(f"\r\x1b[K{i:,} sent", end="", file=sys.stderr, flush=True)) if tty
                     else None)
    if tty:
        print("\r\x1b[K", end="", file=sys.stderr)
    print(report.summary())
    return 0 if report.acknowledged == report.sent else 1


def _cmd_scenario_list(args: argparse.Namespace) -> int:
    from simulators.scenarios import scenarios

    for s in scenarios().values():
        own = " (own clock only)" if s.needs_shared_clock else ""
        print(f"{s.name:24} {s.title} · ×{s.speed:g}{own}\n  {s.summary}")
        for e in s.expect:
            print(f"    expects: {e.describe()}" + (f" [at {e.at}]" if e.at != "end" else ""))
    return 0


def _cmd_scenario_run(args: argparse.Namespace) -> int:
    import httpx

    from simulators.scenario import ScenarioError, run_scenario
    from wanli.embedded_scenario import run_embedded
    from simulators.scenarios import get

    try:
        scenario = get(args.name)
    except ScenarioError as exc:
        print(f"wanli: {exc}", file=sys.stderr)
        return 2
    progress, stop = Progress(), threading.Event()
    line = _LiveLine(progress)
    line.start()
    try:
        if args.api:
            api = _api(args)
            clock = service_clock(api)
            result = run_scenario(scenario, api=api, broker=_broker(args.mqtt_url), clock=clock, drill=True,
                                  register=api.register_drill, end=api.end_drill, progress=progress, stop=stop)
        else:
            result = run_embedded(scenario, mqtt_url=args.mqtt_url or "", progress=progress, stop=stop)
    except ScenarioError as exc:
        line.stop.set()
        print(f"\nwanli: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:  # the service is not there, or went away mid-scenario
        line.stop.set()
        print(f"\nwanli: the service at {args.api} did not answer: {_short(exc)} ({running_service_hint()}"
              f"is `wanli run` running? pass its address with --api)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stop.set()
        return 130
    finally:
        line.stop.set()
        line.join(3)
    print(json.dumps(result.as_dict(), ensure_ascii=False, indent=1) if args.json else result.report())
    return 0 if result.ok else 1


def _api(args: argparse.Namespace) -> Any:
    from simulators.scenario import ApiClient

    api = ApiClient(args.api, {"Authorization": f"Bearer {args.token}"} if args.token else None)
    if not args.token:
        user, _, password = args.login.partition(":")
        api.login(user, password)
    return api


def service_clock(api: Any) -> Any:
    """The running service's clock, followed here: the wall clock, or a tester's accelerated one (``/api/clock``)."""
    from simulators.player import OffsetClock

    try:
        found = api.clock()
    except Exception:  # noqa: BLE001 - a service from before /api/clock: the wall clock
        return ExternalClock(wall_ms)
    return OffsetClock(int(found["now_ms"]), float(found["speed"]))

