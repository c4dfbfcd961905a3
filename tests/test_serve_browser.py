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

    # idle, it draws nothing: frames only when something changed (a page left open costs no CPU)
    page.wait_for_timeout(500)
    idle = page.evaluate("window.mf.viewer.frames")
    assert isinstance(idle, int) and idle > 0  # the model was drawn
    page.wait_for_timeout(1500)
    assert page.evaluate("window.mf.viewer.frames") == idle

    # a click on a part (in the 3D view, through the raycaster) shows its entity, BOM and constraints
    click_part(page, "enclosure/chassis_plate")
    page.wait_for_selector(f"#entity-title:text-is('{PLATE}')", timeout=10_000)
    page.wait_for_function(f"window.mf.viewer.frames > {idle}", timeout=5_000)  # the selection is drawn
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


# ---- an attacker's pages ------------------------------------------------------------------------------

ATTACKER = """<!doctype html><meta charset="utf-8"><title>another site</title>
<script>
window.got = [];
const target = new URLSearchParams(location.search).get("target");
const wsTarget = target.replace("http://", "ws://");
window.addEventListener("message", (e) => got.push("frame " + e.data));
function tryWs(url, tag) {
  return new Promise((done) => {
    let s;
    try { s = new WebSocket(url); } catch (e) { return done(); }
    s.onmessage = (e) => got.push(tag + " " + String(e.data).slice(0, 60));
    s.onerror = s.onclose = () => done();
    setTimeout(done, 3000);
  });
}
async function tryFetch(url, opts, tag) {
  try {
    const r = await fetch(url, opts);
    if (r.type !== "opaque") got.push(tag + " " + r.status + " " + (await r.text()).slice(0, 60));
  } catch (e) { /* refused: nothing read */ }
}
window.attack = async (device) => {
  const write = '{"changes": [{"set": "BOMItem:U1", "props": {"notes": "pwned"}}]}';
  await Promise.all([
    tryWs(wsTarget + "/ws/events?since_seq=0", "ws-events"),
    tryWs(wsTarget + "/ws/devices/" + device, "ws-device"),
    tryFetch(target + "/api/v1/events?since_seq=0", {credentials: "include"}, "fetch"),
    tryFetch(target + "/api/v1/changes", {method: "POST", mode: "no-cors", credentials: "include", body: write,
                                          headers: {"Content-Type": "text/plain"}}, "write"),
    new Promise((done) => {  // a sandboxed frame: its requests carry Origin: null
      const frame = document.createElement("iframe");
      frame.sandbox = "allow-scripts";
      frame.srcdoc = `<script>
        const send = (m) => parent.postMessage(m, "*");
        for (const path of ["/ws/events?since_seq=0", "/ws/devices/${device}"]) {
          try { const s = new WebSocket("${wsTarget}" + path); s.onmessage = (e) => send(path + " " + String(e.data).slice(0, 60)); } catch (e) {}
        }
        fetch("${target}/api/v1/events?since_seq=0", {credentials: "include"}).then((r) => r.text()).then((t) => send("fetch " + t.slice(0, 60))).catch(() => {});
        fetch("${target}/api/v1/changes", {method: "POST", mode: "no-cors", credentials: "include", body: '${write}',
                                           headers: {"Content-Type": "text/plain"}}).catch(() => {});
      <\\/script>`;
      document.body.appendChild(frame);
      setTimeout(done, 3500);
    }),
  ]);
  return got;
};
</script><body></body>"""


class AttackerSite:
    """A page on another loopback origin (its own port), served by a plain HTTP server."""

    def __init__(self):
        import http.server
        import threading

        page = ATTACKER.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def _attack(browser, site: AttackerSite, server: Server, cookie: str | None = None) -> list[str]:
    context = browser.new_context()
    if cookie:  # the victim opened the dashboard before: the browser holds its token cookie
        context.add_cookies([{"name": "mf_token", "value": cookie, "url": server.url + "/",
                              "httpOnly": True, "sameSite": "Strict"}])
    page = context.new_page()
    page.goto(f"{site.origin}/?target={server.url}")
    page.evaluate(f"window.attack({DEVICE!r})")
    page.wait_for_timeout(500)  # anything still arriving
    got = page.evaluate("window.got")
    context.close()
    return got


