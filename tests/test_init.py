import subprocess

from conftest import log_bytes, read_log


def test_init_makes_a_git_repository_and_metaforge(tmp_path, mf):
    path = tmp_path / "fresh"
    r = mf("init", str(path))
    assert r.code == 0, r.err
    assert (path / ".git").is_dir()
    mfdir = path / ".metaforge"
    assert (mfdir / "events").is_dir()
    assert "[project]" in (mfdir / "config.toml").read_text()
    ignore = (mfdir / ".gitignore").read_text()
    for derived in ("index.db", "telemetry.db", "knowledge.db"):
        assert derived in ignore
    # the derived index is not something git would commit, the events and config are
    mf("status", cwd=path)
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=path,
                         capture_output=True, text=True).stdout
    assert ".metaforge/config.toml" in out
    assert "index.db" not in out


def test_init_in_an_existing_git_repository_keeps_its_history(tmp_path, mf):
    path = tmp_path / "existing"
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    (path / "board.kicad_pcb").write_text("(kicad_pcb)")
    subprocess.run(["git", "add", "."], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "board"], cwd=path, check=True)
    r = mf("init", str(path), "--json")
    assert r.code == 0
    assert r.json["created"] is True and r.json["git_initialized"] is False
    log = subprocess.run(["git", "log", "--oneline"], cwd=path, capture_output=True, text=True).stdout
    assert "board" in log


def test_second_init_says_so_and_changes_nothing(twin, mf):
    before = log_bytes(twin)
    config = (twin / ".metaforge" / "config.toml").read_text()
    r = mf("init", str(twin), "--template", "drone-flight-controller")
    assert r.code == 0
    assert "already an mf repository" in r.err
    assert log_bytes(twin) == before
    assert (twin / ".metaforge" / "config.toml").read_text() == config
    assert mf("init", str(twin), "--json").json["created"] is False


def test_init_inside_a_subdirectory_of_a_git_repository_is_refused(tmp_path, mf):
    top = tmp_path / "top"
    (top / "hw").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=top, check=True)
    r = mf("init", str(top / "hw"))
    assert r.code == 2
    assert "inside the git repository" in r.err
    assert not (top / "hw" / ".metaforge").exists()


def test_mf_finds_metaforge_upward_like_git(repo, mf):
    sub = repo / "hw" / "power"
    sub.mkdir(parents=True)
    assert mf("mutate", "add", "BOMItem:C1", cwd=sub).code == 0
    r = mf("status", "--json", cwd=sub)
    assert r.code == 0 and r.json["root"] == str(repo.resolve())


def test_outside_any_repository_says_where_the_search_went(tmp_path, mf):
    r = mf("status", cwd=tmp_path)
    assert r.code == 2
    assert "not inside an mf repository" in r.err and str(tmp_path) in r.err
    assert "Traceback" not in r.err


def test_template_makes_the_drone_twin(twin, mf):
    status = mf("status", "--json", cwd=twin).json
    assert status["entities_by_type"]["BOMItem"] >= 10
    assert status["entities_by_type"]["DeviceInstance"] == 1
    device = mf("show", "DeviceInstance:FC-SN-20260301-001", "--json", cwd=twin).json
    assert {"rel": "INSTANCE_OF", "id": "TwinModel:DroneFlightController-v2.1"} in device["out"]
    battery = mf("show", "BOMItem:BT1", "--json", cwd=twin).json["properties"]
    assert battery["capacity"] == {"value": 2200, "unit": "mAh"} and battery["cells"] == 3
    events = read_log(twin)
    assert events[0]["msg"].startswith("Twin created from the drone-flight-controller template")


def test_unknown_template_lists_the_available_ones(tmp_path, mf):
    r = mf("init", str(tmp_path / "x"), "--template", "rocket")
    assert r.code == 2
    assert "drone-flight-controller" in r.err
    assert not (tmp_path / "x" / ".metaforge").exists()
