"""The operational twin, first part: devices, the time-series store, file ingest, queries."""

import time
from pathlib import Path

import pytest

ULOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "px4" / "sample_log_small.ulg"
DEV = "FC-SN-20260301-002"


@pytest.fixture
def fleet(twin, mf):
    r = mf("device", "register", DEV, "--model", "DroneFlightController-v2.1", "--firmware", "v2.1.3",
           "--location", "test-lab-B", "--policy", "staleness_threshold_s=30", cwd=twin)
    assert r.code == 0, r.err
    return twin


def test_register_makes_a_device_instance_of_its_model(fleet, mf):
    d = mf("device", "show", DEV, "--json", cwd=fleet).json
    assert {"rel": "INSTANCE_OF", "id": "TwinModel:DroneFlightController-v2.1"} in d["out"]
    assert d["properties"]["state"]["sync_policy"] == {"staleness_threshold_s": 30}  # only what was set
    assert d["policy"]["staleness_threshold_s"] == 30 and d["origin"]["staleness_threshold_s"] == "device"
    assert d["policy"]["retention_days"] == 90 and d["origin"]["retention_days"] == "default"
    types = [e["type"] for e in mf("log", "--limit", "3", "--json", cwd=fleet).json]
    assert types[0] == "device.provisioned"
    names = [x["name"] for x in mf("device", "list", "--json", cwd=fleet).json]
    assert names == ["FC-SN-20260301-001", DEV]
    r = mf("device", "register", "X1", "--model", "NoSuchModel", cwd=fleet)
    assert r.code == 2 and "TwinModel:NoSuchModel does not exist" in r.err
    r = mf("device", "register", "X2", "--model", "DroneFlightController-v2.1", "--policy", "colour=red", cwd=fleet)
    assert r.code == 2 and "unknown sync policy setting 'colour'" in r.err


@pytest.mark.skipif(not ULOG.exists(), reason="the shared PX4 log is not beside this checkout")
def test_a_px4_flight_log_is_ingested_once(fleet, mf):
    r = mf("ingest", "telemetry", str(ULOG), "--device", DEV, "--json", cwd=fleet)
    assert r.code == 0, r.err
    out = r.json
    assert out["samples"] > 100_000 and out["metrics"] > 500 and out["rejected"] == 0
    assert out["new"] == out["samples"] and out["no_reading"] > 0  # PX4's NaN: counted, not stored as samples
    again = mf("ingest", "telemetry", str(ULOG), "--device", DEV, "--json", cwd=fleet).json
    assert again["new"] == 0 and again["duplicates"] == out["samples"]  # the same samples: dropped by key
    rows = mf("telemetry", "query", DEV, "battery_status.voltage_v", "--json", cwd=fleet).json
    assert len(rows) == 21 and 20 < rows[0]["value"] < 26  # a 6S pack in that flight
    assert rows[0]["ts"].startswith("2021-04-21T")  # boot time mapped to UTC by the GPS clock
    metrics = {t["metric"] for t in mf("device", "show", DEV, "--json", cwd=fleet).json["telemetry"]}
    assert {"battery_status.current_a", "sensor_combined.gyro_rad[0]", "battery_status_1.voltage_v"} <= metrics


