def test_show_gives_properties_versions_and_relationships(twin, mf):
    node = mf("show", "DesignElement:LDO-3V3", "--json", cwd=twin).json
    assert node["type"] == "DesignElement" and node["name"] == "LDO-3V3"
    assert node["properties"]["max_current"] == {"value": 600, "unit": "mA"}
    assert {"rel": "USES_COMPONENT", "id": "BOMItem:U4"} in node["out"]
    assert {"rel": "HAS_ELEMENT", "id": "DesignElement:power"} in node["in"]
    assert node["createdBy"] == "user:tester" and node["version"] >= 2
    text = mf("show", "DesignElement:LDO-3V3", cwd=twin).out
    assert "max_current" in text and "600mA" in text and "→ USES_COMPONENT BOMItem:U4" in text


def test_show_unknown(twin, mf):
    r = mf("show", "BOMItem:NOPE", cwd=twin)
    assert r.code == 2 and "unknown entity BOMItem:NOPE" in r.err


def test_query_by_type_and_where_with_units(twin, mf):
    ids = lambda *a: [n["id"] for n in mf("query", *a, "--json", cwd=twin).json]
    assert ids("--type", "Requirement") == ["Requirement:REQ-001", "Requirement:REQ-002", "Requirement:REQ-003",
                                            "Requirement:REQ-004"]
    # 90 mA and 25 mA are at least 0.02 A; 0.88 mA and 0.7 mA are not
    assert ids("--type", "BOMItem", "--where", "current>=0.02A", "--where", "rail=3V3") == ["BOMItem:U1", "BOMItem:U6"]
    assert ids("--type", "BOMItem", "--where", "current>=0.02A") == ["BOMItem:GPS1", "BOMItem:RX1", "BOMItem:U1",
                                                                     "BOMItem:U6"]
    assert ids("--type", "BOMItem", "--where", "rail=3V3", "--where", "current<1mA") == ["BOMItem:U2", "BOMItem:U3"]
    assert ids("--where", "max_temp<=60C") == ["BOMItem:BT1", "TwinModel:DroneFlightController-v2.1"]
    assert ids("--where", "references=M3") == ["BOMItem:M1"]
    assert ids("--where", "manufacturer~murata") == ["BOMItem:C1", "BOMItem:C7"]
    assert ids("--type", "BOMItem", "--where", "quantity>4") == ["BOMItem:C1", "BOMItem:C7"]
    assert ids("--where", "created_by=user:tester", "--limit", "2") == ids("--limit", "2")
    r = mf("query", "--where", "current>=5V", cwd=twin)
    assert r.code == 2 and "is a voltage, not a current" in r.err
    r = mf("query", "--where", "current", cwd=twin)
    assert r.code == 2 and "expected key=value" in r.err


def test_trace_goes_upstream_and_downstream(twin, mf):
    t = mf("trace", "Requirement:REQ-003", "--json", cwd=twin).json
    assert [c["id"] for c in t["downstream"]] == ["TestProcedure:EVT-PWR-01"]
    assert [(u["rel"], u["id"]) for u in t["upstream"]] == [("DERIVED_FROM", "Constraint:power-budget-3v3"),
                                                             ("SATISFIES", "DesignElement:LDO-3V3")]
    reached = {r["id"]: r["distance"] for r in t["reached"]}
    assert reached["DesignElement:power"] == 2
    assert reached["TwinModel:DroneFlightController-v2.1"] == 3
    assert reached["DeviceInstance:FC-SN-20260301-001"] == 4
    assert "BOMItem:U4" not in reached  # a sibling of the path, not upstream of the requirement
    shallow = mf("trace", "Requirement:REQ-003", "--depth", "1", "--direction", "up", "--json", cwd=twin).json
    assert "downstream" not in shallow
    assert {r["id"] for r in shallow["reached"]} == {"DesignElement:LDO-3V3", "Constraint:power-budget-3v3"}
    assert "VERIFIED_BY TestProcedure:EVT-PWR-01" in mf("trace", "Requirement:REQ-003", cwd=twin).out


def test_log_filters_and_order(twin, mf):
    mf("mutate", "set", "BOMItem:U1", "current=95mA", "-m", "measured at 168 MHz", cwd=twin)
    mf("mutate", "set", "BOMItem:U1", "current=97mA", cwd=twin)
    events = mf("log", "BOMItem:U1", "--json", cwd=twin).json
    assert [e["version"] for e in events] == [3, 2, 1]
    assert events[1]["msg"] == "measured at 168 MHz" and events[1]["hash"]
    oldest = mf("log", "BOMItem:U1", "--reverse", "--limit", "1", "--json", cwd=twin).json
    assert oldest[0]["type"] == "node.created"
    assert {e["type"] for e in mf("log", "--type", "edge.*", "--limit", "0", "--json", cwd=twin).json} == {"edge.created"}
    last_seq = events[0]["seq"]
    assert [e["seq"] for e in mf("log", "--since-seq", str(last_seq - 1), "--json", cwd=twin).json] == [last_seq]
    assert "measured at 168 MHz" in mf("log", "-n", "3", cwd=twin).out


def test_status(twin, mf):
    s = mf("status", "--json", cwd=twin).json
    assert s["semantic_version"] == s["last_event"]["seq"] > 60
    assert s["entities"] == sum(s["entities_by_type"].values())
    assert s["edges_by_relation"]["INSTANCE_OF"] == 1
    assert s["git"]["branch"] in ("main", "master")
    assert "semantic version" in mf("status", cwd=twin).out


def test_types_lists_the_schema_with_the_projects_additions(repo, mf):
    cfg = repo / ".metaforge" / "config.toml"
    cfg.write_text(cfg.read_text() + '\n[types.BOMItem]\nripple = "voltage"\n')
    info = mf("types", "--json", cwd=repo).json
    assert info["types"]["BOMItem"]["properties"]["current"] == "current"
    assert info["types"]["BOMItem"]["properties"]["ripple"] == "voltage"
    assert info["relations"]["INSTANCE_OF"] == {"from": ["DeviceInstance"], "to": ["TwinModel"]}
    assert "ripple" not in mf("types", "BOMItem", "--json").json["types"]["BOMItem"]["properties"]  # outside the repo
    r = mf("types", "Widget")
    assert r.code == 2 and "unknown entity type 'Widget'" in r.err


def test_the_index_binding_can_load_sqlite_extensions(twin):
    from metaforge.repo import Repo

    conn = Repo.find(twin).index.conn
    conn.enable_load_extension(True)  # the knowledge layer loads sqlite-vec through this
    conn.enable_load_extension(False)
