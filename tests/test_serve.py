"""`mf serve` as a real process, through real HTTP and WebSocket clients: every endpoint and its
errors, writes and their refusals, the token, Host and Origin checks, path traversal, signed URLs,
and live pushes from a separate `mf ingest` process and a separate `mf mutate`."""

import json
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from serve_support import (DEVICE, DOME, PLATE, SIM_RUN, Ingest, Mosquitto, Server, make_twin, mf_env, publish,
                           publisher)

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def model_twin(tmp_path_factory):
    return make_twin(tmp_path_factory.mktemp("serve") / "drone")


@pytest.fixture(scope="module")
def server(model_twin):
    s = Server(model_twin)
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False and body["error"]["kind"] == kind, body
    return body["error"]["message"]


# ---- the read side -------------------------------------------------------------------------------------

def test_status_and_entities(client):
    status = ok(client.get("/api/v1/status"))
    assert status["entities_by_type"]["BOMItem"] == 13 and status["semantic_version"] > 116
    page = ok(client.get("/api/v1/entities", params={"type": "BOMItem", "where": ["rail=3V3", "current>=20mA"]}))
    assert [e["id"] for e in page["entities"]] == ["BOMItem:U1", "BOMItem:U6"] and page["more"] is False
    first = ok(client.get("/api/v1/entities", params={"type": "BOMItem", "limit": 2}))
    assert first["count"] == 2 and first["more"] is True
    one = ok(client.get("/api/v1/entities/BOMItem:U1"))
    assert one["properties"]["mpn"] == "STM32F405RGT6" and one["version"] == 1
    assert {"rel": "USES_COMPONENT", "id": "DesignElement:MCU"} in one["in"]
    part = ok(client.get("/api/v1/entities/" + quote("DesignElement:enclosure/M3_screw#2")))
    assert part["properties"]["kind"] == "part"


def test_trace_events_and_constraints(client):
    trace = ok(client.get("/api/v1/trace/Requirement:REQ-003", params={"depth": 3}))
    reached = {r["id"] for r in trace["reached"]}
    assert {"DesignElement:LDO-3V3", "TestProcedure:EVT-PWR-01", "Constraint:power-budget-3v3"} <= reached
    down = ok(client.get("/api/v1/trace/Requirement:REQ-003", params={"direction": "down"}))
    assert "upstream" not in down and down["downstream"][0]["id"] == "TestProcedure:EVT-PWR-01"
    events = ok(client.get("/api/v1/events", params={"since_seq": 10, "limit": 5}))
    assert [e["seq"] for e in events["events"]] == [11, 12, 13, 14, 15] and events["more"] and events["last_seq"] == 15
    created = ok(client.get("/api/v1/events", params={"type": "edge.*", "entity": DOME}))["events"]
    assert [e["payload"] for e in created] == [{"rel": "USES_COMPONENT", "to": "BOMItem:GPS1"}]
    verdicts = ok(client.get("/api/v1/constraints", params={"entity": "BOMItem:U1"}))["verdicts"]
    by_id = {v["constraint"]: v for v in verdicts}
    assert by_id["Constraint:thermal-mcu"]["linked"] is True and by_id["Constraint:thermal-mcu"]["status"] == "pass"
    assert "Constraint:power-budget-3v3" in by_id  # reads U1 through its sum over 3V3 parts
    assert "Constraint:esc-current" not in by_id
    everything = ok(client.get("/api/v1/constraints"))["verdicts"]
    assert len(everything) == 10


