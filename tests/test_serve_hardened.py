"""`mf serve` tried as an attacker would, each case through a real server process and a real
client (raw sockets where an HTTP library would tidy the request up): requests from other
origins, bodies, headers, query integers and WebSocket messages past their limits, inputs that
once made server errors, redirects, manifests linked out of the repository, and the event feed
counted seq by seq when its backlog is larger than the server's buffer."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from serve_support import DEVICE, Server, make_twin, mf_env

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    return make_twin(tmp_path_factory.mktemp("hardened") / "drone")


@pytest.fixture(scope="module")
def server(twin):
    s = Server(twin)
    yield s
    log = s.stop()
    assert "Traceback" not in log and "internal error" not in log, log


@pytest.fixture(scope="module")
def writable(tmp_path_factory):
    path = make_twin(tmp_path_factory.mktemp("hardened-rw") / "drone", model=False)
    s = Server(path, "--allow-writes", "--actor", "agent:tester")
    yield path, s
    log = s.stop()
    assert "Traceback" not in log and "internal error" not in log, log


def raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are, read the answer until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and not _more(b"".join(chunks)):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
        return b"".join(chunks)


def _more(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) < int(line.split(b":")[1])
    return False


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


def header(answer: bytes, name: str) -> str | None:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return None


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n".encode("latin-1")


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# ---- 1. origins ------------------------------------------------------------------------------------------

def test_origin_null_and_other_origins_are_refused_websockets_and_writes(server, writable):
    for origin in ["null", "http://evil.example", f"http://127.0.0.1:{server.port + 1}", "http://localhost",
                   f"http://127.0.0.1:{server.port}.evil.example", f"{server.url}/page"]:
        for path in ["/ws/events?since_seq=0", f"/ws/devices/{DEVICE}"]:
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{server.ws_url}{path}", origin=origin).close()
            assert refused.value.response.status_code == 403, (origin, path)
            assert b"bad_origin" in refused.value.response.body
    _, rw = writable
    r = httpx.post(f"{rw.url}/api/v1/changes", json={"changes": [{"set": "BOMItem:U1", "props": {"notes": "x"}}]},
                   headers={"Origin": "null"})
    assert r.status_code == 403 and r.json()["error"]["kind"] == "bad_origin"
    # the server's own origin, as its dashboard sends it, passes
    with connect(f"{server.ws_url}/ws/events", origin=server.url):
        pass
    with connect(f"ws://localhost:{server.port}/ws/events", origin=f"http://localhost:{server.port}"):
        pass


def test_fetch_metadata_of_another_site_is_refused_except_a_top_level_link(server):
    for site, mode, dest in [("cross-site", "no-cors", "script"), ("same-site", "cors", "empty"),
                             ("cross-site", "navigate", "iframe")]:
        r = httpx.get(f"{server.url}/api/v1/events", headers={
            "Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest})
        assert r.status_code == 403 and r.json()["error"]["kind"] == "bad_origin", (site, mode, dest)
    for site, mode, dest in [("cross-site", "navigate", "document"), ("same-origin", "cors", "empty"),
                             ("none", "navigate", "document")]:
        assert httpx.get(f"{server.url}/api/v1/status", headers={
            "Sec-Fetch-Site": site, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}).status_code == 200


def test_the_token_cookie_counts_only_on_the_servers_own_pages(twin):
    s = Server(twin, "--token", TOKEN, "--allow-writes", "--allow-origin", "http://localhost:5173")
    try:
        cookie = {"Cookie": f"mf_token={TOKEN}"}
        assert httpx.get(f"{s.url}/api/v1/status", headers=cookie).status_code == 200
        for extra in [{"Origin": "null"}, {"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "same-site"}]:
            r = httpx.get(f"{s.url}/api/v1/status", headers={**cookie, **extra})
            assert r.status_code == 403 and r.json()["error"]["kind"] == "bad_origin", extra
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{s.ws_url}/ws/events", additional_headers={**cookie, **extra}).close()
            assert refused.value.response.status_code == 403
        # an origin given with --allow-origin counts as the server's own
        with connect(f"{s.ws_url}/ws/events", origin="http://localhost:5173", additional_headers=cookie):
            pass
        assert "--allow-origin" in subprocess.run(
            [sys.executable, "-m", "metaforge", "serve", "--port", "0", "--allow-origin", "localhost:5173"],
            cwd=twin, env=mf_env(), capture_output=True, text=True, timeout=30).stderr
    finally:
        s.stop()


# ---- 2. limits -------------------------------------------------------------------------------------------

def test_a_body_over_the_limit_is_413_before_it_is_read(writable):
    _, s = writable
    # 300 MB announced, not one byte sent: the answer comes at once, and the connection closes
    start = time.perf_counter()
    answer = raw(s.port, b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 300000000\r\nExpect: 100-continue\r\n\r\n")
    assert status_of(answer) == 413 and b"too_large" in answer and b"100 Continue" not in answer
    assert header(answer, "connection") == "close" and time.perf_counter() - start < 2
    # a streamed (chunked) body is counted as it comes: refused once past 8 MiB, memory stays put
    before = rss_mb(s.proc.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(4000):  # up to 260 MB, if the server kept reading
                sock.sendall(b"10000\r\n" + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            pass
    assert sent < 100 * 2**20, sent
    assert not answer or status_of(answer) == 413, answer[:300]
    assert rss_mb(s.proc.pid) - before < 40
    r = httpx.post(f"{s.url}/api/v1/entities", json={"id": "BOMItem:BIG", "properties": {"notes": "x" * 9_000_000}})
    assert r.status_code == 413 and r.json()["error"]["kind"] == "too_large"
    assert httpx.get(f"{s.url}/api/v1/entities/BOMItem:BIG").status_code == 404  # nothing reached the log
    bad = raw(s.port, b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: lots\r\n\r\n")
    assert status_of(bad) == 400


def test_a_read_only_server_refuses_a_write_before_its_body(server):
    before = rss_mb(server.proc.pid)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 300000000\r\n\r\n" + b"[" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer or _more(answer):
            answer += sock.recv(65536)
    assert status_of(answer) == 403 and b"read_only" in answer and time.perf_counter() - start < 2
    assert rss_mb(server.proc.pid) - before < 20


def test_headers_past_their_limits_are_400(server):
    assert status_of(raw(server.port, get("/api/v1/status", "X-Big: " + "a" * 100_000 + "\r\n"))) == 400
    assert status_of(raw(server.port, get("/api/v1/status", "".join(f"X-H{i}: v\r\n" for i in range(150))))) == 400
    # a header that never ends is cut off once past the limit, not collected
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        try:
            for _ in range(1000):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            raise AssertionError("the server read 64 MB of one header")
    assert status_of(raw(server.port, get("/api/v1/status", "X-Fine: " + "a" * 4000 + "\r\n"))) == 200
    # a whole request whose body is past the head limit, sent in one piece, is not taken for a long head
    body = b'{"changes": [{"set": "BOMItem:U1", "props": {"notes": "' + b"x" * 40_000 + b'"}}]}'
    whole = (b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    answer = raw(server.port, whole)
    assert b"request line and headers over" not in answer and status_of(answer) == 403, answer[:300]  # read-only
    dup = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    answer = raw(server.port, dup)
    assert status_of(answer) == 400 and b"more than one Host header" in answer


def test_query_and_body_integers_out_of_range_are_400(server, writable):
    for path in ["/api/v1/events?since_seq=99999999999999999999", "/api/v1/events?limit=99999999999999999999",
                 "/api/v1/trace/BOMItem:U1?depth=" + "9" * 30, "/api/v1/entities?limit=-99999999999999999999",
                 f"/api/v1/devices/{DEVICE}/telemetry?metric=vbat&limit=" + "9" * 5000]:
        r = httpx.get(server.url + path)
        assert r.status_code == 400 and r.json()["error"]["kind"] == "bad_input", (path, r.text[:300])
    # a parameter that takes one value, given twice: which one would count? Refused
    r = httpx.get(server.url + "/api/v1/events?since_seq=%5B%5D&since_seq=0.0&since_seq=3")
    assert r.status_code == 400 and "given twice" in r.json()["error"]["message"]
    assert httpx.get(server.url + "/api/v1/entities?where=rail%3D3V3&where=current%3E%3D20mA").json()["count"] == 2
    _, s = writable
    for method, path, body in [
            ("PATCH", "/api/v1/entities/BOMItem:U1", {"properties": {"notes": "x"}, "expect_version": 2**70}),
            ("PATCH", "/api/v1/entities/BOMItem:U1", {"properties": {"quantity": 2**64}}),
            ("POST", "/api/v1/entities", {"id": "BOMItem:Q", "properties": {"n": [[[-2**80]]]}}),
            ("POST", "/api/v1/changes", {"changes": [{"set": "BOMItem:U1", "props": {"v": 10**30}}]}),
            ("POST", "/api/v1/changes", {"changes": [{"set": "BOMItem:U1", "props": {"v": _nested(60)}}]}),
            ("DELETE", "/api/v1/entities/BOMItem:U1?expect_version=" + "9" * 25, None)]:
        r = httpx.request(method, s.url + path, content=None if body is None else json.dumps(body),
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["kind"] == "bad_input", (method, path, r.text[:300])
    assert httpx.get(f"{s.url}/api/v1/entities/BOMItem:U1").json()["version"] == 1


def _nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_websocket_message_over_the_limit_closes_with_1009(server):
    with connect(f"{server.ws_url}/ws/events", max_size=None) as ws:
        ws.send("x" * 1000)  # small ones are read and ignored
        ws.send("x" * (1024 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):
                ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# ---- 3. no server error for any input --------------------------------------------------------------------

def test_inputs_that_once_made_server_errors(server, writable):
    answers = {
        "huge since_seq": httpx.get(f"{server.url}/api/v1/events?since_seq=99999999999999999999"),
        "validation error holding a >64-bit integer": httpx.get(
            f"{server.url}/api/v1/trace/BOMItem:U1?depth=99999999999999999999999"),
        "empty type=": httpx.get(f"{server.url}/api/v1/entities?type="),
        "empty every=": httpx.get(f"{server.url}/api/v1/devices/{DEVICE}/telemetry?every=&since=&until="),
        "empty type= on events": httpx.get(f"{server.url}/api/v1/events?type=&entity="),
    }
    for case, r in answers.items():
        assert r.status_code < 500, (case, r.text[:300])
        r.json()
    assert answers["empty type="].status_code == 200 and answers["empty type="].json()["count"] > 13
    assert answers["empty every="].status_code == 200 and answers["empty type= on events"].status_code == 200
    for request in [get("/%E2%98%83?token=x"), get("/a%0d%0aX:%20y?token=x"), get("/%E2%98%83"),
                    get("/api/v1/entities/%E2%98%83"), get("/api/v1/entities/%00%ff"), get("/api/v1/trace/%ff%fe"),
                    get("/api/v1/events?type=%ff&entity=%00"), get("/api/v1/artifacts/%E2%98%83?expires=1&sig=x"),
                    get("/api/v1/artifacts/x.glb?expires=" + "9" * 5000 + "&sig=x"),
                    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: mf_token=\xff\"\r\n\r\n",
                    b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                    b"GET /api/v1/status HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
                    get("/api/v1/status", "Origin: http://[::1\r\n"),
                    b"POST /api/v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \xb2\r\nConnection: close\r\n\r\n",
                    b"BREW /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"]:
        answer = raw(server.port, request)
        assert answer and status_of(answer) < 500, (request[:80], answer[:300])
    _, s = writable
    for method, path in [("PATCH", "/api/v1/entities/BOMItem:NOPE"), ("DELETE", "/api/v1/entities/BOMItem:NOPE"),
                         ("PATCH", "/api/v1/entities/Widget:x"), ("DELETE", "/api/v1/entities/nonsense")]:
        r = httpx.request(method, s.url + path, json={"properties": {"notes": "x"}} if method == "PATCH" else None)
        assert r.status_code == 404 and r.json()["error"]["kind"] == "not_found", (method, path, r.text)


def test_405_names_the_methods_the_path_takes(server):
    for method, path, allowed in [("PUT", "/api/v1/status", "GET"), ("DELETE", "/api/v1/entities", "GET, POST"),
                                  ("PUT", "/api/v1/entities/BOMItem:U1", "GET, PATCH, DELETE"), ("POST", "/", "GET"),
                                  ("POST", "/docs", "GET")]:
        r = httpx.request(method, server.url + path)
        assert r.status_code == 405 and r.headers["allow"] == allowed, (method, path, r.headers.get("allow"))


# ---- 4. redirects and files ------------------------------------------------------------------------------

def test_the_token_redirect_stays_on_the_server(twin):
    s = Server(twin, "--token", TOKEN)
    try:
        for path, location in [("//evil.com", "/evil.com"), ("///evil.com", "/evil.com"), ("/%2F%2Fevil.com", "/evil.com"),
                               ("/%5Cevil.com", "/evil.com"), ("/%5C%5Cevil.com", "/evil.com"),
                               ("/%E2%98%83", "/%E2%98%83"), ("/a%0d%0aX:%20y", "/a%0D%0AX:%20y"),
                               ("/devices?x=1&", "/devices?x=1")]:
            sep = "&" if "?" in path else "?"
            answer = raw(s.port, get(f"{path}{sep}token={TOKEN}"))
            assert status_of(answer) == 303, (path, answer[:300])
            assert header(answer, "location") == location, (path, answer[:300])
            assert header(answer, "x") is None
    finally:
        s.stop()


def test_a_manifest_linked_out_of_the_repository_is_not_read(twin, tmp_path):
    import shutil

    copy = tmp_path / "drone"
    shutil.copytree(twin, copy, symlinks=True)
    artifacts = copy / ".metaforge/artifacts"
    manifest = artifacts / "mech__enclosure.step.manifest.json"
    outside = tmp_path / "outside.manifest.json"
    data = json.loads(manifest.read_text())
    data["artifact_id"] = "Artifact:TOP-SECRET"
    outside.write_text(json.dumps(data))
    (artifacts / "stolen.manifest.json").symlink_to(outside)
    manifest.unlink()
    manifest.symlink_to(outside)
    s = Server(copy)
    try:
        projects = httpx.get(f"{s.url}/api/v1/projects").json()
        assert "TOP-SECRET" not in json.dumps(projects) and "stolen" not in json.dumps(projects)
        for project in ["DroneFlightController-v2.1", "mech__enclosure.step", "stolen", "Artifact:TOP-SECRET"]:
            r = httpx.get(f"{s.url}/api/v1/projects/{project}/model-manifest")
            assert r.status_code == 404 and "component_tree" not in r.text, (project, r.text)
        with connect(f"{s.ws_url}/ws/devices/{DEVICE}") as ws:  # the overlay reads no box from outside either
            assert json.loads(ws.recv(10))["deviceId"] == DEVICE
    finally:
        s.stop()
    # a whole artifacts folder linked out of the repository is not read either
    shutil.rmtree(artifacts)
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(outside, tmp_path / "elsewhere" / "mech__enclosure.step.manifest.json")
    artifacts.symlink_to(tmp_path / "elsewhere")
    s = Server(copy)
    try:
        assert httpx.get(f"{s.url}/api/v1/projects").json()[0]["models"] == []
    finally:
        s.stop()


# ---- 5. the event feed never drops silently --------------------------------------------------------------

def _append_events(path, count: int, tag: str) -> None:
    changes = [{"set": "BOMItem:U1", "props": {"notes": f"{tag}-{i}"}} for i in range(count)]
    (path / f"{tag}.json").write_text(json.dumps({"changes": changes, "message": tag}))
    p = subprocess.run([sys.executable, "-m", "metaforge", "mutate", "apply", f"{tag}.json"], cwd=path, env=mf_env(),
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_the_event_feed_delivers_every_seq_past_its_buffer(writable):
    path, s = writable
    _append_events(path, 2500, "bulk")  # far more than the server keeps at hand (1,024)
    head = httpx.get(f"{s.url}/api/v1/status").json()["semantic_version"]
    assert head > 2600
    with connect(f"{s.ws_url}/ws/events?since_seq=0", max_size=None) as ws, \
            connect(f"{s.ws_url}/ws/events?since_seq=0&type=edge.*", max_size=None) as edges:
        # meanwhile another process appends 1,500 more, while this client reads slowly
        writer = threading.Thread(target=_append_events, args=(path, 1500, "live"))
        writer.start()
        seqs = []
        while len(seqs) < head + 1500:
            if len(seqs) % 500 == 0:
                time.sleep(0.3)  # a slow reader: the server must wait for it, not drop
            seqs.append(json.loads(ws.recv(20))["event"]["seq"])
        writer.join()
        assert seqs == list(range(1, head + 1501))
        with pytest.raises(TimeoutError):
            ws.recv(0.5)  # and nothing twice
        expected = [e["seq"] for e in httpx.get(f"{s.url}/api/v1/events", params={
            "type": "edge.*", "limit": 10_000}).json()["events"]]
        got = [json.loads(edges.recv(20))["event"]["seq"] for _ in expected]
        assert got == expected and len(got) > 50


def test_the_event_feed_from_a_position_in_the_buffer_and_from_now(writable):
    path, s = writable
    head = httpx.get(f"{s.url}/api/v1/status").json()["semantic_version"]
    with connect(f"{s.ws_url}/ws/events?since_seq={head - 3}") as recent, connect(f"{s.ws_url}/ws/events") as now:
        assert [json.loads(recent.recv(10))["event"]["seq"] for _ in range(3)] == [head - 2, head - 1, head]
        _append_events(path, 3, "tail")
        assert [json.loads(now.recv(10))["event"]["seq"] for _ in range(3)] == [head + 1, head + 2, head + 3]
        assert [json.loads(recent.recv(10))["event"]["seq"] for _ in range(3)] == [head + 1, head + 2, head + 3]
