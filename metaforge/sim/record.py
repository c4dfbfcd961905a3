"""Every run is a SimulationRun: what ran (models and their versions, the semantic version of the
twin, the git commit), on what (inputs, overrides, start state, devices), and what came out.

Two appends, as the run happens: `simulation.started` with the SimulationRun's creation before
it, `simulation.completed` (or `simulation.failed`) with its results after, so a run that dies
midway still shows in the history. Events that change no entity (`simulation.*`) are appended
in the same atomic batch as the graph changes, like the live twin's `device.state_updated`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone

from metaforge import events as ev

MAX_LISTED_DEVICES = 50   # a fleet run names its twin model and a count, not 10,000 edges


def model_versions(composed) -> dict:
    out = {}
    for loaded in [*composed.members.values(), *([composed.source] if composed.source else [])]:
        d = loaded.definition
        out[d.name] = {"model_type": d.model_type, "entity_version": loaded.entity_version,
                       "definition": loaded.display, "sha256": loaded.sha256[:16]}
    return out


def start(repo, kind: str, *, actor: str, scenario: str, composed, targets: list[str], props: dict) -> str:
    from metaforge.thread.commands import Change
    from metaforge.thread.policy import Source

    now = datetime.now(timezone.utc)
    run_id = f"SimulationRun:{kind}-{now.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    base = {"kind": kind, "scenario": scenario, "started_at": ev.now(), "result": "running",
            "models": model_versions(composed), "semantic_version": repo.index.position().seq}
    commit_id = _git_head(repo)
    if commit_id:
        base["git_commit"] = commit_id
    changes = [Change("add", run_id, props={**base, **props})]
    listed = [t for t in targets if not t.startswith("DeviceInstance:")]
    devices = [t for t in targets if t.startswith("DeviceInstance:")]
    if len(devices) <= MAX_LISTED_DEVICES:
        listed += devices
    changes += [Change("link", run_id, rel="SIMULATES", dst=t) for t in dict.fromkeys(listed)]
    with repo.transaction(actor, Source.SIM_RECORD) as tx:
        tx.change(changes, f"{kind}: {scenario}", extra=[ev.Draft(ev.SIMULATION_STARTED, run_id, 1,
                                                              {"kind": kind, "scenario": scenario, "devices": len(devices)})])
    return run_id


def complete(repo, run_id: str, *, actor: str, props: dict, payload: dict, extra: list | None = None,
             failed: bool = False) -> None:
    """The run's results on its SimulationRun, and `simulation.completed` (or `.failed`); `extra`
    are more event drafts for the same batch (a divergence alert)."""
    from metaforge.thread.commands import Change
    from metaforge.thread.policy import Source

    props = {**props, "finished_at": ev.now(), "result": props.get("result", "failed" if failed else "ok")}
    kind = ev.SIMULATION_FAILED if failed else ev.SIMULATION_COMPLETED
    with repo.transaction(actor, Source.SIM_RECORD) as tx:
        tx.change([Change("set", run_id, props=props)], extra=[ev.Draft(kind, run_id, 1, payload), *(extra or [])])


def _git_head(repo) -> str | None:
    """HEAD's commit, read from .git without starting git (a what-if must answer in well under a second)."""
    git = repo.root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = (repo.root / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        for base in (git, _common_dir(git)):
            path = base / ref
            if path.is_file():
                return path.read_text().strip()
            packed = base / "packed-refs"
            if packed.is_file():
                for line in packed.read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def _common_dir(git):
    common = git / "commondir"
    return (git / common.read_text().strip()).resolve() if common.is_file() else git
