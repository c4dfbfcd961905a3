"""What the simulator refuses, and what keeps a run physical (issue 21): parameters, inputs and
states checked before a run (exit 2 naming each), the state of charge clamped with a cut-off, the
Arrhenius temperature laws, `mf sim register` checking units, wiring, members and loops, long
runs streamed to disk, plots that show the limits."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import read_log

DEV = "FC-SN-20260301-001"
MODELS = Path(__file__).resolve().parents[1] / "templates" / "drone-flight-controller" / "files" / "models"


# ---- physical values -------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, named", [
    ("battery.capacity=0mAh", "parameter capacity_Ah = 0 is not physical (it must be positive)"),
    ("battery.capacity=-1Ah", "parameter capacity_Ah = -1 is not physical"),
    ("battery.r1_ohm=0", "parameter r1_ohm = 0 is not physical (it must be positive)"),
    ("battery.tau1_s=-5", "parameter tau1_s = -5 is not physical"),
    ("ambient_temp_c=-300", "input ambient_temp_c = -300 degC is below absolute zero"),
    ("thermal.mcu=-280", "state thermal.mcu = -280 degC is below absolute zero"),
    ("battery.use_rc2=2", "parameter use_rc2 = 2 is not physical (it must be ≥ 0 and ≤ 1)"),
])
def test_nonsense_is_refused_before_the_run_naming_the_value(twin, mf, setting, named):
    before = len(read_log(twin))
    r = mf("sim", "what-if", DEV, "--set", setting, "--json", cwd=twin)
    assert r.code == 2 and named in r.err, r.err
    assert "Traceback" not in r.err
    assert len([e for e in read_log(twin) if e["type"] != "simulation.run_failed"]) >= before


def test_the_battery_alone_stops_at_its_cut_off_and_keeps_its_charge_in_range(twin, mf):
    r = mf("sim", "run", "battery-discharge", "--input", "load_current=12", "--duration", "1h", "--json", cwd=twin)
    assert r.code == 0, r.err
    res = {k: v[0] for k, v in r.json["results"].items()}
    assert 0 <= res["battery_discharge.state_of_charge"] <= 1               # not -4.45
    cut = res["battery_discharge.depleted_at"]
    assert 500 < cut < 700                                                 # 2.2 Ah at 12 A, to 3.3 V a cell
    curves = r.json["curves"]["values"]
    t = np.asarray(r.json["curves"]["t_s"])
    after = t > cut + 1
    assert np.all(np.asarray(curves["battery_discharge.cell_current"][0])[after] == 0)   # the cut-off opened
    soc = np.asarray(curves["battery_discharge.state_of_charge"][0])
    assert soc.min() >= 0 and np.all(np.diff(soc) <= 1e-12)


def test_a_drained_pack_clamps_its_state_of_charge_at_zero():
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, simulate

    m = load(MODELS / "battery-discharge.yaml")
    # no cut-off (a fit driven by measured current holds the events): the charge still stops at 0
    out = simulate(from_models([m]), Scenario(3600, 1.0, inputs={"load_current": 12.0}, hold_events=True))
    soc = out.curves["battery_discharge.state_of_charge"]
    assert soc.min() == 0.0 and out.results["battery_discharge.state_of_charge"] == 0.0


def _r0_at(temp_c: float) -> float:
    """The series resistance a cell shows at the first instant of a 10 A step (v1 = v2 = ds = 0)."""
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, simulate

    m = load(MODELS / "battery-discharge.yaml")
    sc = Scenario(10, 1.0, inputs={"load_current": 10.0, "cell_temperature": temp_c}, step=1.0)
    v = simulate(from_models([m]), sc).curves["battery_discharge.terminal_voltage"][0]
    return (4.20 - v / 3) / 10.0


def test_arrhenius_resistance_rises_three_to_five_fold_at_minus_20_C():
    r25, r0, rm20 = _r0_at(25), _r0_at(0), _r0_at(-20)
    assert r25 == pytest.approx(0.006, rel=1e-6)                       # the documented 25 °C value
    assert 3 <= rm20 / r25 <= 5                                        # real LiPo cells: 3-5x
    expected = math.exp(20000 / 8.314 * (1 / 253.15 - 1 / 298.15))     # Ea = 20 kJ/mol
    assert rm20 / r25 == pytest.approx(expected, rel=1e-6)
    assert r25 < r0 < rm20


def test_arrhenius_capacity_shrinks_in_the_cold():
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, simulate

    m = load(MODELS / "battery-discharge.yaml")
    c = from_models([m])

    def soc_after(temp_c):
        sc = Scenario(600, 1.0, inputs={"load_current": 2.0, "cell_temperature": temp_c}, hold_events=True)
        return simulate(c, sc).results["battery_discharge.state_of_charge"]

    used25, used_m20 = 1 - soc_after(25), 1 - soc_after(-20)
    q_ratio = used25 / used_m20
    assert q_ratio == pytest.approx(math.exp(-6000 / 8.314 * (1 / 253.15 - 1 / 298.15)), rel=1e-6)
    assert 0.6 < q_ratio < 0.7


# ---- mf sim register -------------------------------------------------------------------------------

def _composition(twin, name: str, body: str) -> str:
    path = twin / "models" / f"{name}.yaml"
    path.write_text(body)
    return f"models/{name}.yaml"


def _drone_text(**replace) -> str:
    text = (MODELS / "drone-flight.yaml").read_text()
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize("old, new, message", [
    ("battery.load_current: load_current_a * throttle.load_factor",
     "battery.load_curent: load_current_a * throttle.load_factor",
     "connections.battery.load_curent: battery (battery-discharge) has no input 'load_curent'"),
    ("thermal.battery_heat: battery.heat", "thermal.battery_heat: battery.terminal_voltage",
     "connections.thermal.battery_heat: 'battery.terminal_voltage' is"),
    ("battery.cell_temperature: {expr: thermal.battery_temperature, else: ambient_temp_c}",
     "battery.cell_temperature: {expr: battery.terminal_voltage, else: ambient_temp_c}",
     "connections.battery.cell_temperature: 'battery.terminal_voltage' is"),
    ("thermal.board_power: power_path_ohm * battery.cell_current**2", "thermal.board_power: battery.cell_current",
     "connections.thermal.board_power: 'battery.cell_current' is current, but thermal.board_power is in 'W'"),
    ("  - {name: load_current_a, unit: A, default: 12", "  - {name: load_current_a, unit: furlongs, default: 12",
     "connections.battery.load_current: 'load_current_a * throttle.load_factor' is length"),
    ("  battery: battery-discharge", "  battery: battery-dischrage", "members.battery: no model 'battery-dischrage'"),
    ("  battery: battery-discharge", "  battery: drone-flight", "members.battery: 'drone-flight' is a composition"),
    ("battery.load_current: load_current_a * throttle.load_factor",
     "battery.load_current: battery.terminal_voltage / power_path_ohm",
     "connections: algebraic loop: battery.load_current"),
    ("thermal.battery_heat: battery.heat", "thermal.battery_heat: battery.heat + bogus.x",
     "connections.thermal.battery_heat: unknown name 'bogus.x'"),
])
def test_register_refuses_a_broken_composition_naming_the_field(twin, mf, old, new, message):
    before = len(read_log(twin))
    path = _composition(twin, "broken", _drone_text(**{old: new}).replace("name: drone-flight", "name: broken-flight"))
    r = mf("sim", "register", path, cwd=twin)
    assert r.code == 2 and message in r.err, r.err
    assert f"{path}:" in r.err
    assert len(read_log(twin)) == before


def test_register_refuses_a_composition_of_itself(twin, mf):
    path = _composition(twin, "selfish", _drone_text(**{"  battery: battery-discharge": "  battery: selfish"})
                        .replace("name: drone-flight", "name: selfish"))
    r = mf("sim", "register", path, cwd=twin)
    assert r.code == 2 and "members.battery: 'selfish' is this composition itself" in r.err


@pytest.mark.parametrize("old, new, message", [
    ('rate: "(i_cell * r1 - v1) / tau1_s"', 'rate: "(i_cell * r1 - v1)"',
     "states.v1.rate: is"),
    ("  - {name: load_current, unit: A, default: 0}", "  - {name: load_current, unit: furlongs, default: 0}",
     "states.soc.rate: is current^-1 * length * time^-1, but a rate of a state in '1' is time^-1"),
    ("  v1: {unit: V, initial: 0.0,", "  v1: {unit: furlongz, initial: 0.0,", "unknown unit 'furlongz'"),
    ("expr: \"cells * (i_cell**2 * r0", "expr: \"cells * (i_cell * r0", "outputs.2.expr: 'i_cell * r0 + v1 ** 2 / r1' mixes"),
    ("  arrhenius_r: exp(r_activation_J_per_mol / gas_constant_J_per_mol_K * inv_t)",
     "  arrhenius_r: exp(r_activation_J_per_mol * inv_t)", "let.arrhenius_r:"),
])
def test_register_refuses_dimensionally_wrong_expressions(twin, mf, old, new, message):
    text = (MODELS / "battery-discharge.yaml").read_text()
    assert old in text, old
    (twin / "models" / "cell.yaml").write_text(text.replace(old, new).replace("name: battery-discharge", "name: cell"))
    r = mf("sim", "register", "models/cell.yaml", cwd=twin)
    assert r.code == 2 and message in r.err, r.err


def test_register_checks_members_in_the_same_command(twin, mf):
    cell = (MODELS / "battery-discharge.yaml").read_text().replace("name: battery-discharge", "name: cell-b")
    (twin / "models" / "cell-b.yaml").write_text(cell)
    path = _composition(twin, "pair", _drone_text(**{"  battery: battery-discharge": "  battery: cell-b"})
                        .replace("name: drone-flight", "name: pair"))
    r = mf("sim", "register", "models/cell-b.yaml", path, "--json", cwd=twin)
    assert r.code == 0, r.err


# ---- long runs and plots ---------------------------------------------------------------------------

def test_a_long_run_streams_its_curves_to_disk_and_matches_one_held_in_memory(monkeypatch):
    from metaforge.sim import curvefile
    from metaforge.sim.compose import from_composition
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, simulate

    limits = {"BOMItem:U1.max_temp": (85, "degC"), "BOMItem:U4.max_temp": (125, "degC"),
              "BOMItem:BT1.max_temp": (60, "degC")}.get
    composed = from_composition(load(MODELS / "drone-flight.yaml"), lambda name, _: load(MODELS / f"{name}.yaml"))
    sc = Scenario(7200, 2.0, inputs={"ambient_temp_c": 40.0, "load_current_a": 18.0})
    held = simulate(composed, sc, limits)
    monkeypatch.setattr(curvefile, "STREAM_BYTES", 0)
    streamed = simulate(composed, sc, limits)
    cf = streamed.curve_file
    assert cf is not None and streamed.curves == {} and len(cf) == len(held.t)
    for key, values in held.curves.items():
        assert np.allclose(cf.column(key), values, rtol=1e-12, atol=1e-12), key
    assert streamed.results == pytest.approx(held.results, nan_ok=True)
    rows = sum(len(t) for t, _ in cf.chunks(rows=1000))
    assert rows == len(held.t)


def test_a_ten_day_run_stays_small_in_memory_as_json(twin, mf):
    import resource
    import subprocess
    import sys

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = twin / "long.json"
    with open(out, "wb") as f:
        p = subprocess.run([sys.executable, "-m", "metaforge", "sim", "what-if", DEV, "--duration", "10d",
                            "--rate", "0.2Hz", "--json"], cwd=twin, stdout=f, stderr=subprocess.PIPE)
    assert p.returncode == 0, p.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    data = json.loads(out.read_text())
    assert len(data["curves"]["t_s"]) == 864000 * 0.2 + 1
    assert len(data["curves"]["values"]["battery.terminal_voltage"][0]) == len(data["curves"]["t_s"])
    assert data["results"]["flight_time"][0] > 0
    assert peak_mb < 500 or before / 1024 >= 500


def test_the_plot_shows_temperatures_against_ratings_and_voltage_against_cut_off(twin, mf):
    r = mf("sim", "what-if", DEV, "--set", "ambient_temp_c=45", "--set", "load_current_a=20", "--plot", "w.svg",
           cwd=twin)
    assert r.code == 0, r.err
    svg = (twin / "w.svg").read_text()
    for panel in ("battery.terminal_voltage", "thermal.mcu_temperature", "thermal.battery_temperature"):
        assert panel in svg
    assert "BOMItem:U1.max_temp 85" in svg and "BOMItem:BT1.max_temp 60" in svg
    assert "flight_time 9.9" in svg                       # 3 cells × 3.3 V: the cut-off line
    assert "time_to_throttle 80" in svg
    assert svg.count("stroke-dasharray") >= 4
    assert "mcu_power" not in svg                         # not the two constant inputs


# ---- calibration that may not land --------------------------------------------------------------

def test_calibration_refuses_a_fit_past_its_threshold_unless_forced(twin, mf):
    from test_sim_cli import _synthetic_discharge

    _synthetic_discharge(twin / "pack.csv", {"r0_ohm": 0.008, "r1_ohm": 0.006, "tau1_s": 20.0, "capacity_Ah": 2.0})
    rows = (twin / "pack.csv").read_text().splitlines()
    per_cell = [rows[0]] + [",".join(r.split(",")[:3] + [f"{float(r.split(',')[3]) / 3:.5f}"]) for r in rows[1:]]
    (twin / "cell.csv").write_text("\n".join(per_cell) + "\n")      # one cell's voltage: the pack model cannot fit it
    before = len(read_log(twin))
    fit = "r0_ohm,r1_ohm,tau1_s,capacity_Ah"
    r = mf("sim", "calibrate", "battery-discharge", "--data", "cell.csv", "--fit", fit, "--json", cwd=twin)
    assert r.code == 1
    out = r.json
    assert not out["landable"] and out["landed"] is None
    assert any("above the stated threshold 0.09" in x for x in out["refusals"])
    assert len(read_log(twin)) == before                               # nothing landed
    text = mf("sim", "calibrate", "battery-discharge", "--data", "cell.csv", "--fit", fit, cwd=twin)
    assert text.code == 1 and "refused: fit RMSE of terminal_voltage" in text.err and "--force" in text.err
    forced = mf("sim", "calibrate", "battery-discharge", "--data", "cell.csv", "--fit", fit, "--force", "--json", cwd=twin)
    assert forced.code == 0 and forced.json["landed"] is not None
    props = mf("show", "BehavioralModel:battery-discharge", "--json", cwd=twin).json["properties"]
    assert "FORCED past: fit RMSE of terminal_voltage" in props["calibration_source"]


def test_calibration_refuses_a_parameter_the_data_cannot_identify(twin, mf):
    from test_sim_cli import _synthetic_discharge

    # a cell with one R||C pair: a second pair has nothing to fit, and lands on its bound
    _synthetic_discharge(twin / "short.csv", {"r0_ohm": 0.008, "r1_ohm": 0.006, "tau1_s": 20.0, "capacity_Ah": 2.0,
                                              "use_rc2": 0.0, "use_diffusion": 0.0})
    r = mf("sim", "calibrate", "battery-discharge", "--data", "short.csv", "--fit",
           "r0_ohm,r1_ohm,tau1_s,r2_ohm,tau2_s", "--json", cwd=twin)
    out = r.json
    assert r.code == 1 and not out["landable"], out["fit"]
    assert any(x.startswith(("r2_ohm ", "tau2_s ")) for x in out["refusals"]), out["refusals"]
    named = {k: v for k, v in out["not_identified"].items() if k in ("r2_ohm", "tau2_s")}
    assert named and all("a rest of 10 min after a sustained discharge" in v for v in named.values())   # what identifies them


def test_a_parameter_the_data_never_excites_is_left_and_named(twin, mf):
    from test_sim_cli import _synthetic_discharge

    _synthetic_discharge(twin / "warm.csv", {"r0_ohm": 0.008, "r1_ohm": 0.006, "tau1_s": 20.0, "capacity_Ah": 2.0})
    # every sample at 25 °C: the activation energy changes nothing there
    r = mf("sim", "calibrate", "battery-discharge", "--data", "warm.csv", "--fit", "r0_ohm,r_activation_J_per_mol",
           "--dry-run", "--json", cwd=twin)
    out = r.json
    assert r.code == 0 and out["landable"], out
    assert "r_activation_J_per_mol" not in out["fit"]
    assert "does not reach what it shapes" in out["not_identified"]["r_activation_J_per_mol"]
    assert out["parameters"]["r_activation_J_per_mol"] == 20000