@pytest.mark.parametrize("elsewhere", [False, True], ids=["read-here", "read-in-a-second-process"])
def test_csv_and_line_protocol_with_every_kind_of_bad_row(fleet, mf, monkeypatch, elsewhere):
    if elsewhere:  # large inputs are parsed by a child process: the same rejects must come back from it
        monkeypatch.setattr("metaforge.sync.ingest.PARALLEL_BYTES", 0)
    now = int(time.time())
    (fleet / "bench.csv").write_text(
        "ts,device,voltage_v,current_a\n"
        f"{now - 60},{DEV},11.9,3.1\n"
        f"{now - 59},{DEV},11.8,abc\n"            # non-numeric current
        f"{now + 10 ** 7},{DEV},11.7,3.0\n"       # far in the future
        f"{now - 58},FC-UNKNOWN,11.7,3.0\n"       # unknown device
        f"not-a-time,{DEV},11.6,2.9\n")
    r = mf("ingest", "telemetry", "bench.csv", "--json", cwd=fleet)
    assert r.code == 1  # something was rejected: a hook can tell
    out = r.json
    assert out["new"] == 3 and out["rejected"] == 4
    reasons = [d["reason"] for d in mf("telemetry", "dead-letters", "--json", cwd=fleet).json]
    assert any("current_a is not a number" in x for x in reasons)
    assert any("timestamp in the future" in x for x in reasons)
    assert any("unknown device FC-UNKNOWN" in x for x in reasons)
    assert any("bad timestamp" in x for x in reasons)
    (fleet / "bench.lp").write_text(
        f"power,device={DEV} rail_3v3_ma=116.5,rail_5v_ma=160i {now * 10 ** 9}\n"
        f"power,device={DEV} ok=t {now * 10 ** 9 + 1000}\n"
        "this is not line protocol\n"
        f"power,device={DEV} note=\"hot\" {now * 10 ** 9}\n")
    out = mf("ingest", "telemetry", "bench.lp", "--json", cwd=fleet).json
    assert out["new"] == 3 and out["rejected"] == 2
    rows = mf("telemetry", "query", DEV, "power.rail_5v_ma", "--json", cwd=fleet).json
    assert rows[0]["value"] == 160


def test_queries_aggregate_per_bucket_from_rollups_and_raw(fleet, mf):
    base = 1_700_000_400  # a whole ten minutes: 2023-11-14T22:20:00Z (buckets align to the epoch)
    lines = ["ts,temp_c"] + [f"{base + i},{20 + (i % 60) / 10}" for i in range(600)]  # 10 minutes at 1 Hz
    (fleet / "t.csv").write_text("\n".join(lines) + "\n")
    assert mf("ingest", "telemetry", "t.csv", "--device", DEV, cwd=fleet).code == 0
    q = lambda *a: mf("telemetry", "query", DEV, "temp_c", *a, "--json", cwd=fleet).json
    since, until = "2023-11-14T22:20:00Z", "2023-11-14T22:30:00Z"
    minutes = q("--since", since, "--until", until, "--every", "1m", "--agg", "mean")
    assert len(minutes) == 10 and minutes[0]["value"] == pytest.approx(22.95)
    assert [r["value"] for r in q("--since", since, "--until", until, "--every", "5m", "--agg", "max")] == [25.9, 25.9]
    assert q("--since", since, "--until", until, "--every", "10m", "--agg", "count")[0]["value"] == 600
    assert q("--since", since, "--until", until, "--every", "10m", "--agg", "last")[0]["value"] == 25.9
    tens = q("--since", since, "--until", until, "--every", "10s", "--agg", "min")  # not whole minutes: raw
    assert len(tens) == 60 and tens[1]["value"] == 21.0
    r = mf("telemetry", "query", DEV, "temp_c", "--every", "fortnight", cwd=fleet)
    assert r.code == 2 and "not a duration" in r.err


