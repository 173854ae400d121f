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
(``--api``; ``--no-register`` if they already are).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from simulators.clock import SimClock, shanghai
from simulators.scenario import Progress
from wanli.errors import WanliError


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    simulate = sub.choices.get("simulate") or sub.add_parser("simulate", help="publish simulated device messages")
    sim_sub = next((a for a in simulate._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sim_sub is None:
        sim_sub = simulate.add_subparsers(dest="what", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mqtt-url", help="broker (default: the embedded broker's address, mqtt://127.0.0.1:1883)")
        p.add_argument("--api", default="http://127.0.0.1:8000", help="the running service, to register the devices")
        p.add_argument("--token", default="", help="API token of a maintainer (default: sign in with --login)")
        p.add_argument("--login", default="dev:wanli-dev", help="user:password to sign in with (default: development "
                                                                 "mode's account, docs/access.md)")
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
    run.add_argument("--api", help="a running service on the wall clock instead of the scenario's own service")
    run.add_argument("--token", default="", help="API token (Authorization: Bearer) for --api")
    run.add_argument("--login", default="dev:wanli-dev", help="user:password to sign in to --api with (default: "
                                                               "development mode's account)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.set_defaults(func=_cmd_scenario_run)


def _broker(url: str | None) -> Any:
    from simulators.publisher import BrokerAddress
    from wanli.settings import Settings

    host, port = Settings(mqtt_url=url or "").mqtt_host_port
    return BrokerAddress(host, port)


class _LiveLine(threading.Thread):
    """One status line, rewritten every second: messages sent, rate, simulated time, what is happening."""

    def __init__(self, progress: Progress, out: Any = sys.stderr) -> None:
        super().__init__(name="progress", daemon=True)
        self.progress, self.out, self.stop = progress, out, threading.Event()
        self._said = 0

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.draw()
        self.draw()
        self.out.write("\n")

    def draw(self) -> None:
        p = self.progress
        for line in p.log[self._said:]:
            self.out.write(f"\r\x1b[K  · {line}\n")
        self._said = len(p.log)
        sim = f"{shanghai(p.sim_ms):%m-%d %H:%M:%S}" if p.sim_ms else "-"
        self.out.write(f"\r\x1b[K{p.sent:,} sent ({p.acked:,} acked) · {p.rate:,.0f} msg/s · {p.devices:,} devices · "
                       f"simulated {sim} · {p.phase}")
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
    population = Population.from_rows(rows, hierarchy.street_id, seed=args.seed, start_seq=time.time_ns() // 1_000_000)
    if not args.no_register:
        import httpx

        api = None
        try:
            api = _api(args)
            api.import_devices(population.records)
        except (httpx.HTTPError, WanliError) as exc:  # the service is not there, refuses, or knows no such building
            print(f"wanli: cannot register the devices through {args.api}: {exc}\n"
                  f"  (is `wanli run{' --hierarchy street.json' if args.what == 'street' else ''}` running? "
                  f"or pass --no-register)", file=sys.stderr)
            return 1
        finally:
            if api is not None:
                api.close()
    progress = Progress(scenario=f"simulate {args.what}")
    stop = threading.Event()
    line = _LiveLine(progress)
    line.start()
    try:
        play_population(population, _broker(args.mqtt_url), SimClock.wall(), stop=stop, progress=progress,
                        duration_s=args.duration, announce=not args.no_announce)
    except KeyboardInterrupt:
        stop.set()
    finally:
        line.stop.set()
        line.join(3)
    print(f"sent {progress.sent:,} messages from {progress.devices:,} devices ({progress.acked:,} acknowledged)")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from devices.hierarchy import hierarchy_from_dict
    from devices.street_generator import generate_street
    from simulators.load import STREET_MIX, LoadMix, build_messages, publish
    from simulators.population import Population

    population = Population.of(hierarchy_from_dict(generate_street()), whole_street=True)
    mix = STREET_MIX if args.mix == "street" else LoadMix()
    print(f"building {args.count:,} messages from {len(population):,} devices…", file=sys.stderr)
    messages = build_messages(population.records, args.count, mix, start_seq=time.time_ns() // 1_000_000)
    broker = _broker(args.mqtt_url)
    report = publish(messages, broker.host, broker.port, rate=args.rate, inflight=args.inflight,
                     progress=lambda i: print(f"\r\x1b[K{i:,} sent", end="", file=sys.stderr, flush=True))
    print(f"\r\x1b[K{report.summary()}")
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

    from simulators.player import ExternalClock
    from simulators.scenario import ScenarioError, run_embedded, run_scenario
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
            result = run_scenario(scenario, api=api, broker=_broker(args.mqtt_url), clock=ExternalClock(_wall_ms),
                                  register=api.import_devices, progress=progress, stop=stop)
        else:
            result = run_embedded(scenario, mqtt_url=args.mqtt_url or "", progress=progress, stop=stop)
    except ScenarioError as exc:
        line.stop.set()
        print(f"\nwanli: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:  # the service is not there, or went away mid-scenario
        line.stop.set()
        print(f"\nwanli: the service at {args.api} did not answer: {exc}", file=sys.stderr)
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


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000
