"""The labelled question set of `mf ask` (tests/data/ask_labelled.json): a drone twin with its
decisions applied, and recall@k / MRR of a search mode over the questions. Shared by
tests/test_knowledge.py and benchmarks/bench_knowledge.py."""

from __future__ import annotations

import json
from pathlib import Path

DATA = json.loads((Path(__file__).parent / "data" / "ask_labelled.json").read_text())


def labelled_twin(path: Path):
    """A drone twin (the template) with every labelled decision made as one command of its own;
    returns the repository and {decision id: its chunk key}."""
    from metaforge.cli.app import run
    from metaforge.repo import Repo
    from metaforge.thread.changes_file import change_from_dict
    from metaforge.thread.commands import execute

    assert run(["init", str(path), "--template", "drone-flight-controller"]) == 0
    repo = Repo.find(path)
    repo.sync_warnings()
    seqs = {}
    for i, d in enumerate(DATA["decisions"]):
        result = execute(repo, [change_from_dict(d["change"], d["id"])], actor=f"user:Engineer {i % 4}",
                         message=d["msg"])
        assert not result.refused and result.proposal is None, (d["id"], result.verdicts)
        assert result.last_seq >= result.first_seq > 0, d["id"]  # it changed something
        seqs[d["id"]] = result.first_seq
    ids = {r.event["seq"]: r.event["id"] for r in repo.log.read()}
    return repo, {d: f"decision:{ids[seq]}" for d, seq in seqs.items()}


def quality(repo, keys: dict[str, str], mode: str = "hybrid", k: int = 5) -> dict:
    """recall@k, MRR (over the first 10 results) and top-1 of one search mode, and the questions
    whose decision was not in the first k, with what came first instead."""
    from metaforge.knowledge.index import search

    hits = top1 = 0
    rr = 0.0
    missed = []
    for item in DATA["questions"]:
        found = [r["key"] for r in search(repo, item["q"], k=10, mode=mode)]
        want = keys[item["decision"]]
        rank = found.index(want) + 1 if want in found else None
        hits += bool(rank and rank <= k)
        top1 += rank == 1
        rr += 1 / rank if rank else 0.0
        if not rank or rank > k:
            missed.append((item["q"], rank, found[:2]))
    n = len(DATA["questions"])
    return {"recall": hits / n, "mrr": rr / n, "top1": top1 / n, "n": n, "missed": missed}
