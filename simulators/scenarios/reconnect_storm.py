"""A reconnect storm: every device of two buildings loses its connection at once and comes back at once.

Each device has its own MQTT connection with its ``offline`` status as last will (as the
contract asks). The building's switch reboots: every connection dies, the broker publishes
every last will; a minute later every device reconnects in the same second, says
``online``, and re-sends its last message (a device that never saw the broker's
acknowledgement sends again).

Expected: the registry shows them offline during the outage and online after; every
re-sent message is recognised by its sequence number and counted as a duplicate, not
stored or alerted twice; nothing is rejected; no incident at all (a minute's outage is
not a fault).
"""

from simulators.expectations import (
    ExpectDeadLetters,
    ExpectDevices,
    ExpectNoIncident,
    ExpectStat,
)
from simulators.publisher import DevicePublishers
from simulators.scenario import Scenario, Stage

DEVICES = 150  # smoke detectors of 香泉 1号楼 and 2号楼 (72 each) and the rest of their devices


def play(stage: Stage) -> None:
    stage.say("两栋楼的设备各自连接 MQTT（带遗嘱）")
    stage.wait(120)
    sink = stage.sink
    assert isinstance(sink, DevicePublishers)
    stage.settle()
    before = dict(stage.last_sent)  # what each device sent last before the outage
    stage.mark("outage")
    dropped = sink.drop_all()
    for d in stage.population.devices.values():
        d.go_silent(stage.now_ms())  # off the network: nothing goes out until they reconnect (the broker sent the wills)
    stage.say(f"楼栋交换机重启：{dropped} 条连接同时中断，代理发布遗嘱")
    stage.checkpoint("outage")
    stage.wait(60)
    stage.mark("storm")
    sink.connect_all(list(stage.population.devices))
    now = stage.now_ms()
    resend = []
    for d in stage.population.devices.values():
        stage.send(d.come_back(now))
        stage.changed(d)
        if d.device_id in before:
            resend.append(before[d.device_id])
    stage.send(resend)
    stage.say(f"{len(stage.population)} 台设备同时重连，{len(resend)} 条消息被重发")
    stage.wait(90)


SCENARIO = Scenario(
    duration_s=270,  # the script's simulated seconds (progress and time left)
    name="reconnect_storm", title="重连风暴", summary="楼栋交换机重启：香泉1号楼、2号楼全部设备的连接同时中断、一分钟后同时重连，并重发断线前的最后一条消息。",
    marks={"outage": "断线", "storm": "重连"},
    play=play, buildings=("xq-01", "xq-02"), speed=30, per_device_connections=True,
    expect=(
        ExpectDevices(health="offline", every=True, at="outage"),
        ExpectNoIncident(("*",)),
        ExpectStat("duplicates", at_least=DEVICES),
        ExpectDeadLetters("*", count=0),
        ExpectDevices(health="online", every=True),
    ),
)