@pytest.mark.parametrize("elsewhere", [False, True], ids=["read-here", "read-in-a-second-process"])
def test_rollups_agree_with_the_raw_samples_after_overlapping_ingests(fleet, mf, monkeypatch, elsewhere):
    if elsewhere:
        monkeypatch.setattr("metaforge.sync.ingest.PARALLEL_BYTES", 0)
    base = 1_700_000_400
    first = ["ts,temp_c,rpm"] + [f"{base + i / 10},{20 + i % 13},{i % 7}" for i in range(0, 6000)]  # 10 min, 10 Hz
    second = ["ts,temp_c,rpm"] + [f"{base + i / 10},{20 + i % 13},{i % 7}" for i in range(3000, 9000)]  # half again
    (fleet / "a.csv").write_text("\n".join(first) + "\n")
    (fleet / "b.csv").write_text("\n".join(second) + "\n")
    out_a = mf("ingest", "telemetry", "a.csv", "--device", DEV, "--json", cwd=fleet).json
    out_b = mf("ingest", "telemetry", "b.csv", "--device", DEV, "--json", cwd=fleet).json
    assert out_a["new"] == 12_000 and out_b["new"] == 6_000 and out_b["duplicates"] == 6_000
    q = lambda *a: mf("telemetry", "query", DEV, "temp_c", *a, "--json", cwd=fleet).json
    since, until = "2023-11-14T22:20:00Z", "2023-11-14T22:35:00Z"
    from_rollups = q("--since", since, "--until", until, "--every", "1m", "--agg", "count")
    assert [r["value"] for r in from_rollups] == [600] * 15
    means = [r["value"] for r in q("--since", since, "--until", until, "--every", "1m", "--agg", "mean")]
    raw = [r["value"] for r in q("--since", since, "--until", until)]
    assert means == pytest.approx([sum(raw[i * 600:(i + 1) * 600]) / 600 for i in range(15)])
    last = q("--since", since, "--until", until, "--every", "5m", "--agg", "last")
    assert [r["value"] for r in last] == [raw[2999], raw[5999], raw[8999]]


def test_unknown_device_and_format_are_refused(fleet, mf):
    (fleet / "x.csv").write_text("ts,v\n1,2\n")
    r = mf("ingest", "telemetry", "x.csv", "--device", "NOPE", cwd=fleet)
    assert r.code == 2 and "unknown device NOPE" in r.err
    (fleet / "x.parquet").write_text("")
    r = mf("ingest", "telemetry", "x.parquet", "--device", DEV, cwd=fleet)
    assert r.code == 2 and "unknown telemetry format" in r.err


def test_retention_per_device_policy(fleet, mf):
    now = int(time.time())
    lines = ["ts,vbat"] + [f"{now - days * 86400},{11 + days / 100}" for days in (1, 5, 20, 100, 400)]
    (fleet / "old.csv").write_text("\n".join(lines) + "\n")
    assert mf("ingest", "telemetry", "old.csv", "--device", DEV, cwd=fleet).code == 0
    assert mf("mutate", "set", f"DeviceInstance:{DEV}",
              'state:={"sync_policy": {"retention_days": 10, "staleness_threshold_s": 30}, "health": "unknown"}',
              cwd=fleet).code == 0
    r = mf("telemetry", "prune", "--json", cwd=fleet)
    assert r.code == 0 and r.json[DEV] == 3  # 20, 100 and 400 days old: past 10 days
    assert len(mf("telemetry", "query", DEV, "vbat", "--json", cwd=fleet).json) == 2


