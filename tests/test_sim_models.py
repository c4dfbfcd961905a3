"""Each model kind against a closed-form answer, composition, valid ranges, malformed definitions."""

import math
from pathlib import Path

import numpy as np
import pytest

from metaforge.errors import BadInput
from metaforge.sim.compose import from_composition, from_models
from metaforge.sim.definition import load, validate
from metaforge.sim.engine import Scenario, Series, simulate

MODELS = Path(__file__).resolve().parents[1] / "templates" / "drone-flight-controller" / "files" / "models"


def model(tmp_path, text: str, name: str = "m.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load(path)


def run(loaded, duration, **kw):
    return simulate(from_models([loaded]), Scenario(duration, **kw))


# ---- thermal R-C -------------------------------------------------------------------------------

RC = """
name: one-node
model_type: thermal-rc
inputs: [{name: power, unit: W, default: 2.0}, {name: ambient_temperature, unit: degC, default: 20}]
outputs: [{name: chip_temperature, unit: degC}]
parameters:
  nodes: {chip: {capacitance_J_per_K: 5.0}}
  resistances_K_per_W: {chip-ambient: 10.0}
heat_inputs: {chip: power}
"""


def test_rc_step_response_is_exact(tmp_path):
    r = run(model(tmp_path, RC), 300, rate_hz=1)
    t = r.t
    expected = 20 + 2.0 * 10.0 * (1 - np.exp(-t / 50.0))
    assert np.abs(r.curves["one_node.chip_temperature"] - expected).max() < 0.03  # linear between 5 s steps: 0.12 % of the rise
    grid = r.trace_t
    at_steps = r.curves["one_node.chip_temperature"][np.isin(t, grid)]
    assert np.abs(at_steps - (20 + 20 * (1 - np.exp(-t[np.isin(t, grid)] / 50.0)))).max() < 1e-9


def test_a_chain_network_reaches_the_series_resistance_steady_state(tmp_path):
    text = RC.replace("nodes: {chip: {capacitance_J_per_K: 5.0}}",
                      "nodes: {chip: {capacitance_J_per_K: 5.0}, board: {capacitance_J_per_K: 40}, case: {capacitance_J_per_K: 90}}")
    text = text.replace("resistances_K_per_W: {chip-ambient: 10.0}",
                        "resistances_K_per_W: {chip-board: 10.0, board-case: 4.0, case-ambient: 6.0}")
    r = run(model(tmp_path, text), 20000, rate_hz=0.01)
    assert r.curves["one_node.chip_temperature"][-1] == pytest.approx(20 + 2.0 * (10 + 4 + 6), abs=1e-6)


# ---- transfer functions ---------------------------------------------------------------------------

def test_first_order_transfer_function_step(tmp_path):
    m = load(MODELS / "motor-response.yaml")
    r = simulate(from_models([m]), Scenario(0.3, rate_hz=1000, inputs={"throttle": 0.5}))
    expected = 0.5 * 24000 * (1 - np.exp(-r.t / 0.035))
    assert np.abs(r.curves["motor_response.rpm"] - expected).max() < 0.005 * 12000
    assert r.step <= 0.035 / 5 + 1e-12


def test_second_order_underdamped_step(tmp_path):
    wn, zeta = 10.0, 0.2
    m = model(tmp_path, f"""
name: spring
model_type: transfer-function
inputs: [{{name: u, default: 1}}]
outputs: [{{name: y}}]
parameters: {{numerator: [{wn ** 2}], denominator: [1, {2 * zeta * wn}, {wn ** 2}]}}
""")
    r = run(m, 3.0, rate_hz=200, step=0.005)
    wd = wn * math.sqrt(1 - zeta ** 2)
    t = r.t
    expected = 1 - np.exp(-zeta * wn * t) * (np.cos(wd * t) + zeta / math.sqrt(1 - zeta ** 2) * np.sin(wd * t))
    assert np.abs(r.curves["spring.y"] - expected).max() < 1e-6


# ---- differential equations -----------------------------------------------------------------------

def test_ode_exponential_decay_and_logistic_growth(tmp_path):
    m = model(tmp_path, """
name: growth
model_type: differential-equation
outputs: [{name: x}, {name: p}]
states:
  x: {initial: 2.0, rate: -k * x}
  p: {initial: 0.1, rate: r * p * (1 - p / cap)}
parameters: {k: 0.3, r: 0.8, cap: 5.0}
""")
    r = run(m, 10.0, rate_hz=10, step=0.1)   # on the step grid: RK4's own error
    t = r.t
    logistic = 5.0 / (1 + (5.0 / 0.1 - 1) * np.exp(-0.8 * t))
    assert np.abs(r.curves["growth.x"] - 2 * np.exp(-0.3 * t)).max() < 1e-7
    assert np.abs(r.curves["growth.p"] - logistic).max() < 1e-5
    auto = run(m, 10.0, rate_hz=10)          # the engine picks the step, resampled linearly
    assert auto.step == pytest.approx(0.1 / (0.8 * (1 - 2 * 0.1 / 5)), rel=0.05)  # |df/dp| at the start
    assert np.abs(auto.curves["growth.p"] - logistic).max() / 5.0 < 1e-3


@pytest.mark.parametrize("stiff", [True, False])
def test_stiff_ode_follows_its_closed_form(tmp_path, stiff):
    # x' = -1000 (x - cos t) - sin t, x(0) = 2:  x = cos t + exp(-1000 t)
    m = model(tmp_path, f"""
name: stiff
model_type: differential-equation
outputs: [{{name: x}}]
states: {{x: {{initial: 2.0, rate: "-lam * (x - cos(t)) - sin(t)"}}}}
parameters: {{lam: 1000}}
stiff: {str(stiff).lower()}
""")
    r = run(m, 5.0, rate_hz=10, step=0.05)   # 50 times the fast time constant
    late = r.t > 0.5
    assert np.abs(r.curves["stiff.x"][late] - np.cos(r.t[late])).max() < 2e-3
    assert np.isfinite(r.curves["stiff.x"]).all()


# ---- lookup tables --------------------------------------------------------------------------------

def test_two_dimensional_table_is_exact_on_a_plane_and_reports_the_grid_edge(tmp_path):
    xs, ys = [0, 0.5, 1.0], [10, 12, 14, 16]
    values = [[3 * x + 0.5 * y + 1 for y in ys] for x in xs]
    m = model(tmp_path, f"""
name: plane
model_type: lookup-table
inputs: [{{name: throttle, default: 0.3}}, {{name: voltage, unit: V, default: 11}}]
outputs: [{{name: current, unit: A}}]
parameters: {{axes: {{throttle: {xs}, voltage: {ys}}}, values: {{current: {values}}}}}
""")
    r = run(m, 10, rate_hz=1, inputs={"throttle": 0.3, "voltage": 11.0})
    assert r.curves["plane.current"][0] == pytest.approx(3 * 0.3 + 0.5 * 11 + 1)
    r = run(m, 10, rate_hz=1, inputs={"voltage": 17.5})
    assert [x["input"] for x in r.ranges] == ["plane.voltage"] and r.ranges[0]["max"] == 17.5


def test_a_table_from_gridded_test_data(tmp_path):
    rows = ["rpm,temp,efficiency"] + [f"{r},{t},{0.9 - r / 1e5 - t / 1e3}" for r in (1000, 5000, 9000) for t in (0, 50)]
    (tmp_path / "eff.csv").write_text("\n".join(rows) + "\n")
    m = model(tmp_path, """
name: eff
model_type: lookup-table
inputs: [{name: rpm, default: 3000}, {name: temp, unit: degC, default: 25}]
outputs: [{name: efficiency}]
data: eff.csv
""")
    r = run(m, 1, rate_hz=1)
    assert r.curves["eff.efficiency"][0] == pytest.approx(0.9 - 0.03 - 0.025)


# ---- state machines ---------------------------------------------------------------------------------

def test_throttle_machine_with_hysteresis_on_a_temperature_ramp(tmp_path):
    m = load(MODELS / "thermal-throttle.yaml")
    t = np.arange(0, 201.0)
    temp = np.where(t < 100, 60 + 0.3 * t, 90 - 0.3 * (t - 100))  # up to 90 °C and back down
    temp = np.where(t < 100, 60 + 0.21 * t, 81 - 0.21 * (t - 100))  # peaks at 81: throttles, no shutdown
    r = simulate(from_models([m]), Scenario(200, rate_hz=1, step=1.0, inputs={"temperature": Series(t, temp)}))
    state = r.curves["thermal_throttle.state"]
    first_hot = int(np.argmax(temp >= 80))
    assert state[first_hot] == 0 and state[first_hot + 1] == 1      # sampled, then acts the next step
    cool = int(np.argmax((t > 100) & (temp <= 74)))
    assert (state[first_hot + 1:cool + 1] == 1).all() and state[cool + 1] == 0
    assert r.curves["thermal_throttle.load_factor"][first_hot + 1] == 0.6


# ---- composition -------------------------------------------------------------------------------------

def _drone(only=None):
    return from_composition(load(MODELS / "drone-flight.yaml"), lambda name, _: load(MODELS / f"{name}.yaml"), only)


LIMITS = {"BOMItem:U1.max_temp": (85, "degC"), "BOMItem:U4.max_temp": (125, "degC"),
          "BOMItem:BT1.max_temp": (60, "degC")}.get


def test_composed_drone_flight_time_heat_and_throttle():
    r = simulate(_drone(), Scenario(3600, inputs={"ambient_temp_c": 25, "load_current_a": 12}), LIMITS)
    kelvin = r.curves["battery.cell_temperature"] + 273.15
    q = 2.2 * np.minimum(np.exp(-6000 / 8.314 * (1 / kelvin - 1 / 298.15)), 1.05)   # Q(T), Arrhenius
    counted = np.trapezoid(r.curves["battery.cell_current"] / q, r.t) / 3600
    assert counted == pytest.approx(1 - r.results["final_soc"], abs=3e-3)            # coulombs counted
    assert 560 < r.results["flight_time"] < 700                                     # ~ 2.2 Ah / 12 A
    v = r.curves["battery.terminal_voltage"]
    cut = int(np.argmax(r.t >= r.results["flight_time"]))
    assert v[cut - 1] > 9.9 >= v[cut + 1] - 0.05 and r.curves["battery.cell_current"][cut + 40] == 0
    assert r.curves["thermal.battery_temperature"].max() > 26   # the pack's I²R heats its node
    hot = simulate(_drone(), Scenario(3600, inputs={"ambient_temp_c": 45, "load_current_a": 22}), LIMITS)
    tt = hot.results["time_to_throttle"]
    assert 60 < tt < hot.results["flight_time"]
    k = int(np.argmax(hot.t >= tt + 5))
    assert hot.curves["battery.load_current"][k] == pytest.approx(22 * 0.6)  # the machine gates the load
    assert hot.results["thermal_margin"] < r.results["thermal_margin"]


def test_leaving_a_member_out_uses_the_fallbacks():
    r = simulate(_drone(["battery-discharge"]), Scenario(1800, inputs={"ambient_temp_c": 30}), None)
    assert r.curves["battery.cell_temperature"].max() == pytest.approx(30)  # no thermal network: ambient
    assert "thermal.mcu_temperature" not in r.curves


def test_fleet_of_arrays_matches_one_device_at_a_time():
    ambient = np.array([0.0, 20.0, 45.0])
    fleet = simulate(_drone(), Scenario(3600, n=3, inputs={"ambient_temp_c": ambient}, curves=False), LIMITS)
    assert fleet.mode == "array"
    for i, a in enumerate(ambient):
        one = simulate(_drone(), Scenario(3600, inputs={"ambient_temp_c": float(a)}, curves=False), LIMITS)
        assert one.mode == "scalar"
        for name in ("flight_time", "peak_mcu_temperature", "thermal_margin"):
            assert fleet.results[name][i] == pytest.approx(one.results[name], rel=1e-9, nan_ok=True)


def test_inputs_outside_the_valid_range_are_reported_not_hidden():
    r = simulate(_drone(), Scenario(600, inputs={"ambient_temp_c": 70}), LIMITS)
    found = {x["input"]: x for x in r.ranges}
    assert found["thermal.ambient_temperature"]["range"] == [-10, 60]
    assert found["thermal.ambient_temperature"]["max"] == 70 and found["battery.cell_temperature"]["max"] > 60


def test_battery_physics_colder_is_shorter():
    r = [simulate(_drone(), Scenario(3600, inputs={"ambient_temp_c": a}), LIMITS).results["flight_time"] for a in (0, 25)]
    assert r[0] < r[1]   # less capacity and more resistance in the cold


# ---- malformed definitions ---------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (("model_type: differential-equation", "model_type: neural-net"), "model_type: 'neural-net' is not one of"),
    (("rate: \"-i_cell / (3600 * q_ah)\"", "rate: \"-i_cell / (3600 * q_ahh)\""),
     "states.soc.rate: unknown name 'q_ahh'"),
    (("  - {name: load_current, unit: A, default: 0}", "  - {name: load_current, unit: zorks, default: 0}"),
     "inputs.0.unit: unknown unit 'zorks'"),
    (("  load_current: [0, 99]", "  load_currents: [0, 99]"), "valid_range.load_currents: 'load_currents' is not an input"),
    (("  r0_ohm: 0.006 ", "  r0_ohm: [oops "), "not valid YAML"),
    (("  q_ah: capacity_Ah", "  q_ah: __import__('os').system('true') or capacity_Ah"), "let.q_ah: unknown function '__import__"),
    (("  depleted: terminal_voltage <=", "  depleted: terminal_voltage <=="), "events.depleted: "),
])
def test_malformed_definitions_are_refused_naming_the_field(tmp_path, change, message):
    text = (MODELS / "battery-discharge.yaml").read_text()
    assert change[0] in text
    path = tmp_path / "battery.yaml"
    path.write_text(text.replace(change[0], change[1]))
    with pytest.raises(BadInput) as exc:
        load(path)
    assert message in str(exc.value) and str(exc.value).startswith(str(path))


def test_malformed_thermal_and_machine_fields_are_named():
    with pytest.raises(BadInput, match=r"x.yaml: parameters.resistances_K_per_W.mcu-floor: 'mcu-floor' is not"):
        validate({"name": "t", "model_type": "thermal-rc", "outputs": [{"name": "mcu_temperature"}],
                  "parameters": {"nodes": {"mcu": {"capacitance_J_per_K": 1}}, "resistances_K_per_W": {"mcu-floor": 2}}},
                 "x.yaml")
    with pytest.raises(BadInput, match=r"x.yaml: transitions.0.to: 'melted' is not a state"):
        validate({"name": "s", "model_type": "state-machine", "inputs": [{"name": "temp"}],
                  "states": {"ok": {}}, "initial": "ok", "transitions": [{"from": "ok", "to": "melted", "when": "temp > 1"}]},
                 "x.yaml")
