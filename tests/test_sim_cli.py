"""`mf sim` on a real repository: what-if (one device, from telemetry, fleet), sweep, run, compare
against ingested telemetry, calibration landing as a mutation, registering definitions."""

import time
from pathlib import Path

import numpy as np
import pytest

from conftest import read_log

DEV = "FC-SN-20260301-001"
MODELS = Path(__file__).resolve().parents[1] / "templates" / "drone-flight-controller" / "files" / "models"


def events_of(repo, kind):
    return [e for e in read_log(repo) if e["type"] == kind]


def test_what_if_answers_and_records_a_simulation_run(twin, mf):
    r = mf("sim", "what-if", DEV, "--set", "ambient_temp_c=40", "--duration", "1h", "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    assert out["columns"] == [DEV] and out["overrides"] == {"ambient_temp_c": "40"}
    assert 600 < out["results"]["flight_time"][0] < 750             # 2.2 Ah at 12 A, a bit more when warm
    assert out["results"]["thermal_margin"][0] > 0 and out["limited_by"]["thermal_margin"] == ["thermal.battery_temperature"]
    assert len(out["curves"]["t_s"]) == 36001 and out["curves"]["t_s"][1] == pytest.approx(0.1)   # 1 h at 10 Hz
    run = mf("show", out["run"], "--json", cwd=twin).json
    p = run["properties"]
    assert p["kind"] == "what-if" and p["result"] == "ok" and p["overrides"] == {"ambient_temp_c": "40"}
    assert p["models"]["battery-discharge"]["entity_version"] >= 1 and len(p["models"]["drone-flight"]["sha256"]) == 16
    assert p["semantic_version"] > 100 and p["outputs"]["results"]["flight_time"] == out["results"]["flight_time"][0]
    assert {"rel": "SIMULATES", "id": f"DeviceInstance:{DEV}"} in run["out"]
    kinds = [e["type"] for e in read_log(twin) if e["entity"] == out["run"]]
    assert kinds[0] == "node.created" and kinds[-1] == "simulation.completed"
    assert kinds.index("simulation.started") < kinds.index("simulation.completed")


def test_what_if_compare_and_unit_overrides(twin, mf):
    out = mf("sim", "what-if", DEV, "--set", "battery.capacity=3000mAh", "--compare", "--json", cwd=twin).json
    assert out["columns"] == ["baseline", "scenario"]
    base, scen = out["results"]["flight_time"]
    assert scen / base == pytest.approx(3000 / 2200, rel=0.03)   # mAh converted to the model's Ah
    hot = mf("sim", "what-if", DEV, "--set", "battery.capacity=3000mAh", "--set", "ambient_temp_c=45", "--compare",
             "--json", cwd=twin).json
    assert hot["results"]["flight_time"][1] > scen                # warmer: more capacity, less resistance
    assert hot["results"]["peak_battery_temperature"][1] > hot["results"]["peak_battery_temperature"][0] + 15
    r = mf("sim", "what-if", DEV, "--set", "battery.capacity=3A", cwd=twin)
    assert r.code == 2 and "is not in Ah or a unit like it" in r.err
    r = mf("sim", "what-if", DEV, "--set", "altitude=3000", cwd=twin)
    assert r.code == 2 and "not an input of drone-flight" in r.err


def test_what_if_rich_output_csv_and_svg(twin, mf):
    r = mf("sim", "what-if", DEV, "--set", "ambient_temp_c=50", "--set", "load_current_a=16", "--plot", "hot.svg",
           cwd=twin)
    assert r.code == 0, r.err
    assert "time to throttle" in r.out and "thermal margin" in r.out and "⣿" not in r.out[:0]
    assert any(0x2800 < ord(ch) < 0x2900 for ch in r.out)          # the braille chart
    assert "recorded as SimulationRun:what-if-" in r.err
    svg = (twin / "hot.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") >= 4
    r = mf("sim", "what-if", DEV, "--duration", "10min", "--rate", "1Hz", "--csv", cwd=twin)
    lines = r.out.splitlines()
    assert lines[0].startswith("t_s,") and "battery.terminal_voltage" in lines[0] and len(lines) == 602
    r = mf("sim", "what-if", DEV, "--plot", "x.png", cwd=twin)
    assert r.code in (0, 2) and (r.code == 0 or "matplotlib" in r.err)


def test_what_if_starts_from_the_latest_telemetry(twin, mf):
    now = int(time.time())
    (twin / "t.csv").write_text("ts,board_temp_c,battery_status.remaining\n"
                                f"{now - 120},30,0.95\n{now - 60},41.5,0.5\n")
    assert mf("ingest", "telemetry", "t.csv", "--device", DEV, cwd=twin).code == 0
    out = mf("sim", "what-if", DEV, "--json", cwd=twin).json
    full = mf("sim", "what-if", DEV, "--set", "battery.soc=1", "--set", "thermal.board=20", "--json", cwd=twin).json
    assert {s["target"] for s in out["start"]} == {"thermal.board", "thermal.mcu", "thermal.ldo", "battery.soc"}
    assert out["results"]["flight_time"][0] < 0.6 * full["results"]["flight_time"][0]   # half a pack left
    v = out["curves"]["values"]["thermal.board_temperature"][0]
    assert v[0] == pytest.approx(41.5) and full["curves"]["values"]["thermal.board_temperature"][0][0] == 20


def test_fleet_what_if_runs_every_device_at_once(twin, mf):
    for i in range(2, 6):
        assert mf("device", "register", f"FC-SN-20260301-00{i}", "--model", "DroneFlightController-v2.1", cwd=twin).code == 0
    now = int(time.time())
    # one device with a board temperature, the others without: their thermal start is the model's own
    (twin / "t.csv").write_text(f"ts,device,battery_status.remaining,board_temp_c\n{now - 5},FC-SN-20260301-003,0.4,30\n")
    assert mf("ingest", "telemetry", "t.csv", cwd=twin).code == 0
    r = mf("sim", "what-if", "--model", "DroneFlightController-v2.1", "--set", "ambient_temp_c=35", "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    assert len(out["columns"]) == 5 and "curves" not in out
    flights = dict(zip(out["columns"], out["results"]["flight_time"]))
    assert flights["FC-SN-20260301-003"] < 0.5 * flights["FC-SN-20260301-002"]
    assert flights["FC-SN-20260301-002"] == pytest.approx(flights[DEV])
    stats = out["statistics"]["flight_time"]
    assert stats["n"] == 5 and stats["min"] == pytest.approx(flights["FC-SN-20260301-003"], abs=1e-3)
    r = mf("sim", "what-if", "--model", "DroneFlightController-v2.1", "--csv", cwd=twin)
    assert r.out.splitlines()[0].startswith("device,flight_time") and len(r.out.splitlines()) == 6
    run = mf("show", out["run"], "--json", cwd=twin).json
    assert run["properties"]["settings"]["device_count"] == 5


def test_sweep_gives_a_table_over_a_range(twin, mf):
    r = mf("sim", "sweep", DEV, "--set", "ambient_temp_c=0..50:25", "--set", "load_current_a=20", "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    assert out["swept"] == {"ambient_temp_c": [0.0, 25.0, 50.0]}
    peaks = out["results"]["peak_mcu_temperature"]
    assert peaks[0] < peaks[1] < peaks[2]
    throttle = out["results"]["time_to_throttle"]
    assert throttle[0] is None and throttle[2] is not None        # only the hot case throttles
    r = mf("sim", "sweep", DEV, "--set", "ambient_temp_c=0..50:10", "--csv", cwd=twin)
    assert len(r.out.splitlines()) == 7 and r.out.startswith("point,ambient_temp_c,flight_time")
    r = mf("sim", "sweep", DEV, "--set", "ambient_temp_c=20", cwd=twin)
    assert r.code == 2 and "a sweep needs a range" in r.err


def test_run_a_model_with_a_measured_profile_and_a_step_input(twin, mf):
    t = np.arange(0, 601.0)
    amps = np.where((t // 60) % 2 == 0, 20.0, 2.0)
    (twin / "profile.csv").write_text("t,load_current\n" + "".join(f"{a},{b}\n" for a, b in zip(t, amps)))
    r = mf("sim", "run", "battery-discharge", "--input", "load_current=profile.csv", "--input", "cell_temperature=25",
           "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    assert out["duration_s"] == 600 and out["step_s"] <= 1.0
    used = np.trapezoid(amps, t) / 3600 / 2.2
    assert out["results"]["battery_discharge.state_of_charge"][0] == pytest.approx(1 - used, abs=2e-3)
    r = mf("sim", "run", "motor-response", "--input", "throttle=0.5", "--duration", "0.2s", "--rate", "1000Hz", "--json", cwd=twin)
    rpm = r.json["curves"]["values"]["motor_response.rpm"][0]
    assert rpm[35] == pytest.approx(12000 * (1 - np.exp(-1)), rel=0.01)
    r = mf("sim", "run", "battery-discharge", "--duration", "1h", "--input", "load_current=150", "--json", cwd=twin)
    assert r.json["out_of_range"][0]["input"] == "battery_discharge.load_current"


def _flight_telemetry(twin, mf, sag: float = 0.0):
    """1 h of telemetry of a real flight: current, voltage, board and ambient temperature at 1 Hz,
    from the models themselves (plus noise and `sag` volts of a worn pack)."""
    from metaforge.sim.compose import from_composition
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, Series, simulate

    comp = from_composition(load(MODELS / "drone-flight.yaml"), lambda name, _: load(MODELS / f"{name}.yaml"))
    t = np.arange(0, 480.0)
    amps = 11 + 3 * np.sin(t / 17) + np.where((t // 40) % 3 == 0, 6, 0)
    sc = Scenario(t[-1], 1.0, inputs={"ambient_temp_c": 28.0, "load_current_a": Series(t, amps)}, step=1.0)
    out = simulate(comp, sc, lambda ref: (85, "degC"))
    rng = np.random.default_rng(3)
    at = lambda key: np.interp(t, out.t, out.curves[key])
    volts = at("battery.terminal_voltage") - sag + rng.normal(0, 0.01, len(t))
    board = at("thermal.board_temperature") + rng.normal(0, 0.2, len(t))
    now = int(time.time()) - 600
    rows = ["ts,battery_status.current_a,battery_status.voltage_v,board_temp_c,ambient_temp_c,battery_status.remaining"]
    rows += [f"{now + int(x)},{a:.3f},{v:.4f},{b:.2f},28.0,{1.0 if x == 0 else ''}" for x, a, v, b in zip(t, amps, volts, board)]
    (twin / "flight.csv").write_text("\n".join(rows) + "\n")
    r = mf("ingest", "telemetry", "flight.csv", "--device", DEV, cwd=twin)
    assert r.code in (0, 1), r.err


def test_compare_prediction_with_actual_telemetry(twin, mf):
    _flight_telemetry(twin, mf)
    r = mf("sim", "compare", DEV, "--since", "1h", "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    v = out["metrics"]["battery.terminal_voltage"]
    assert v["n"] == 480 and v["rmse"] < 0.03 and not v["diverged"] and v["threshold"] == 0.25
    assert out["metrics"]["thermal.board_temperature"]["rmse"] < 0.5
    run = mf("show", out["run"], "--json", cwd=twin).json["properties"]
    assert run["kind"] == "compare" and run["result"] == "ok" and run["metrics"]["battery.terminal_voltage"]["n"] == 480
    assert not events_of(twin, "simulation.divergence_detected")


def test_compare_plots_and_what_if_leaves_members_out(twin, mf):
    _flight_telemetry(twin, mf)
    r = mf("sim", "compare", DEV, "--since", "1h", "--plot", "cmp.svg", cwd=twin)
    assert r.code == 0 and "battery.terminal_voltage" in r.out and "ok" in r.out
    assert (twin / "cmp.svg").read_text().count("<polyline") == 4
    out = mf("sim", "what-if", DEV, "--models", "battery-discharge,thermal-propagation", "--set", "ambient_temp_c=50",
             "--set", "load_current_a=22", "--json", cwd=twin).json
    assert "time_to_throttle" not in out["results"]              # no throttle member: nothing gates the load
    assert out["results"]["peak_mcu_temperature"][0] > 85
    assert {r["input"] for r in out["out_of_range"]} == {"battery.cell_temperature"}
    r = mf("sim", "what-if", DEV, "--models", "propeller", cwd=twin)
    assert r.code == 2 and "not a member of drone-flight" in r.err


def test_a_worn_pack_diverges_and_raises_an_alert(twin, mf):
    _flight_telemetry(twin, mf, sag=0.4)
    r = mf("sim", "compare", DEV, "--since", "1h", "--json", cwd=twin)
    assert r.code == 1                     # a finding: scripts and CI can act on it
    out = r.json
    assert out["diverged"] == ["battery.terminal_voltage"]
    assert out["metrics"]["battery.terminal_voltage"]["bias"] == pytest.approx(0.4, abs=0.03)
    alerts = events_of(twin, "simulation.divergence_detected")
    assert len(alerts) == 1 and alerts[0]["entity"] == f"DeviceInstance:{DEV}"
    assert alerts[0]["payload"]["run"] == out["run"] and alerts[0]["payload"]["threshold"] == 0.25
    assert "CAPA" in alerts[0]["payload"]["action"]
    assert mf("show", out["run"], "--json", cwd=twin).json["properties"]["result"] == "diverged"
    assert mf("sim", "compare", "FC-SN-20260301-001", "--since", "1s", cwd=twin).code == 2   # no samples there


def _synthetic_discharge(path: Path, true: dict, noise: float = 0.002):
    from metaforge.sim.compose import from_models
    from metaforge.sim.definition import load
    from metaforge.sim.engine import Scenario, Series, simulate

    t = np.arange(0, 1100.0)
    amps = np.where((t // 30) % 2 == 0, 9.0, 0.5)
    amps[(t > 600) & (t < 640)] = 25.0
    sc = Scenario(t[-1], 1.0, inputs={"load_current": Series(t, amps), "cell_temperature": 25.0},
                  parameters={"battery_discharge": true}, curves=False, step=1.0,
                  record={"battery_discharge.terminal_voltage"})
    out = simulate(from_models([load(MODELS / "battery-discharge.yaml")]), sc)
    v = np.interp(t, out.trace_t, out.traces["battery_discharge.terminal_voltage"])
    v = v + np.random.default_rng(11).normal(0, noise, len(v))
    path.write_text("t,load_current,cell_temperature,terminal_voltage\n"
                    + "".join(f"{a},{b},25,{c:.5f}\n" for a, b, c in zip(t, amps, v)))


def test_calibration_recovers_known_parameters_and_lands_them(twin, mf):
    true = {"r0_ohm": 0.008, "r1_ohm": 0.006, "tau1_s": 20.0, "capacity_Ah": 2.0}
    _synthetic_discharge(twin / "bench.csv", true)
    assert mf("mutate", "add", "TestExecution:EVT-PWR-01-run3", "result=pass", "data_path=bench.csv", cwd=twin).code == 0
    r = mf("sim", "calibrate", "battery-discharge", "--execution", "TestExecution:EVT-PWR-01-run3",
           "--fit", ",".join(true), "--json", cwd=twin)
    assert r.code == 0, r.err
    out = r.json
    for key, value in true.items():
        assert out["fit"][key]["value"] == pytest.approx(value, rel=0.02)     # within 2 %
        lo, hi = out["fit"][key]["ci95"]
        assert lo < value < hi or abs(out["fit"][key]["value"] / value - 1) < 0.002
    assert out["rmse"]["terminal_voltage"] == pytest.approx(0.002, rel=0.2)   # the noise, no more
    model = mf("show", "BehavioralModel:battery-discharge", "--json", cwd=twin).json
    p = model["properties"]
    assert p["parameters"]["r0_ohm"] == pytest.approx(0.008, rel=0.02) and p["parameters"]["cells"] == 3
    assert "bench.csv (TestExecution:EVT-PWR-01-run3)" in p["calibration_source"] and "RMSE" in p["calibration_source"]
    rels = {(e["rel"], e["id"].split(":")[0]) for e in model["out"]}
    assert ("CALIBRATED_BY", "TestExecution") in rels and ("CALIBRATED_BY", "SimulationRun") in rels
    after = mf("sim", "what-if", DEV, "--json", cwd=twin).json
    run = mf("show", after["run"], "--json", cwd=twin).json["properties"]
    assert run["models"]["battery-discharge"]["entity_version"] > 1       # the calibrated version ran
    assert after["results"]["flight_time"][0] < 0.95 * 640                # 2.0 Ah, more resistance


def test_calibration_refuses_data_without_the_model_outputs(twin, mf):
    (twin / "x.csv").write_text("t,load_current\n0,1\n1,1\n2,1\n")
    r = mf("sim", "calibrate", "battery-discharge", "--data", "x.csv", cwd=twin)
    assert r.code == 2 and "none of battery-discharge's outputs" in r.err


def test_register_refuses_a_malformed_definition_and_lands_a_good_one(twin, mf):
    before = len(read_log(twin))
    text = (MODELS / "thermal-propagation.yaml").read_text()
    text = text[:text.index("calibrate:")] + "calibration_source: none\n"
    bad = text.replace("name: thermal-propagation", "name: pcb-thermal").replace("  board-ambient: 28.0", "  board-outside: 28.0")
    (twin / "models" / "pcb.yaml").write_text(bad)
    r = mf("sim", "register", "models/pcb.yaml", cwd=twin)
    assert r.code == 2 and "models/pcb.yaml: parameters.resistances_K_per_W.board-outside:" in r.err
    assert len(read_log(twin)) == before
    (twin / "models" / "pcb.yaml").write_text(bad.replace("board-outside", "board-ambient"))
    r = mf("sim", "register", "models/pcb.yaml", "--json", cwd=twin)
    assert r.code == 0, r.err
    node = mf("show", "BehavioralModel:pcb-thermal", "--json", cwd=twin).json["properties"]
    assert node["model_type"] == "thermal-rc" and node["definition"] == "models/pcb.yaml"
    listed = {m["name"]: m for m in mf("sim", "models", "--json", cwd=twin).json}
    assert listed["pcb-thermal"]["ok"] and listed["drone-flight"]["model_type"] == "composition"
    r = mf("sim", "run", "pcb-thermal", "--input", "board_power=2", "--duration", "30min", "--json", cwd=twin)
    assert r.json["results"]["pcb_thermal.board_temperature"][0] > 25