def test_fleet_group_policy_and_sources_with_device_overrides(fleet, mf):
    now = time.time()
    for dev in ("G-1", "G-2"):
        r = mf("device", "register", dev, "--model", "DroneFlightController-v2.1", "--group", "evt-batch",
               "--source", "battery.voltage_v:V:10", cwd=fleet)
        assert r.code == 0, r.err
    assert mf("device", "policy", "--group", "evt-batch", "retention_days=7", "staleness_threshold_s=5",
              cwd=fleet).code == 0
    assert mf("device", "policy", "G-2", "retention_days=30", cwd=fleet).code == 0
    assert mf("device", "source", "--group", "evt-batch", "--add", "board.temp_c:degC:1", cwd=fleet).code == 0
    g1 = mf("device", "show", "G-1", "--json", cwd=fleet).json
    g2 = mf("device", "show", "G-2", "--json", cwd=fleet).json
    assert g1["group"] == "FleetGroup:evt-batch" and {"rel": "MEMBER_OF", "id": "FleetGroup:evt-batch"} in g1["out"]
    assert (g1["policy"]["retention_days"], g1["origin"]["retention_days"]) == (7, "FleetGroup:evt-batch")
    assert (g2["policy"]["retention_days"], g2["origin"]["retention_days"]) == (30, "device")
    assert g2["policy"]["staleness_threshold_s"] == 5  # from the group: the device did not set it
    assert [s["metric"] for s in g1["sources"]] == ["battery.voltage_v", "board.temp_c"]
    lines = ["ts,battery.voltage_v"] + [f"{now - days * 86400},{11 + days / 100}" for days in (1 / 86400, 10, 20, 40)]
    for dev in ("G-1", "G-2"):
        (fleet / f"{dev}.csv").write_text("\n".join(lines) + "\n")
        assert mf("ingest", "telemetry", f"{dev}.csv", "--device", dev, cwd=fleet).code == 0
    shown = {s["metric"]: s for s in mf("device", "show", "G-1", "--json", cwd=fleet).json["sources"]}
    assert shown["battery.voltage_v"]["status"] == "reporting" and shown["battery.voltage_v"]["samples"] == 4
    assert shown["board.temp_c"]["status"] == "never"
    pruned = mf("telemetry", "prune", "--json", cwd=fleet).json
    assert pruned["G-1"] == 3 and pruned["G-2"] == 1  # 7 days from the group; 30 days its own
    assert mf("device", "policy", "G-2", "--unset", "retention_days", cwd=fleet).code == 0
    assert mf("device", "show", "G-2", "--json", cwd=fleet).json["policy"]["retention_days"] == 7
    r = mf("device", "policy", "--group", "no-such-group", "retention_days=1", cwd=fleet)
    assert r.code == 2 and "unknown fleet group no-such-group" in r.err
    r = mf("device", "source", "G-1", "--add", "x:V:fast", cwd=fleet)
    assert r.code == 2 and "rate 'fast' is not a number" in r.err
    r = mf("device", "source", "G-1", "--remove", "nope", cwd=fleet)
    assert r.code == 2 and "has no telemetry source 'nope'" in r.err


def test_a_retired_device_keeps_its_data_and_refuses_new_samples(fleet, mf):
    now = int(time.time())
    (fleet / "a.csv").write_text(f"ts,v\n{now - 10},1\n")
    assert mf("ingest", "telemetry", "a.csv", "--device", DEV, cwd=fleet).code == 0
    r = mf("device", "retire", DEV, "-m", "board cracked in drop test", cwd=fleet)
    assert r.code == 0, r.err
    assert mf("log", "--limit", "1", "--json", cwd=fleet).json[0]["type"] == "device.decommissioned"
    assert mf("device", "show", DEV, "--json", cwd=fleet).json["properties"]["status"] == "decommissioned"
    (fleet / "b.csv").write_text(f"ts,v\n{now - 5},2\n")
    r = mf("ingest", "telemetry", "b.csv", "--device", DEV, cwd=fleet)
    assert r.code == 1 and "decommissioned" in r.err
    assert len(mf("telemetry", "query", DEV, "v", "--json", cwd=fleet).json) == 1


def test_a_batch_of_many_runs_with_repeats_stores_each_sample_once(tmp_path):
    """As an MQTT flush hands them: one run per message, a redelivered message inside the batch and
    one stored by an earlier batch. The first value of a sample stays; the rollups count each once."""
    from metaforge.store.telemetry import MINUTE_US, TelemetryStore

    s = TelemetryStore(tmp_path / "t.db")
    t0 = 28_333_334 * MINUTE_US  # a whole minute (November 2023), in µs
    assert s.write_runs([("D", "v", [t0, t0 + 10], [1.0, 2.0])]) == 2
    batch = [("D", "v", [t0 + 20], [3.0]), ("D", "v", [t0 + 10], [99.0]),  # stored before
             ("D", "v", [t0 + 30, t0 + 20], [4.0, 98.0]),  # its second sample repeats the first run
             ("D", "w", [t0 + 5], [7.0]), ("D", "v", [t0 + 40], [5.0])]
    assert s.write_runs(batch) == 4
    assert s.write_runs(batch) == 0
    raw = s.query("D", "v", None, None, None, "mean")
    assert raw == [(t0, 1.0), (t0 + 10, 2.0), (t0 + 20, 3.0), (t0 + 30, 4.0), (t0 + 40, 5.0)]
    per_minute = {agg: s.query("D", "v", t0, t0 + MINUTE_US, MINUTE_US, agg)
                  for agg in ("count", "sum", "min", "max", "last")}
    assert per_minute == {"count": [(t0, 5)], "sum": [(t0, 15.0)], "min": [(t0, 1.0)], "max": [(t0, 5.0)],
                          "last": [(t0, 5.0)]}
    assert s.query("D", "w", None, None, None, "mean") == [(t0 + 5, 7.0)]
    s.close()


