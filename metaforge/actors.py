"""Who acts on the twin: `user:<name>` (a person) or `agent:<code>` (a tool). Every event names its
actor, and the write policy (thread/policy.py) differs by the kind; this is checked before either.

Its own module at the bottom of the layers, so the write gate can check an actor without
importing the repository that opens it.
"""

from __future__ import annotations

from metaforge.errors import BadInput
from metaforge.limits import check_actor_text


def check_actor(actor: str) -> str:
    check_actor_text(actor)
    kind, _, who = actor.partition(":")
    if kind not in ("user", "agent") or not who.strip():
        raise BadInput(f"actor '{actor}' is not user:<name> or agent:<code>")
    return actor
