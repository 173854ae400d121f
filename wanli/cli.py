"""``wanli``: the one front door.

    wanli run                      the whole main job on embedded defaults (broker, SQLite, screen, a building)
    wanli simulate alarm DEVICE    a drill: DEVICE's drill twin (DRILL-…) sounds one smoke alarm
    wanli street generate          the full street's hierarchy as JSON
    wanli devices …                register, import, move, retire and list devices (through the API)
    wanli backup DIR / restore DIR a checked online backup; restore into a fresh data dir or database
    wanli archive --month YYYY-MM  the month's incidents and audit as CSV and JSON
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from importlib.metadata import entry_points
from typing import Any

import httpx
from pydantic import ValidationError

from simulators.cli import add_commands as add_simulator_commands
from simulators.cli import api_options, cmd_simulate_alarm
from wanli.notify_commands import add_notify_commands
from wanli.data_commands import add_data_commands
from wanli.registry_commands import add_commands
from foundation.errors import StoreUnavailable, WanliError
from wanli.settings import Settings
from wanli.user_commands import add_user_commands


def _settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise SystemExit(f"wanli: bad configuration:\n{exc}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    import faulthandler

    from wanli.broker_check import OpenBroker
    from wanli.runtime import WanliService, write_service_file

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr

    settings = _settings({
        "mqtt_url": args.mqtt_url, "telemetry_backend": args.telemetry, "influx_url": args.influx_url,
        "http_host": args.host, "http_port": args.port, "data_dir": args.data_dir,
        "simulate_building": False if args.no_simulate else None, "simulate_alarm_every_seconds": args.alarm_every,
        "embedded_broker_port": args.broker_port, "hierarchy_file": args.hierarchy,
        "clock_speed": args.clock_speed, "clock_start": args.clock_start,
    })

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service = WanliService(settings, owns_process=True)
        try:
            await service.start()
        except OpenBroker as exc:  # production on a broker that lets anyone in: say so plainly, no traceback
            await service.stop()
            raise SystemExit(f"wanli: {exc}") from None
        broker = service.broker.url if service.broker else settings.mqtt_url
        print(f"万里街道 operations screen: {service.http_url}/ops/", flush=True)
        print(f"  MQTT broker: {broker}{' (embedded)' if service.broker else ''}"
              f" · telemetry: {settings.telemetry_backend.value} · data: {settings.data_dir}", flush=True)
        if service.clock is not None:
            print(f"  clock: a tester's, ×{settings.clock_speed:g} from {settings.clock_start or 'now'} "
                  f"(never in production; docs/configuration.md)", flush=True)
        service_file = write_service_file(settings.data_dir, service.http_url, broker)
        print("  Ctrl-C stops.", flush=True)
        try:
            await stop.wait()
        finally:
            service_file.unlink(missing_ok=True)
        print("stopping…", flush=True)
        await service.stop()

    asyncio.run(main())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wanli", description="Wanli Safety: community safety sensing for 万里街道")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the main job (embedded broker and SQLite unless told otherwise)")
    run.add_argument("--mqtt-url", help="use this broker instead of the embedded one, e.g. mqtt://127.0.0.1:1883")
    run.add_argument("--broker-port", type=int, help="port of the embedded broker (default 1883)")
    run.add_argument("--telemetry", choices=["sqlite", "influxdb1", "influxdb2"], help="telemetry store (default sqlite)")
    run.add_argument("--influx-url", help="InfluxDB URL, e.g. http://127.0.0.1:8086")
    run.add_argument("--host", help="HTTP listen address (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="HTTP port (default 8000)")
    run.add_argument("--data-dir", help="where SQLite files live (default ./var)")
    run.add_argument("--no-simulate", action="store_true", help="do not start the simulated building")
    run.add_argument("--alarm-every", type=float, help="drill: a random detector alarms every N seconds")
    run.add_argument("--hierarchy", help="the street's hierarchy JSON (default: the built-in sample of Wanli)")
    run.add_argument("--clock-speed", type=float, help="a tester's clock: this many times real time, e.g. 3600 for an "
                                                      "hour a second (WANLI_CLOCK_SPEED; refused in production)")
    run.add_argument("--clock-start", help="a tester's clock starts at this ISO time with a zone, e.g. "
                                           "2026-12-07T09:00:00+08:00 (WANLI_CLOCK_START; refused in production)")
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser("simulate", help="publish simulated device messages (as a drill: DRILL-… devices)")
    sim_sub = sim.add_subparsers(dest="what", required=True)
    alarm = sim_sub.add_parser(
        "alarm", help="a drill: the drill twin of a registered smoke detector sounds one alarm",
        description="The drill twin (DRILL-…) of a registered smoke detector sounds one alarm in its unit; its "
                    "incident is marked 演练 and reaches only drill contacts; the twin of the nearest micro fire "
                    "station answers its dispatch; both twins are archived afterwards. The real device is never "
                    "touched.")
    alarm.add_argument("device", help="a registered smoke detector's id, e.g. SD-XQ01-0101")
    alarm.add_argument("--mqtt-url", help="broker (default: the embedded broker's address, mqtt://127.0.0.1:1883)")
    api_options(alarm)
    alarm.add_argument("--answer-for", type=float, default=60.0,
                       help="seconds the drill's station waits for its dispatch and answers it (acknowledge, depart, "
                            "on scene, within seconds each; default 60; 0: nobody answers)")
    alarm.set_defaults(func=cmd_simulate_alarm)

    try:
        defaults = Settings()
    except ValidationError:  # a bad environment: the command run says so (_settings); the parser still builds
        defaults = Settings.model_construct()
    add_commands(sub, f"http://{defaults.http_host}:{defaults.http_port}")
    add_simulator_commands(sub)
    add_user_commands(sub)
    add_notify_commands(sub)
    add_data_commands(sub)
    add_plugin_commands(sub)
    return parser


def add_plugin_commands(sub: Any) -> None:
    """The commands other installed distributions add under ``wanli`` (entry points of the group
    ``wanli.commands``, each a function given the CLI's subcommands): the development tooling's
    ``wanli bench`` and ``wanli chaos`` (tooling/pyproject.toml), present in a checkout set up by
    scripts/test and absent from the product's wheel."""
    for entry in sorted(entry_points(group="wanli.commands"), key=lambda e: e.name):
        entry.load()(sub)


QUIET_LIBRARIES = ("alembic", "amqtt", "transitions", "httpx", "httpcore", "paho", "urllib3", "uvicorn")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The service logs what it does; a one-off command prints its answer and only warnings beside it.
    # Libraries (Alembic's migrations, the broker, HTTP clients) say INFO only with -v.
    level = logging.DEBUG if args.verbose else logging.INFO if args.command == "run" else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in QUIET_LIBRARIES:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except (httpx.TransportError, ConnectionError, TimeoutError, OSError) as exc:
        # The service or the broker is not where the command looked: one line saying what to try, no traceback.
        print(f"wanli: {unreachable(args, exc)}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:  # the broker refused or did not answer (simulators' publishers)
        print(f"wanli: {unreachable(args, exc) if exc.store == 'mqtt' else exc}", file=sys.stderr)
        return 1
    except httpx.HTTPStatusError as exc:  # the service answered no: say what and why, one line
        r = exc.response
        hint = "; check WANLI_TOKEN (or --token/--login)" if r.status_code in (401, 403) else ""
        print(f"wanli: {r.request.method} {r.request.url} refused ({r.status_code}): {r.text[:200]}{hint}",
              file=sys.stderr)
        return 2
    except WanliError as exc:  # a domain error the command did not expect to meet: its message, no traceback
        print(f"wanli: {exc}", file=sys.stderr)
        return 2


def unreachable(args: argparse.Namespace, exc: BaseException) -> str:
    """What could not be reached, why, and what to try."""
    from simulators.cli import running_service_hint

    why = (exc.detail if isinstance(exc, StoreUnavailable) else str(exc)).splitlines()[0] if str(exc) \
        else type(exc).__name__
    if isinstance(exc, httpx.TransportError):
        where = getattr(args, "api", None) or "the service"
        what = f"cannot reach the service at {where} ({why})"
        flag = "--api URL"
    else:
        where = getattr(args, "mqtt_url", None) or "mqtt://127.0.0.1:1883 (the embedded broker's default)"
        what = f"cannot reach the MQTT broker at {where} ({why})"
        flag = "--mqtt-url mqtt://HOST:PORT"
    hint = running_service_hint()
    return (f"{what}; is `wanli run` running? {hint or ''}"
            f"pass its address with {flag} (`wanli run` prints both; WANLI_HTTP_PORT and WANLI_MQTT_URL set them)")


if __name__ == "__main__":
    sys.exit(main())