# ---- issue 25: identity, no reading, every path through the detector, rollup edges --------------

PX4 = ULOG.parent
PYULOG_TEST_LOGS = ["sample.ulg", "sample_appended_multiple.ulg", "sample_log_small.ulg",
                    "sample_logging_tagged_and_default_params.ulg", "sample_px4_events.ulg"]


def _pyulog_counts(path: Path) -> tuple[dict, int]:
    """What pyulog itself reads, counted without mf: finite values per `topic[_instance].field`, and
    how many are not finite."""
    import numpy as np
    from pyulog import ULog

    counts, non_finite = {}, 0
    for data in ULog(str(path)).data_list:
        prefix = data.name if data.multi_id == 0 else f"{data.name}_{data.multi_id}"
        for field, values in data.data.items():
            if field == "timestamp" or field.startswith("_padding") or values.dtype.kind not in "iufb":
                continue
            finite = int(np.isfinite(values.astype(np.float64)).sum())
            non_finite += len(values) - finite
            if finite:
                counts[f"{prefix}.{field}"] = counts.get(f"{prefix}.{field}", 0) + finite
    return counts, non_finite


@pytest.mark.parametrize("name", PYULOG_TEST_LOGS)
def test_every_pyulog_test_log_is_stored_sample_for_sample(fleet, mf, name):
    """Per metric, the store holds exactly the finite samples pyulog reads: repeated timestamps
    (estimator innovations), multi-instance topics and PX4's event bursts included; ingesting it
    again adds nothing."""
    path = PX4 / name
    if not path.exists():
        pytest.fail(f"{path} is missing (pyulog's test logs, kept in /work/shared/data/px4)")
    expected, non_finite = _pyulog_counts(path)
    r = mf("ingest", "telemetry", str(path), "--device", DEV, "--json", cwd=fleet)
    assert r.code == 0, r.err
    assert r.json["new"] == r.json["samples"] == sum(expected.values())
    assert r.json["no_reading"] == non_finite
    held = {t["metric"]: t["samples"] for t in mf("device", "show", DEV, "--json", cwd=fleet).json["telemetry"]}
    assert held == expected
    again = mf("ingest", "telemetry", str(path), "--device", DEV, "--json", cwd=fleet).json
    assert again["new"] == 0 and again["duplicates"] == sum(expected.values())
    if name == "sample_px4_events.ulg":
        assert held["event.id"] == 38


