"""The dashboard in real headless Chromium (Debian's, driven by playwright): the page loads the GLB,
a click on a part shows its entity and BOM, and a value published to the broker appears live
(through a separate `mf ingest mqtt` process). Screenshots go to test-artifacts/serve-dashboard/."""

import shutil
import time

import pytest

from serve_support import DEVICE, DOME, PLATE, ROOT, Ingest, Mosquitto, Server, make_twin, publish, publisher

SHOTS = ROOT / "test-artifacts" / "serve-dashboard"
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium: apt-get install chromium (./scripts/test installs it)")


@pytest.fixture
def dashboard(tmp_path):
    if not (ROOT / "metaforge/serve/static/index.html").is_file():
        pytest.fail("the dashboard is not built: run scripts/setup (or scripts/build-dashboard)")
    from playwright.sync_api import sync_playwright

    twin = make_twin(tmp_path / "drone")
    broker = Mosquitto(tmp_path)
    ingest = Ingest(twin, broker.url)
    server = Server(twin)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        problems, responses = [], []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: responses.append((r.url, r.status)))
        try:
            yield page, server, broker, problems, responses
        finally:
            browser.close()
            server.stop()
            ingest.stop()
            broker.stop()


def click_part(page, mesh_name: str) -> None:
    spot = page.evaluate(f"window.mf.viewer.screenPositionOf({mesh_name!r})")
    assert spot, f"{mesh_name} is not in the loaded model"
    page.mouse.click(spot["x"], spot["y"])


def test_the_dashboard_shows_the_model_a_part_and_live_telemetry(dashboard):
    page, server, broker, problems, responses = dashboard
    page.goto(server.url + "/")
    page.wait_for_function("window.mf && window.mf.loaded && window.mf.ready", timeout=60_000)
    glb = [(url, status) for url, status in responses if "/api/v1/artifacts/mech__enclosure.step.glb?" in url]
    assert glb and glb[0][1] == 200, responses
    assert page.evaluate("window.mf.viewer.byMesh.size") == 15  # every part of the assembly is a named node
    assert page.locator("#component-tree .item").count() == 15  # the rover, its parts and sub-assemblies
    page.screenshot(path=str(SHOTS / "1-model-loaded.png"))

    # a click on a part (in the 3D view, through the raycaster) shows its entity, BOM and constraints
    click_part(page, "enclosure/chassis_plate")
    page.wait_for_selector(f"#entity-title:text-is('{PLATE}')", timeout=10_000)
    assert "aluminium 6061" in page.inner_text("#entity-properties")
    click_part(page, "enclosure/sensor_mast/lidar_dome")
    page.wait_for_selector(f"#entity-title:text-is('{DOME}')", timeout=10_000)
    page.wait_for_selector("#entity-bom:has-text('BOMItem:GPS1')", timeout=10_000)
    assert "M10Q-250" in page.inner_text("#entity-bom") and "24.90 USD" in page.inner_text("#entity-bom")
    assert page.locator(f".item.selected[data-entity='{DOME}']").count() == 1  # the tree follows the click
    page.screenshot(path=str(SHOTS / "2-part-selected.png"))

    # the device: its simulation run's curve, then a value published to the broker appears live
    page.click(f".item[data-device='{DEVICE}']")
    page.wait_for_selector("#device-simulations:has-text('what-if-hot-day')", timeout=10_000)
    assert page.locator("#device-simulations svg.chart polyline").count() == 1
    pub = publisher(broker.url)
    try:
        live_row = page.locator("#device-live tr[data-metric='board_temp_c']")
        end = time.time() + 30
        while time.time() < end and "43.210" not in (live_row.inner_text() if live_row.count() else ""):
            publish(pub, DEVICE, {"board_temp_c": 43.21, "vbat": 11.87})  # until ingest has subscribed
            page.wait_for_timeout(300)
        assert "43.210" in live_row.inner_text() and "warning" in live_row.inner_text()
        label = page.locator("#annotations .annotation[data-metric='board_temp_c']")
        label.wait_for(timeout=5_000)
        assert "board temperature: 43.21 degC" in label.inner_text() and label.get_attribute("data-status") == "warning"
        color = page.evaluate("'#' + window.mf.viewer.byMesh.get('enclosure/chassis_plate')"
                              ".children.concat([window.mf.viewer.byMesh.get('enclosure/chassis_plate')])"
                              ".find(o => o.isMesh).material.color.getHexString()")
        assert color == page.evaluate("window.mf.overlay.meshOverlays[0].color")  # the server's colour, as is
        page.screenshot(path=str(SHOTS / "3-live-overlay.png"))
    finally:
        pub.loop_stop()
    assert not problems, problems
    assert not [(u, s) for u, s in responses if s >= 400], responses