def test_pages_of_another_origin_read_nothing_and_write_nothing(tmp_path):
    """Chromium: a page on another loopback origin, and a sandboxed frame in it (Origin: null), try
    every way in against a token-less server and against a token server whose cookie the browser
    holds (another loopback port is the same *site*, so a SameSite=Strict cookie goes along)."""
    from playwright.sync_api import sync_playwright

    import httpx

    token = "s3cret-token-for-tests-0123456789"
    twin = make_twin(tmp_path / "drone")
    site = AttackerSite()
    servers = {"no token": Server(twin, "--allow-writes"), "token": Server(twin, "--allow-writes", "--token", token),
               "control": Server(twin, "--allow-writes", "--allow-origin", site.origin)}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                got = {name: _attack(browser, site, s, token if name == "token" else None)
                       for name, s in servers.items()}
            finally:
                browser.close()
        assert got["no token"] == [], got["no token"]
        assert got["token"] == [], got["token"]
        # the control: the same page, its origin allowed on purpose, does read (so the test sees reads)
        assert any(m.startswith("ws-events ") and '"type":"event"' in m for m in got["control"]), got["control"]
        notes = httpx.get(f"{servers['no token'].url}/api/v1/entities/BOMItem:U1").json()["properties"].get("notes")
        assert notes != "pwned"
    finally:
        logs = {name: s.stop() for name, s in servers.items()}
        site.stop()
    assert not any("Traceback" in log for log in logs.values()), logs


def test_the_api_docs_load_with_no_network_beyond_the_server(tmp_path):
    from playwright.sync_api import sync_playwright

    twin = make_twin(tmp_path / "drone", model=False)
    server = Server(twin)
    outside = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page()

            def only_the_server(route):
                if route.request.url.startswith(server.url + "/"):
                    return route.continue_()
                outside.append(route.request.url)
                return route.abort()

            page.route("**/*", only_the_server)
            page.goto(server.url + "/docs")
            page.wait_for_selector(".swagger-ui .info .title:has-text('mf serve')", timeout=30_000)
            assert page.locator(".opblock-summary-path[data-path='/api/v1/status']").count() == 1
            browser.close()
    finally:
        server.stop()
    assert outside == [], outside


def test_the_dashboard_resumes_the_event_feed_where_it_stopped(tmp_path):
    """The server goes away, events are written meanwhile (another process), the server comes back
    on the same port: the page reconnects with since_seq and shows every event it missed."""
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    from serve_support import free_port, mf_env

    twin = make_twin(tmp_path / "drone", model=False)
    port = free_port()
    server = Server(twin, "--port", str(port))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("window.mf && window.mf.ready", timeout=60_000)
            mutate = lambda *a: subprocess.run([sys.executable, "-m", "metaforge", "mutate", *a], cwd=twin,
                                               env=mf_env(), capture_output=True, text=True, check=True)
            mutate("set", "BOMItem:U2", "notes=before")
            page.wait_for_selector("#event-feed li:has-text('BOMItem:U2')", timeout=10_000)
            import httpx

            seen = httpx.get(f"{server.url}/api/v1/status").json()["semantic_version"]
            server.stop()
            for i in range(3):
                mutate("set", "BOMItem:U3", f"notes=while-away-{i}")
            server = Server(twin, "--port", str(port))
            for seq in range(seen + 1, seen + 4):
                page.wait_for_selector(f"#event-feed li:text-matches('^#{seq} ')", timeout=30_000)
            browser.close()
    finally:
        server.stop()
