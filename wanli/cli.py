"""``wanli``: the one front door.

    wanli run                      the whole main job on embedded defaults (broker, SQLite, screen, a building)
    wanli simulate alarm DEVICE    publish one smoke alarm as that device would
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
from typing import Any

from pydantic import ValidationError

from simulators.cli import add_commands as add_simulator_commands
from wanli.bench import add_commands as add_bench_commands
from wanli.chaos import add_commands as add_chaos_commands
from wanli.notify_commands import add_notify_commands
from wanli.data_commands import add_data_commands
from wanli.registry_commands import add_commands
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
    from wanli.runtime import WanliService

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack to stderr

    settings = _settings({
        "mqtt_url": args.mqtt_url, "telemetry_backend": args.telemetry, "influx_url": args.influx_url,
        "http_host": args.host, "http_port": args.port, "data_dir": args.data_dir,
        "simulate_building": False if args.no_simulate else None, "simulate_alarm_every_seconds": args.alarm_every,
        "embedded_broker_port": args.broker_port, "hierarchy_file": args.hierarchy,
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
        print("  Ctrl-C stops.", flush=True)
        await stop.wait()
        print("stopping…", flush=True)
        await service.stop()

    asyncio.run(main())
    return 0


def _cmd_simulate_alarm(args: argparse.Namespace) -> int:
    import time

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from simulators.devices.smoke_detector import SmokeDetectorSim

    settings = _settings({"mqtt_url": args.mqtt_url})
    host, port = settings.mqtt_host_port
    now = time.time_ns() // 1_000_000
    topic, payload = SmokeDetectorSim(args.device, street=settings.street, seq=now).alarm(now)
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"wanli-cli-{now}")
    client.connect(host, port)
    client.loop_start()
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    client.disconnect()
    client.loop_stop()
    if not info.is_published():
        print(f"wanli: the broker at {host}:{port} did not acknowledge the alarm", file=sys.stderr)
        return 1
    print(f"published {topic} {payload.decode()}")
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
    run.set_defaults(func=_cmd_run)

    sim = sub.add_parser("simulate", help="publish simulated device messages")
    sim_sub = sim.add_subparsers(dest="what", required=True)
    alarm = sim_sub.add_parser("alarm", help="publish one smoke alarm from a device")
    alarm.add_argument("device", help="device id, e.g. SD-XQ01-0101")
    alarm.add_argument("--mqtt-url", help="broker (default: the embedded broker's address)")
    alarm.set_defaults(func=_cmd_simulate_alarm)

    try:
        defaults = Settings()
    except ValidationError:  # a bad environment: the command run says so (_settings); the parser still builds
        defaults = Settings.model_construct()
    add_commands(sub, f"http://{defaults.http_host}:{defaults.http_port}")
    add_bench_commands(sub)
    add_simulator_commands(sub)
    add_user_commands(sub)
    add_chaos_commands(sub)
    add_notify_commands(sub)
    add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
