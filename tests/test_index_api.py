"""The index's typed reads for devices, models and the fleet, on a twin built by real `mf` commands:
what sync, sim and the server ask of the graph without writing SQL."""

import pytest

MODEL = "DroneFlightController-v2.1"
TEMPLATE_DEVICE = "DeviceInstance:FC-SN-20260301-001"


@pytest.fixture
def fleet(twin, mf):
    """The template's device, plus: FC-B (own policy and source, in group evt-batch, health set),
    FC-C (in evt-batch, retired), FC-D (registered, then removed), and the group's policy and source."""
    for args in (
        ("device", "register", "FC-B", "--model", MODEL, "--group", "evt-batch",
         "--policy", "staleness_threshold_s=30", "--source", "power.rail_5v_ma:mA:5"),
        ("device", "register", "FC-C", "--model", MODEL, "--group", "evt-batch"),
        ("device", "register", "FC-D", "--model", MODEL),
        ("device", "policy", "--group", "evt-batch", "retention_days=30", "mode=periodic"),
        ("device", "source", "--group", "evt-batch", "--add", "battery.voltage:V:10"),
        ("device", "retire", "FC-C"),
        ("mutate", "set", "DeviceInstance:FC-B", "health=warning"),
        ("mutate", "remove", "DeviceInstance:FC-D"),
    ):
        r = mf(*args, cwd=twin)
        assert r.code == 0, (args, r.err)
    return twin


@pytest.fixture
def opened(fleet):
    """The fleet's repository, its index caught up with the log."""
    from metaforge.repo import Repo

    repo = Repo.find(fleet)
    repo.sync_warnings()
    yield repo
    repo.close()


@pytest.fixture
def index(opened):
    return opened.index


def test_device_status_tells_registered_retired_and_unknown_apart(index):
    assert index.device_status(TEMPLATE_DEVICE) == "active"
    assert index.device_status("DeviceInstance:FC-B") == "active"
    assert index.device_status("DeviceInstance:FC-C") == "decommissioned"
    assert index.device_status("DeviceInstance:FC-D") is None  # removed: the registry no longer holds it
    assert index.device_status("DeviceInstance:FC-NEVER") is None


def test_devices_in_service_leave_out_retired_and_removed_ones(index):
    assert index.devices_in_service(f"TwinModel:{MODEL}") == ["DeviceInstance:FC-B", TEMPLATE_DEVICE]
    assert index.devices_in_service("TwinModel:NoSuchModel") == []


def test_device_sync_layers_pair_each_device_with_its_group(index):
    layers = {row.device: row for row in index.device_sync_layers()}
    assert sorted(layers) == ["DeviceInstance:FC-B", "DeviceInstance:FC-C", TEMPLATE_DEVICE]  # not FC-D
    b = layers["DeviceInstance:FC-B"]
    assert b.policy == {"staleness_threshold_s": 30}
    assert b.sources == [{"metric": "power.rail_5v_ma", "unit": "mA", "rate_hz": 5}]
    assert b.group == "FleetGroup:evt-batch"
    assert b.group_policy == {"retention_days": 30, "mode": "periodic"}
    assert b.group_sources == [{"metric": "battery.voltage", "unit": "V", "rate_hz": 10}]
    c = layers["DeviceInstance:FC-C"]
    assert c.policy == {} and c.sources is None and c.group_policy == b.group_policy  # set, but empty
    lone = layers[TEMPLATE_DEVICE]
    assert (lone.policy, lone.sources, lone.group, lone.group_policy, lone.group_sources) == (None,) * 5


def test_effective_policy_layers_device_over_group_over_defaults(opened):
    from metaforge.sync.policy import effective

    fleet_policies = effective(opened)
    b = fleet_policies["FC-B"]
    assert b["policy"]["staleness_threshold_s"] == 30 and b["origin"]["staleness_threshold_s"] == "device"
    assert b["policy"]["mode"] == "periodic" and b["origin"]["mode"] == "FleetGroup:evt-batch"
    assert b["origin"]["sample_rate_hz"] == "default"
    assert [s["metric"] for s in b["sources"]] == ["battery.voltage", "power.rail_5v_ma"]
    assert "FC-D" not in fleet_policies


def test_nodes_and_one_property_of_each_node_of_a_type(index):
    devices = index.nodes_of_type("DeviceInstance")
    assert [n.id for n in devices] == ["DeviceInstance:FC-B", "DeviceInstance:FC-C", TEMPLATE_DEVICE]
    c = devices[1]
    assert c.type == "DeviceInstance" and c.props["status"] == "decommissioned" and not c.deleted
    assert c.version == 4  # added, INSTANCE_OF, MEMBER_OF, retired
    assert index.prop_of_each("DeviceInstance", "health") == {
        "DeviceInstance:FC-B": "warning", "DeviceInstance:FC-C": None, TEMPLATE_DEVICE: None}
    nested = index.prop_of_each("DeviceInstance", "state.health")  # a path into an object
    assert nested["DeviceInstance:FC-C"] == "unknown" and nested[TEMPLATE_DEVICE] is None
    models = [n.id.split(":", 1)[1] for n in index.nodes_of_type("BehavioralModel")]
    assert models == sorted(models) and "drone-flight" in models and "battery-discharge" in models
    assert index.nodes_of_type("NoSuchType") == [] and index.prop_of_each("NoSuchType", "x") == {}


def test_targets_with_prop_reads_a_level_of_the_tree(opened, fleet, mf):
    index = opened.index
    twin_model = f"TwinModel:{MODEL}"
    assert index.targets_with_prop(twin_model, "MODELED_BY", "model_type") == [
        ("BehavioralModel:drone-flight", "composition")]
    elements = dict(index.targets_with_prop(twin_model, "HAS_ELEMENT", "artifact_path"))
    assert elements["DesignElement:enclosure"] == "mech/enclosure.step"
    assert elements["DesignElement:pcb"] == "kicad/flight-controller.kicad_pcb"
    assert elements["DesignElement:firmware"] is None  # no artifact_path: still an element
    assert list(elements) == sorted(elements)
    assert index.targets_with_prop(twin_model, "NO_SUCH_REL", "model_type") == []
    r = mf("mutate", "remove", "DesignElement:firmware", cwd=fleet)
    assert r.code == 0, r.err
    opened.sync_warnings()
    assert "DesignElement:firmware" not in dict(index.targets_with_prop(twin_model, "HAS_ELEMENT", "artifact_path"))
