"""The dotted names of the event types, one constant each (re-exported by `metaforge.events`);
`events.payloads` declares each one's payload. A module of its own so the declarations can
import the names without importing the package that validates with them."""

# The architecture's dotted names, one constant each; `events.payloads` declares each one's payload.
# The graph projection folds the first six and ignores the rest (later layers project those).
NODE_CREATED = "node.created"
NODE_UPDATED = "node.updated"
NODE_DELETED = "node.deleted"
PROPERTY_SET = "property.set"
EDGE_CREATED = "edge.created"
EDGE_DELETED = "edge.deleted"
GRAPH_EVENT_TYPES = (NODE_CREATED, NODE_UPDATED, NODE_DELETED, PROPERTY_SET, EDGE_CREATED, EDGE_DELETED)

PROPOSAL_CREATED = "proposal.created"
PROPOSAL_APPROVED = "proposal.approved"
PROPOSAL_REJECTED = "proposal.rejected"

ARTIFACT_MAPPED = "artifact.mapped"
STATE_LINKED = "state.linked"
DRIFT_DETECTED = "drift.detected"
DRIFT_RESOLVED = "drift.resolved"
MERGE_RESOLVED = "merge.resolved"

DEVICE_PROVISIONED = "device.provisioned"
DEVICE_POLICY_CHANGED = "device.policy_changed"
DEVICE_DECOMMISSIONED = "device.decommissioned"
DEVICE_STATE_UPDATED = "device.state_updated"

SIMULATION_STARTED = "simulation.started"
SIMULATION_COMPLETED = "simulation.completed"
SIMULATION_FAILED = "simulation.failed"
SIMULATION_DIVERGENCE_DETECTED = "simulation.divergence_detected"