@pytest.mark.parametrize("elsewhere", [False, True], ids=["read-here", "read-in-a-second-process"])
def test_non_finite_values_and_unreadable_files_never_crash_file_ingest(fleet, mf, monkeypatch, elsewhere):
    if elsewhere:
        monkeypatch.setattr("metaforge.sync.ingest.PARALLEL_BYTES", 0)
    now = int(time.time())
    (fleet / "nan.csv").write_text(f"ts,v,w\n{now - 3},1.0,nan\n{now - 2},inf,2.0\n{now - 1},-inf,NaN\n"
                                   f"{now - 1},4.0,5.0\n")  # a repeated time: both rows kept
    (fleet / "nan.lp").write_text(f"env,device={DEV} x=nan {(now - 3) * 10 ** 9}\n"
                                  f"env,device={DEV} x=1.5,y=inf {(now - 2) * 10 ** 9}\n"
                                  f"env,device={DEV} x=2.5 -99999999999999999999999999\n")  # no time at all
    (fleet / "not-a-log.ulg").write_text("this is not ULog\n")
    (fleet / "empty.csv").write_text("")
    r = mf("ingest", "telemetry", "nan.csv", "nan.lp", "not-a-log.ulg", "empty.csv", "--device", DEV, "--json",
           cwd=fleet)
    assert r.code == 2, r.err  # unreadable files named, exit 2: the others are stored all the same
    out = r.json
    assert out["rejected"] == 1  # the line with no usable time
    assert out["new"] == 5 and out["no_reading"] == 6, out  # v 1, 4; w 2, 5; env.x 1.5: the rest not finite
    assert any("not-a-log.ulg" in u and "ULog" in u for u in out["unreadable"]), out["unreadable"]
    assert any("empty.csv" in u and "no ts/time/timestamp column" in u for u in out["unreadable"])
    rows = mf("telemetry", "query", DEV, "v", "--json", cwd=fleet).json
    assert [x["value"] for x in rows] == [1.0, 4.0]
    reasons = [d["reason"] for d in mf("telemetry", "dead-letters", "--json", cwd=fleet).json]
    assert any("not-a-log.ulg: unreadable" in x for x in reasons)
    assert "nan.lp:3: timestamp out of range" in reasons
    said = mf("telemetry", "dead-letters", cwd=fleet).err
    assert f"{DEV} v 2" in said and f"{DEV} env.y 1" in said  # the no-reading counts


def test_file_ingest_goes_through_the_anomaly_detector(fleet, mf):
    """A bench CSV at 10 Hz with 3 s at 90 °C: critical at the first hot row's time, nominal again
    at the first cool one's, as events in the log."""
    cfg = fleet / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[[telemetry.limits]]\nmetric = "board_temp_c"\nunit = "degC"\n'
                   'max = "TwinModel:DroneFlightController-v2.1.max_temp"\nwarn_margin = 10\nhysteresis = 2\n')
    base = 1_700_000_400
    temps = [30.0] * 50 + [90.0] * 30 + [30.0] * 50
    (fleet / "soak.csv").write_text("ts,board_temp_c\n" + "".join(f"{base + i / 10:.1f},{t}\n" for i, t in enumerate(temps)))
    r = mf("ingest", "telemetry", "soak.csv", "--device", DEV, "--json", cwd=fleet)
    assert r.code == 0, r.err
    changes = [(c["to"], c["at"]) for c in r.json["state_changes"]]
    assert changes == [("nominal", "2023-11-14T22:20:00.000000Z"), ("critical", "2023-11-14T22:20:05.000000Z"),
                       ("nominal", "2023-11-14T22:20:08.000000Z")], changes
    events = mf("log", f"DeviceInstance:{DEV}", "--type", "device.state_updated", "--limit", "0", "--json", cwd=fleet).json
    assert sorted(e["payload"]["at"] for e in events) == sorted(at for _, at in changes)