def test_model_manifest_and_its_glb(client, model_twin):
    projects = ok(client.get("/api/v1/projects"))
    assert projects == [{"project_id": "DroneFlightController-v2.1", "twin_model": "TwinModel:DroneFlightController-v2.1",
                         "models": ["mech__enclosure.step"]}]
    manifest = ok(client.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"))
    assert manifest["artifact_id"] == "Artifact:mech/enclosure.step" and manifest["last_updated"]
    assert manifest["mesh_to_node_map"]["enclosure/chassis_plate"] == PLATE
    tree = manifest["component_tree"]
    assert tree["id"] == "DesignElement:enclosure" and tree["node_type"] == "assembly"
    assert {"id", "name", "mesh_name", "children", "node_type"} == set(tree["children"][0])
    assert manifest["glb_url"].startswith("/api/v1/artifacts/mech__enclosure.step.glb?expires=")
    glb = client.get(manifest["glb_url"])
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content == (model_twin / ".metaforge/artifacts/mech__enclosure.step.glb").read_bytes()
    by_key = ok(client.get("/api/v1/projects/mech__enclosure.step/model-manifest"))
    assert by_key["component_tree"] == tree


def test_bom_of_a_part_and_of_an_assembly(client):
    dome = ok(client.get("/api/v1/bom/items/" + DOME))
    assert [i["id"] for i in dome["items"]] == ["BOMItem:GPS1"] and dome["items"][0]["used_by"] == [DOME]
    assert dome["cost"] == {"USD": 24.9}
    power = ok(client.get("/api/v1/bom/items/DesignElement:power"))
    assert {i["id"] for i in power["items"]} == {"BOMItem:BT1", "BOMItem:C1", "BOMItem:U4", "BOMItem:U5"}
    assert power["cost"]["USD"] == pytest.approx(29.99 + 6 * 0.05 + 0.41 + 0.86)
    whole = ok(client.get("/api/v1/bom/items/DesignElement:enclosure"))
    assert [i["id"] for i in whole["items"]] == ["BOMItem:GPS1"]  # through the mast sub-assembly
    item = ok(client.get("/api/v1/bom/items/BOMItem:M1"))
    assert item["items"][0]["properties"]["quantity"] == 4 and item["items"][0]["used_by"] == ["DesignElement:propulsion"]


def test_devices_telemetry_and_simulations(client, model_twin):
    csv = model_twin / "bench.csv"
    csv.write_text("ts,board_temp_c,vbat\n" + "".join(
        f"2026-03-01T10:{m:02d}:{s:02d}Z,{30 + m + s / 60:.3f},{12.6 - m * 0.01:.3f}\n" for m in range(3) for s in range(0, 60, 10)))
    p = subprocess.run([sys.executable, "-m", "metaforge", "ingest", "telemetry", "bench.csv", "--device", DEVICE],
                       cwd=model_twin, env=mf_env(), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    devices = ok(client.get("/api/v1/devices"))["devices"]
    assert [d["id"] for d in devices] == [f"DeviceInstance:{DEVICE}"]
    device = ok(client.get(f"/api/v1/devices/{DEVICE}"))
    assert device["policy"]["staleness_threshold_s"] == 60.0 and device["origin"]["mode"] == "default"
    assert {t["metric"]: t["samples"] for t in device["telemetry"]} == {"board_temp_c": 18, "vbat": 18}
    held = ok(client.get(f"/api/v1/devices/{DEVICE}/telemetry"))
    assert [m["metric"] for m in held["metrics"]] == ["board_temp_c", "vbat"]
    raw = ok(client.get(f"/api/v1/devices/{DEVICE}/telemetry", params={
        "metric": "board_temp_c", "since": "2026-03-01T10:01:00Z", "until": "2026-03-01T10:02:00Z"}))
    assert len(raw["points"]) == 6 and raw["points"][0] == {"ts": "2026-03-01T10:01:00Z", "t": 1772359260.0, "value": 31.0}
    per_minute = ok(client.get(f"/api/v1/devices/{DEVICE}/telemetry", params={
        "metric": "board_temp_c", "every": "1m", "agg": "max", "since": "2026-03-01T10:00:00Z"}))
    assert [p["value"] for p in per_minute["points"]] == [30.833, 31.833, 32.833] and per_minute["agg"] == "max"
    cut = ok(client.get(f"/api/v1/devices/{DEVICE}/telemetry", params={"metric": "vbat", "limit": 5}))
    assert len(cut["points"]) == 5 and cut["truncated"] is True
    runs = ok(client.get("/api/v1/simulations", params={"device": DEVICE}))
    assert [r["id"] for r in runs["runs"]] == [SIM_RUN]
    assert runs["runs"][0]["properties"]["outputs"]["curves"]["t_s"] == [0, 60, 120, 180]
    assert ok(client.get("/api/v1/simulations"))["runs"][0]["id"] == SIM_RUN


def test_unknown_ids_are_404_with_a_clear_json_error(client, server):
    for path, words in [
        ("/api/v1/entities/BOMItem:NOPE", "unknown entity BOMItem:NOPE"),
        ("/api/v1/entities/nonsense", "unknown entity nonsense"),
        ("/api/v1/trace/Requirement:REQ-999", "unknown entity Requirement:REQ-999"),
        ("/api/v1/bom/items/DesignElement:nope", "unknown entity DesignElement:nope"),
        ("/api/v1/devices/FC-NOPE", "unknown entity DeviceInstance:FC-NOPE"),
        ("/api/v1/devices/FC-NOPE/telemetry?metric=x", "unknown entity DeviceInstance:FC-NOPE"),
        (f"/api/v1/devices/{DEVICE}/telemetry?metric=no_such_metric", f"device {DEVICE} has no metric no_such_metric"),
        ("/api/v1/simulations?device=FC-NOPE", "unknown entity DeviceInstance:FC-NOPE"),
        ("/api/v1/constraints?entity=BOMItem:NOPE", "unknown entity BOMItem:NOPE"),
        ("/api/v1/projects/NoSuchModel/model-manifest", "unknown project NoSuchModel"),
        ("/api/v1/nothing-here", "nothing at /api/v1/nothing-here"),
    ]:
        assert words in error(client.get(path), 404, "not_found"), path
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws/devices/FC-NOPE").close()
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body)["error"]["message"] == "unknown entity DeviceInstance:FC-NOPE"


def test_bad_parameters_are_400(client):
    assert "--where 'rail'" in error(client.get("/api/v1/entities", params={"where": "rail"}), 400, "bad_input")
    assert "unknown entity type 'Widget'" in error(client.get("/api/v1/entities", params={"type": "Widget"}), 400,
                                                   "bad_input")
    assert "depth" in error(client.get("/api/v1/trace/BOMItem:U1", params={"depth": "deep"}), 400, "bad_input")
    assert "direction" in error(client.get("/api/v1/trace/BOMItem:U1", params={"direction": "sideways"}), 400,
                                "bad_input")
    assert "'yesterday' is not a time" in error(client.get(f"/api/v1/devices/{DEVICE}/telemetry", params={
        "metric": "vbat", "since": "yesterday"}), 400, "bad_input")
    assert "'fortnight' is not a duration" in error(client.get(f"/api/v1/devices/{DEVICE}/telemetry", params={
        "metric": "vbat", "every": "fortnight"}), 400, "bad_input")
    assert "limit" in error(client.get("/api/v1/events", params={"limit": 0}), 400, "bad_input")


def test_openapi_document_and_docs(client):
    doc = ok(client.get("/openapi.json"))
    paths = set(doc["paths"])
    assert {"/api/v1/entities", "/api/v1/entities/{entity_id}", "/api/v1/trace/{entity_id}", "/api/v1/events",
            "/api/v1/status", "/api/v1/projects/{project_id}/model-manifest", "/api/v1/bom/items/{node_id}",
            "/api/v1/devices", "/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}/telemetry",
            "/api/v1/simulations", "/api/v1/changes"} <= paths
    assert client.get("/docs").status_code == 200


# ---- writes -----------------------------------------------------------------------------------------------

def test_a_read_only_server_refuses_writes(client):
    for method, path, body in [("POST", "/api/v1/changes", {"changes": [{"set": "BOMItem:U1", "props": {"notes": "x"}}]}),
                               ("POST", "/api/v1/entities", {"id": "BOMItem:C99"}),
                               ("PATCH", "/api/v1/entities/BOMItem:U1", {"properties": {"notes": "x"}}),
                               ("DELETE", "/api/v1/entities/BOMItem:U1", None)]:
        r = client.request(method, path, json=body)
        assert "read-only" in error(r, 403, "read_only")
    assert ok(client.get("/api/v1/entities/BOMItem:U1"))["version"] == 1


@pytest.fixture(scope="module")
def writable(tmp_path_factory):
    path = make_twin(tmp_path_factory.mktemp("serve-rw") / "drone", model=False)
    s = Server(path, "--allow-writes", "--actor", "agent:dashboard", env={"MF_ACTOR": ""})
    with httpx.Client(base_url=s.url, timeout=30) as c:
        yield path, c
    s.stop()


def test_writes_go_through_the_command_path(writable):
    path, client = writable
    r = client.post("/api/v1/entities", json={"id": "BOMItem:C42", "properties": {"capacitance": "10uF"},
                                              "message": "decoupling for U1"})
    assert r.status_code == 201, r.text
    assert r.json()["events"][0]["type"] == "node.created" and r.json()["actor"] == "agent:dashboard"
    r = client.patch("/api/v1/entities/BOMItem:C42", json={"properties": {"capacitance": "22uF"}, "expect_version": 1,
                                                           "message": "ripple"})
    assert ok(r)["events"][0]["payload"] == {"key": "capacitance", "value": {"value": 22, "unit": "uF"}}
    # a stale expected version is a 409, and nothing is written
    stale = client.patch("/api/v1/entities/BOMItem:C42", json={"properties": {"capacitance": "47uF"},
                                                               "expect_version": 1})
    assert "is at version 2, not 1" in error(stale, 409, "version_conflict")
    stale = client.post("/api/v1/changes", json={"changes": [{"set": "BOMItem:C42", "props": {"notes": "n"},
                                                              "expect_version": 7}]})
    assert "not 7" in error(stale, 409, "version_conflict")
    assert ok(client.get("/api/v1/entities/BOMItem:C42"))["properties"]["capacitance"] == {"value": 22, "unit": "uF"}
    # the same validation, constraints and approval as mf mutate
    assert "is a voltage, not a capacitance" in error(client.patch("/api/v1/entities/BOMItem:C42", json={"properties": {
        "capacitance": "3V"}}), 400, "bad_input")
    assert "already exists" in error(client.post("/api/v1/entities", json={"id": "BOMItem:C42"}), 409, "refused")
    refused = client.patch("/api/v1/entities/BOMItem:U1", json={"properties": {"current": "600mA"}})
    assert "power-budget-3v3" in error(refused, 422, "constraint_violation")
    assert refused.json()["error"]["verdicts"]
    proposal = client.post("/api/v1/changes", json={"changes": [{"set": "Constraint:esc-current",
                                                                 "props": {"severity": "warning"}}],
                                                    "message": "soften"})
    assert proposal.status_code == 202 and proposal.json()["proposal"].startswith("Proposal:")
    dry = ok(client.post("/api/v1/changes", json={"changes": [{"remove": "BOMItem:C42"}], "dry_run": True}))
    assert dry["dry_run"] is True and dry["appended"] == 0
    gone = client.delete("/api/v1/entities/BOMItem:C42", params={"expect_version": 2, "message": "not needed"})
    assert ok(gone)["events"][-1]["type"] == "node.deleted"
    assert "was removed" in error(client.get("/api/v1/entities/BOMItem:C42"), 404, "not_found")
    p = subprocess.run([sys.executable, "-m", "metaforge", "log", "BOMItem:C42", "--json"], cwd=path, env=mf_env(),
                       capture_output=True, text=True)
    assert [e["msg"] for e in json.loads(p.stdout)] == ["not needed", "ripple", "decoupling for U1"]


def test_a_twin_without_a_3d_model_says_so(writable):
    _, client = writable
    assert "has no 3D model yet" in error(client.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"),
                                          404, "not_found")


def test_malformed_writes_are_400(writable):
    _, client = writable
    for body in [{"changes": "set everything"}, {"changes": [{"frobnicate": "BOMItem:U1"}]},
                 {"changes": [{"set": "BOMItem:U1", "props": {"notes": "x"}, "msg": 5}]}, {"changes": []},
                 {"changes": [{"set": "BOMItem:U1", "props": {"notes": "x"}}], "actor": "robot"},
                 {"changes": [], "surprise": 1}]:
        r = client.post("/api/v1/changes", json=body)
        assert r.status_code == 400 and r.json()["error"]["kind"] == "bad_input", (body, r.text)
    assert client.post("/api/v1/changes", content=b"{not json", headers={"content-type": "application/json"}
                       ).status_code == 400


# ---- who may ask ------------------------------------------------------------------------------------------

def test_the_token_is_checked_on_every_http_and_websocket_request(model_twin):
    s = Server(model_twin, "--token", TOKEN)
    try:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            for path in ["/api/v1/status", "/api/v1/entities/BOMItem:U1", "/", "/openapi.json", "/docs",
                         "/api/v1/artifacts/mech__enclosure.step.glb", "/nothing"]:
                assert "needs a token" in error(c.get(path), 401, "unauthorized"), path
                assert "wrong token" in error(c.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"}),
                                              401, "unauthorized")
            assert c.get("/api/v1/status").headers["www-authenticate"].startswith("Bearer")
            assert ok(c.get("/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}))
            assert ok(c.get("/api/v1/status", headers={"X-MF-Token": TOKEN}))
            # a browser: the link with ?token= gives the cookie and the same page without the token
            r = c.get("/", params={"token": TOKEN, "tab": "devices"})
            assert r.status_code == 303 and r.headers["location"] == "/?tab=devices"
            assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=Strict" in r.headers["set-cookie"]
            c.cookies.set("mf_token", TOKEN)
            assert ok(c.get("/api/v1/status"))
        for url in [f"{s.ws_url}/ws/events", f"{s.ws_url}/ws/devices/{DEVICE}", f"{s.ws_url}/ws/events?token=wrong"]:
            with pytest.raises(InvalidStatus) as refused:
                connect(url).close()
            assert refused.value.response.status_code == 401
        with connect(f"{s.ws_url}/ws/devices/{DEVICE}?token={TOKEN}") as ws:
            assert json.loads(ws.recv(10))["deviceId"] == DEVICE
        with connect(f"{s.ws_url}/ws/devices/{DEVICE}", additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            assert json.loads(ws.recv(10))["type"] == "overlay"
    finally:
        s.stop()


def test_binding_beyond_loopback_needs_a_long_enough_token(model_twin):
    run = lambda *a, **env: subprocess.run([sys.executable, "-m", "metaforge", "serve", *a], cwd=model_twin,
                                           env={**mf_env(), **env}, capture_output=True, text=True, timeout=30)
    p = run("--host", "0.0.0.0", "--port", "0", MF_SERVE_TOKEN="")
    assert p.returncode == 2 and "needs a token" in p.stderr
    p = run("--host", "0.0.0.0", "--token", "short")
    assert p.returncode == 2 and "at least 16" in p.stderr
    s = Server(model_twin, "--host", "0.0.0.0", env={"MF_SERVE_TOKEN": TOKEN})
    try:
        assert "needs a token" in error(httpx.get(f"http://127.0.0.1:{s.port}/api/v1/status"), 401, "unauthorized")
        assert httpx.get(f"http://127.0.0.1:{s.port}/api/v1/status", headers={"X-MF-Token": TOKEN}).status_code == 200
    finally:
        s.stop()


def test_other_hosts_and_sites_are_refused_without_a_token(client, server):
    # DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 sends Host: evil.example
    assert "not this machine" in error(client.get("/api/v1/status", headers={"Host": "evil.example"}), 403, "bad_host")
    assert ok(client.get("/api/v1/status", headers={"Host": f"localhost:{server.port}"}))
    r = client.post("/api/v1/changes", json={"changes": []}, headers={"Origin": "http://evil.example"})
    assert "another site" in error(r, 403, "bad_origin")
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws/events", origin="http://evil.example").close()
    assert refused.value.response.status_code == 403
    with connect(f"{server.ws_url}/ws/events", origin=server.url):
        pass


def test_no_request_path_reaches_a_file_outside_the_repository(client, server, model_twin):
    secret = model_twin.parent / "secret.txt"
    secret.write_text("TOP SECRET")
    glb_url = ok(client.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"))["glb_url"]
    query = glb_url.split("?", 1)[1]
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/assets/..%2f..%2f..%2fsecret.txt",
                 "//etc/passwd", "/%2fetc%2fpasswd", "/index.html/../../secret.txt", "/.metaforge/config.toml",
                 "/api/v1/artifacts/..%2f..%2fconfig.toml", "/api/v1/artifacts/..%2F..%2F..%2Fsecret.txt?" + query,
                 "/api/v1/artifacts/%2e%2e", "/api/v1/artifacts/.gitignore", "/api/v1/entities/..%2f..%2fsecret.txt",
                 "/api/v1/projects/..%2f..%2fsecret.txt/model-manifest", "/mech/enclosure.step", "/../../etc/passwd"]:
        r = httpx.get(server.url + path) if "%" in path or ".." in path else client.get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert "TOP SECRET" not in r.text and "root:" not in r.text, path
    # raw, unnormalized paths as an attacker's client sends them
    import socket

    for raw in ["/../../secret.txt", "/static/../../secret.txt", "/api/v1/artifacts/../../../secret.txt"]:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"GET {raw} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        assert b"TOP SECRET" not in answer and (b" 404 " in answer or b" 400 " in answer or b" 403 " in answer), raw


def test_symlinks_out_of_the_artifacts_are_not_followed(model_twin, tmp_path):
    import shutil

    twin = tmp_path / "drone"
    shutil.copytree(model_twin, twin, symlinks=True)
    s = Server(twin)
    try:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            url = ok(c.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"))["glb_url"]
            assert c.get(url).status_code == 200
            glb = twin / ".metaforge/artifacts/mech__enclosure.step.glb"
            (tmp_path / "outside.glb").write_text("TOP SECRET")
            glb.unlink()
            glb.symlink_to(tmp_path / "outside.glb")  # the signed name now points out of the repository
            r = c.get(url)
            assert r.status_code == 404 and "TOP SECRET" not in r.text
            manifest = twin / ".metaforge/artifacts/mech__enclosure.step.manifest.json"
            data = json.loads(manifest.read_text())
            data["glb_url"] = "../outside.glb"  # a manifest pointing anywhere else is no model
            manifest.write_text(json.dumps(data))
            assert "names no GLB" in error(c.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"), 404,
                                           "not_found")
    finally:
        s.stop()


def test_signed_glb_urls_expire_and_cannot_be_tampered_with(model_twin):
    s = Server(model_twin, "--url-ttl", "1")
    try:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            url = ok(c.get("/api/v1/projects/DroneFlightController-v2.1/model-manifest"))["glb_url"]
            path, query = url.split("?")
            params = dict(p.split("=") for p in query.split("&"))
            assert c.get(url).status_code == 200
            assert "not signed" in error(c.get(path), 403, "forbidden")
            assert "bad signature" in error(c.get(path, params={**params, "sig": "0" * 64}), 403, "forbidden")
            later = int(params["expires"]) + 3600
            assert "bad signature" in error(c.get(path, params={**params, "expires": later}), 403, "forbidden")
            assert "malformed expiry" in error(c.get(path, params={**params, "expires": "soon"}), 403, "forbidden")
            assert "bad signature" in error(c.get(path.replace("enclosure", "other"), params=params), 403, "forbidden")
            time.sleep(2.1)
            assert "expired" in error(c.get(url), 403, "forbidden")
        other = Server(model_twin)  # another start signs with another secret
        try:
            assert "bad signature" in error(httpx.get(other.url + url), 403, "forbidden")
        finally:
            other.stop()
    finally:
        s.stop()


# ---- live -------------------------------------------------------------------------------------------------

def recv_until(ws, cond, seconds=20):
    end = time.time() + seconds
    while time.time() < end:
        try:
            message = json.loads(ws.recv(timeout=max(0.05, end - time.time())))
        except TimeoutError:
            break
        if cond(message):
            return message
    raise AssertionError("no such message in time")


def test_device_overlay_follows_a_separate_mqtt_ingest_process(server, model_twin, tmp_path):
    broker = Mosquitto(tmp_path)
    ingest = Ingest(model_twin, broker.url)
    pub = publisher(broker.url)
    try:
        with connect(f"{server.ws_url}/ws/devices/{DEVICE}") as ws:
            first = json.loads(ws.recv(10))
            assert first["type"] == "overlay" and first["deviceId"] == DEVICE
            value = 41.25

            def published(m):
                return any(a["metric"] == "board_temp_c" and a["value"] == value for a in m["annotations"])

            end = time.time() + 20
            message = None
            while message is None and time.time() < end:  # until ingest has subscribed
                publish(pub, DEVICE, {"board_temp_c": value, "vbat": 11.9})
                try:
                    message = recv_until(ws, published, seconds=1)
                except AssertionError:
                    pass
            assert message, "no overlay with the published value"
            note = next(a for a in message["annotations"] if a["metric"] == "board_temp_c")
            assert note["status"] == "warning" and note["label"] == "board temperature"  # 41.25 °C > 50 °C - 10 K
            assert note["meshName"] == "enclosure/chassis_plate" and len(note["position"]) == 3
            mesh = message["meshOverlays"][0]
            assert mesh["meshName"] == "enclosure/chassis_plate" and mesh["colorMap"] == "thermal"
            assert mesh["values"] == [value] and mesh["range"] == [20, 60] and mesh["color"].startswith("#")
            assert message["samples"]["board_temp_c"][-1][1] == value
            vbat = next(a for a in message["annotations"] if a["metric"] == "vbat")
            assert vbat["status"] == "none" and vbat["position"] is None
            # the critical state: its colour, and the health ingest's live twin derives, pushed too
            publish(pub, DEVICE, {"board_temp_c": 55.0})
            hot = recv_until(ws, lambda m: m["health"] == "critical" and any(
                a["metric"] == "board_temp_c" and a["status"] == "critical" for a in m["annotations"]))
            assert hot["meshOverlays"][0]["color"] != mesh["color"]
    finally:
        pub.loop_stop()
        ingest.stop()
        broker.stop()


def test_device_overlay_follows_a_file_ingested_by_another_process(server, model_twin):
    with connect(f"{server.ws_url}/ws/devices/{DEVICE}") as ws:
        json.loads(ws.recv(10))
        now = time.time()
        (model_twin / "late.csv").write_text(f"ts,board_temp_c\n{now - 1:.3f},33.5\n{now:.3f},34.5\n")
        p = subprocess.run([sys.executable, "-m", "metaforge", "ingest", "telemetry", "late.csv", "--device", DEVICE],
                           cwd=model_twin, env=mf_env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        message = recv_until(ws, lambda m: "board_temp_c" in m.get("samples", {}))
        assert [v for _, v in message["samples"]["board_temp_c"]] == [33.5, 34.5]
        assert next(a for a in message["annotations"] if a["metric"] == "board_temp_c")["status"] == "nominal"


def test_events_websocket_pushes_new_events_from_another_process(server, model_twin):
    head = ok(httpx.get(server.url + "/api/v1/status"))["semantic_version"]
    with connect(f"{server.ws_url}/ws/events") as ws, \
            connect(f"{server.ws_url}/ws/events?type=edge.*") as edges, \
            connect(f"{server.ws_url}/ws/events?since_seq={head - 2}") as backlog:
        assert [json.loads(backlog.recv(10))["event"]["seq"] for _ in range(2)] == [head - 1, head]
        p = subprocess.run([sys.executable, "-m", "metaforge", "mutate", "set", "BOMItem:U2", "notes=pushed",
                            "-m", "from another process"], cwd=model_twin, env=mf_env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        event = json.loads(ws.recv(10))["event"]
        assert (event["seq"], event["entity"], event["payload"], event["msg"]) == (
            head + 1, "BOMItem:U2", {"key": "notes", "value": "pushed"}, "from another process")
        assert json.loads(backlog.recv(10))["event"]["seq"] == head + 1
        p = subprocess.run([sys.executable, "-m", "metaforge", "mutate", "link", "DesignElement:IMU", "USES_COMPONENT",
                            "BOMItem:C7"], cwd=model_twin, env=mf_env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert json.loads(edges.recv(10))["event"]["type"] == "edge.created"  # the set above was filtered out
        assert json.loads(ws.recv(10))["event"]["seq"] == head + 2
        assert ok(httpx.get(server.url + "/api/v1/entities/BOMItem:U2"))["properties"]["notes"] == "pushed"
