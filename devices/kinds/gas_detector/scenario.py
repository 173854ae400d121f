"""A kitchen gas leak in an old estate: 富平 1号楼 0302, lunchtime, the hose slips off the hob.

富平 1号楼 is one of the street's old six-storey blocks, a gas detector fitted in every
kitchen with a shut-off valve on the supply. At 11:20 the hose of 0302's hob slips off: the
gas climbs to 60 % LEL in a minute and a half, the detector sounds its low alarm (25 % LEL)
and then its high one (50 % LEL), and its valve shuts a few seconds after the first alarm and
says so. The resident opens the windows; eight minutes later the gas is back under the low
set point and the detector sends ``gas_cleared``. No other kitchen smells a thing.

Expected: one ``gas_leak`` incident for GD-FP01-0302 within two minutes, CRITICAL once the
high set point is crossed (the same incident, raised: not two); no ``valve_not_closed`` (the
valve answered in time); no leak anywhere else in the building.
"""

from devices.hierarchy import Hierarchy
from devices.kind_slice import Row, building_code
from devices.kinds.gas_detector.simulator import GasDetectorSim
from devices.placement import place_rows
from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage

BUILDING = "fp-01"


def kitchens(hierarchy: Hierarchy) -> list[Row]:
    """The building's devices, and a gas detector in every kitchen (the old estate's fitting programme)."""
    b = hierarchy.building(BUILDING)
    code = building_code(b.id)
    fitted = [(f"GD-{code}-{unit}", "gas_detector", b.id, floor, unit, f"{b.name} {unit} 厨房")
              for floor in range(1, b.floors + 1) for unit in (f"{floor:02d}{u:02d}" for u in range(1, b.units_per_floor + 1))]
    return place_rows(hierarchy, building_ids=[BUILDING]) + fitted


def play(stage: Stage) -> None:
    detector = stage.device("GD-FP01-0302")
    assert isinstance(detector, GasDetectorSim)
    stage.wait(20)
    stage.mark("leak")
    detector.leak(stage.now_ms(), peak_lel_pct=60.0, rise_s=90.0, aired_after_s=480.0)
    stage.changed(detector)
    stage.say(f"{stage.local_time()} 0302室燃气灶软管脱落，燃气泄漏")
    stage.wait(90)
    stage.say("燃气浓度达到高限，切断阀已关闭，住户开窗通风")
    stage.wait(400)
    stage.say("燃气浓度回落到低限以下，探测器消警")
    stage.wait(20)


SCENARIO = Scenario(
    duration_s=530,
    name="kitchen_gas_leak", title="老旧小区厨房燃气泄漏",
    summary="富平1号楼0302室午饭时燃气灶软管脱落，燃气浓度一分半钟升至60%LEL；可燃气体探测器先后发出低限、高限报警，"
            "切断阀数秒内关闭并反馈；住户开窗通风，八分钟后浓度回落、探测器消警。楼内其他厨房均无报警。",
    marks={"leak": "软管脱落"},
    play=play, rows=kitchens, speed=60, start_local=(11, 20),
    expect=(
        ExpectIncident("gas_leak", severity="critical", device="GD-FP01-0302", within_s=120, after="leak"),
        ExpectNoIncident(("valve_not_closed",)),
        ExpectNoIncident(("gas_leak",), device="GD-FP01-0[!3]*", text="其他楼层厨房无燃气报警"),
    ),
)