def test_queries_take_whole_minutes_from_rollups_and_the_ends_raw(tmp_path):
    """Any range: every whole minute from the rollups, the partial minutes at both ends from raw
    rows; the answer equals an aggregate of the raw samples, for every aggregate."""
    import random

    from metaforge.store.telemetry import MINUTE_US, TelemetryStore

    s = TelemetryStore(tmp_path / "t.db")
    t0 = 28_333_334 * MINUTE_US
    rng = random.Random(7)
    stamps = sorted(t0 + rng.randrange(0, 30 * MINUTE_US) for _ in range(20_000))
    values = [rng.uniform(-5, 5) for _ in stamps]
    s.write_runs([("D", "v", stamps, values)])
    for _ in range(30):
        lo = t0 + rng.randrange(0, 10 * MINUTE_US)
        hi = lo + rng.randrange(MINUTE_US, 25 * MINUTE_US)
        for every in (MINUTE_US, 5 * MINUTE_US):
            buckets: dict[int, list] = {}
            for t, v in zip(stamps, values):
                if lo <= t < hi:
                    buckets.setdefault(t // every * every, []).append(v)
            for agg, f in (("mean", lambda b: sum(b) / len(b)), ("min", min), ("max", max), ("count", len),
                           ("sum", sum), ("last", lambda b: b[-1])):
                got = s.query("D", "v", lo, hi, every, agg)
                assert [b for b, _ in got] == sorted(buckets), (agg, lo, hi)
                assert [v for _, v in got] == pytest.approx([f(buckets[b]) for b in sorted(buckets)]), (agg, lo, hi)
    s.close()


def test_a_store_of_schema_1_is_migrated_once_keeping_its_samples(tmp_path):
    import sqlite3

    from metaforge.store.telemetry import TelemetryStore

    path = tmp_path / "telemetry.db"
    old = sqlite3.connect(path)  # the schema mf wrote before samples had a seq
    old.executescript("""
        CREATE TABLE devices (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL);
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, unit TEXT);
        CREATE TABLE samples (device INTEGER NOT NULL, metric INTEGER NOT NULL, ts INTEGER NOT NULL,
           value REAL NOT NULL, PRIMARY KEY (device, metric, ts)) WITHOUT ROWID;
        CREATE TABLE rollup_1m (device INTEGER NOT NULL, metric INTEGER NOT NULL, minute INTEGER NOT NULL,
           n INTEGER NOT NULL, total REAL NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, last_ts INTEGER NOT NULL,
           last REAL NOT NULL, PRIMARY KEY (device, metric, minute)) WITHOUT ROWID;
        CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,
           source TEXT NOT NULL, reason TEXT NOT NULL, payload TEXT NOT NULL);
        INSERT INTO devices VALUES (1, 'D');
        INSERT INTO metrics VALUES (1, 'v', NULL);
        INSERT INTO samples VALUES (1, 1, 60000000, 1.5), (1, 1, 60000010, 2.5);
        INSERT INTO rollup_1m VALUES (1, 1, 1, 2, 4.0, 1.5, 2.5, 60000010, 2.5);
    """)
    old.commit()
    old.close()
    s = TelemetryStore(path)
    assert s.query("D", "v", None, None, None, "mean") == [(60000000, 1.5), (60000010, 2.5)]
    assert s.write_runs([("D", "v", [60000010, 60000010, 60000020], [2.5, 9.0, 3.0])]) == 2  # the first is held
    assert s.query("D", "v", 0, 120_000_000, 60_000_000, "count") == [(60_000_000, 4)]
    s.close()
    assert TelemetryStore(path).query("D", "v", None, None, None, "mean")[-1] == (60000020, 3.0)


def test_retention_deletes_by_key_range_in_short_transactions_and_keeps_rollups_true(tmp_path):
    from metaforge.store.telemetry import MINUTE_US, TelemetryStore

    s = TelemetryStore(tmp_path / "t.db")
    t0 = 28_333_334 * MINUTE_US
    for metric in ("a", "b", "c"):
        s.write_runs([("D", metric, [t0 + i * 1_000_000 for i in range(600)], [float(i) for i in range(600)])])
    s.write_runs([("E", "a", [t0], [1.0])])  # another device: untouched
    cut = t0 + 4 * MINUTE_US + 30_000_000  # inside minute 4: the cut goes back to its start
    assert s.prune("D", cut, chunk=7) == 3 * 240
    for metric in ("a", "b", "c"):
        raw = s.query("D", metric, None, None, None, "mean")
        assert raw[0] == (t0 + 4 * MINUTE_US, 240.0) and len(raw) == 360
        assert s.query("D", metric, t0, t0 + 10 * MINUTE_US, MINUTE_US, "count") == [
            (t0 + m * MINUTE_US, 60) for m in range(4, 10)]
    assert s.prune("D", cut) == 0  # nothing that old any more: one seek per metric
    assert s.query("E", "a", None, None, None, "mean") == [(t0, 1.0)]
    s.close()


def test_limit_steps_equal_the_sample_by_sample_walk():
    """The vectorized walk of a limit with hysteresis gives exactly the changes a walk over every
    sample gives, for any signal, starting level and window."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from metaforge.sync.live import Limit

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.floats(-20, 120), max_size=300), st.integers(0, 2), st.integers(1, 64),
           st.sampled_from([(None, 50.0), (0.0, None), (0.0, 50.0)]))
    def check(values, start, window, bounds):
        limit = Limit("t", bounds[0], bounds[1], warn_margin=10, hysteresis=2)
        expected, level = [], start
        for i, v in enumerate(values):
            new = limit.level(v, level)
            if new != level:
                expected.append((i, new))
                level = new
        assert limit.steps(values, start, window) == expected

    check()


def test_a_flight_log_goes_through_the_anomaly_detector(fleet, mf):
    """A PX4 log's battery sagging under a limit (its own median voltage, so the flight crosses it):
    critical at the time of the first stored sample under it."""
    import statistics
    from datetime import datetime

    first = mf("ingest", "telemetry", str(ULOG), "--device", DEV, "--json", cwd=fleet).json
    assert first["state_changes"] == [{"device": DEV, "from": "unknown", "to": "nominal",
                                       "at": first["state_changes"][0]["at"]}]
    rows = mf("telemetry", "query", DEV, "battery_status.voltage_v", "--json", cwd=fleet).json
    limit = statistics.median(r["value"] for r in rows)
    cfg = fleet / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + f'\n[[telemetry.limits]]\nmetric = "battery_status.voltage_v"\nmin = {limit}\n')
    again = fleet / "again.ulg"  # the same flight as a new device: its samples are new
    again.write_bytes(ULOG.read_bytes())
    assert mf("device", "register", "FC-2", "--model", "DroneFlightController-v2.1", cwd=fleet).code == 0
    r = mf("ingest", "telemetry", str(again), "--device", "FC-2", "--json", cwd=fleet)
    assert r.code == 0, r.err
    critical = [c for c in r.json["state_changes"] if c["to"] == "critical"]
    low = next(x for x in mf("telemetry", "query", "FC-2", "battery_status.voltage_v", "--json", cwd=fleet).json
               if x["value"] < limit)
    when = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert critical and abs(when(critical[0]["at"]) - when(low["ts"])).total_seconds() < 2e-6, (critical, low)
    assert critical[0]["metric"] == "battery_status.voltage_v" and critical[0]["value"] < limit


@pytest.mark.parametrize("elsewhere", [False, True], ids=["read-here", "read-in-a-second-process"])
def test_repeated_times_across_the_chunks_of_a_file_are_all_kept_once(fleet, mf, monkeypatch, elsewhere):
    """A logger that writes three rows per time stamp: the file is read in chunks of 1,000 rows, so
    triples straddle chunks; every row is a sample, and ingesting the file again adds none."""
    monkeypatch.setattr("metaforge.sync.files.CHUNK_SAMPLES", 1_000)
    if elsewhere:
        monkeypatch.setattr("metaforge.sync.ingest.PARALLEL_BYTES", 0)
    base = 1_700_000_400
    (fleet / "triples.csv").write_text("ts,v\n" + "".join(f"{base + i // 3},{i}\n" for i in range(3_000)))
    first = mf("ingest", "telemetry", "triples.csv", "--device", DEV, "--json", cwd=fleet).json
    assert first["new"] == 3_000 and first["rejected"] == 0
    again = mf("ingest", "telemetry", "triples.csv", "--device", DEV, "--json", cwd=fleet).json
    assert again["new"] == 0 and again["duplicates"] == 3_000
    rows = mf("telemetry", "query", DEV, "v", "--json", cwd=fleet).json
    assert [r["value"] for r in rows] == [float(i) for i in range(3_000)]  # in file order within a time
