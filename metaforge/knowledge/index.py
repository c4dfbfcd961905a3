"""Keeping the knowledge store current, and searching it.

`update` indexes what changed since the store last looked (new events, entities they touched,
documents whose text changed); `reconcile` recomputes every chunk and makes the store match
exactly (nothing missing, nothing stale, nothing twice). Both embed only chunks whose text
changed. `search` is hybrid: the query's embedding against the chunks' (sqlite-vec) and its
words against their words (FTS5 BM25), fused by reciprocal rank, so an exact part number is
found as surely as a paraphrase.
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager

import numpy as np

from metaforge.knowledge.chunks import (FAMILIES, Chunk, all_entity_chunks, decision_chunks, describer, doc_chunks,
                                        doc_files, entity_chunk)


def store_path(repo):
    return repo.mfdir / "knowledge.db"


@contextmanager
def _locked(repo):
    fd = os.open(repo.mfdir / "knowledge.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def open_store(repo):
    from metaforge.store.knowledge import KnowledgeStore

    return KnowledgeStore(store_path(repo))


def _all_events(repo) -> list[dict]:
    return [r.event for r in repo.log.read()]


def expected_chunks(repo) -> dict[str, Chunk]:
    """Every chunk the repository should have, computed from scratch."""
    chunks = {c.key: c for c in all_entity_chunks(repo.index)}
    chunks.update({c.key: c for c in decision_chunks(_all_events(repo), describer(repo.index))})
    for path in doc_files(repo.root):
        chunks.update({c.key: c for c in doc_chunks(repo.root, path)})
    return chunks


def _apply(store, want: dict[str, Chunk], have: dict[str, str], stale: list[str], progress=None) -> dict:
    """Embed and store the chunks whose text changed, drop the stale ones: one transaction each."""
    from metaforge.knowledge.embed import encode_many

    todo = [c for k, c in want.items() if have.get(k) != c.digest]
    if todo:
        vectors = encode_many([c.embed_text for c in todo], progress)  # before the write lock is taken
        store.write(todo, vectors)
    if stale:
        store.remove(stale)
    return {"embedded": len(todo), "removed": len(stale)}


def _done(repo, store, out: dict, docs: str) -> dict:
    pos = repo.index.position()
    store.set_meta("indexed_seq", str(pos.seq))
    store.set_meta("indexed_hash", pos.hash)
    store.set_meta("docs", docs)
    return {**out, "chunks": store.count()}


def _docs_signature(paths: list) -> str:
    """What the text files look like on disk (names, sizes, modification times): when it has not
    changed, no document is read again."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def reconcile(repo, progress=None) -> dict:
    with _locked(repo):
        return _reconcile(repo, progress)


def _reconcile(repo, progress=None) -> dict:
    store = open_store(repo)
    try:
        docs = _docs_signature(doc_files(repo.root))
        want, have = expected_chunks(repo), store.digests()
        return _done(repo, store, _apply(store, want, have, sorted(k for k in have if k not in want), progress), docs)
    finally:
        store.close()


def update(repo, progress=None) -> dict:
    """Index what changed since the last look: new decisions, entities they touched, changed docs."""
    with _locked(repo):
        store = open_store(repo)
        try:
            pos = repo.index.position()
            seen = int(store.meta("indexed_seq", "0"))
            docs = doc_files(repo.root)
            signature = _docs_signature(docs)
            if seen == pos.seq and store.meta("indexed_hash") == pos.hash and store.meta("docs") == signature:
                return {"embedded": 0, "removed": 0, "chunks": store.count()}  # nothing new: nothing read
            if seen > pos.seq or (store.meta("indexed_hash") and not _same_history(repo, seen, store)):
                replaced = True  # the log is another one now (a checkout, a reset): recompute it all
            else:
                replaced = False
                want: dict[str, Chunk] = {}
                touched: set[str] = set()
                if seen < pos.seq:
                    new = [r.event for r in repo.log.read(_position_after(repo, seen, store.meta("indexed_hash")))]
                    want.update({c.key: c for c in decision_chunks(new, describer(repo.index))})
                    for e in new:
                        touched.add(e["entity"])
                        if isinstance(e.get("payload"), dict) and e["payload"].get("to"):
                            touched.add(e["payload"]["to"])
                    want.update(_entities(repo, touched))
                for path in docs:
                    want.update({c.key: c for c in doc_chunks(repo.root, path)})
                have = store.digests(prefix="doc:")
                have.update(store.digests_of(list(want) + [f"entity:{i}" for i in touched]))
                stale = [f"entity:{i}" for i in touched if f"entity:{i}" not in want and f"entity:{i}" in have]
                stale += [k for k in have if k.startswith("doc:") and k not in want]
                return _done(repo, store, _apply(store, want, have, stale, progress), signature)
        finally:
            store.close()
    if replaced:
        return reconcile(repo, progress)


def _position_after(repo, seq: int, hash_: str | None):
    """Where in the log the event after `seq` starts, to read only what is new."""
    from metaforge.store.log import Position

    if seq == 0:
        return Position()
    refs = repo.index.event_refs(seq=seq + 1)
    return Position(seq, hash_, refs[0][0], refs[0][1]) if refs else Position()


def _same_history(repo, seen: int, store) -> bool:
    """Is the event the store last saw still at that seq (and not another branch's)?"""
    if seen == 0:
        return True
    refs = repo.index.event_refs(seq=seen)
    if not refs:
        return False
    line = repo.log.lines_at(refs)[0]
    return line.get("hash") == store.meta("indexed_hash")


def _entities(repo, ids: set[str]) -> dict[str, Chunk]:
    index = repo.index
    out = {}
    for nid in ids:
        props = index.props(nid)
        if props is None:
            continue
        c = entity_chunk(nid, props, index.edges_from(nid), index.edges_to(nid))
        out[c.key] = c
    return out


# ---- search ------------------------------------------------------------------------------------

# a question about something that was done (why, what happened, what was changed...) asks for a
# decision, or a note that tells one
_ASKS_DECISION = re.compile(
    r"\b(why|how come|reasons?|rationale|because|caus(e|ed|es)|happened|did|was|were|made|led|forced|went|came|come|"
    r"show(ed|s)?|failed|decided|decision|chose|chosen|chang(e|ed|es)|replaced|added|removed|moved|switched|"
    r"raised|lowered|retired|upgraded|dropped|stuck)\b"
    # "what overheated", "which part cracked": a question about a past event
    r"|^\s*(what|which|who)\s+(\w+\s+)?(?!(?:speed|need|feed|seed|bleed|red|bed|embedded|rated|shielded|isolated|"
    r"integrated|used|based|fixed|limited|required|expected|related)\b)\w{2,}ed\b", re.I)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-+/#]*")
_STOP = {"the", "a", "an", "of", "to", "in", "on", "for", "and", "or", "is", "are", "was", "were", "did", "do",
         "does", "we", "why", "what", "which", "how", "when", "who", "it", "its", "at", "by", "with", "from", "that",
         "this", "be", "been", "has", "have", "had", "our", "us", "i", "you", "there", "about",
         # every decision's text says these (design decision by ...: ... Changes: ...)
         "design", "decision", "decisions", "change", "changes", "changed"}
# Scores are in cosine units: the question's similarity to the chunk, plus what follows. Tuned on
# tests/data/ask_labelled.json (46 questions) with tests/data/knowledge_questions.json held to its bar.
KEYWORD_WEIGHT = 0.05  # the keyword ranking's r-th hit gets weight / (1 + r): words confirm meaning
DECISION_BONUS = 0.2  # a question about something done: decisions first
DOC_BONUS = 0.1  # ... and notes, which tell decisions too
FOLLOW, INHERIT = 3, 0.2  # the decisions that changed the 3 best entity hits get 0.2 of their score
EXACT_BONUS = 0.3  # a part number or id written out exactly


def fts_query(question: str) -> str | None:
    """The question's words, OR'ed, each quoted (so a part number's punctuation cannot break FTS5)."""
    words = [w for w in _WORD.findall(question) if w.lower() not in _STOP]
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', "") + '"' for w in words)


def search(repo, question: str, k: int = 10, family: str | None = None, mode: str = "hybrid") -> list[dict]:
    """The k best chunks for a question. Scores: the cosine similarity of the question's embedding
    and the chunk's, plus (hybrid) a share for the keyword (BM25) ranking; a question about
    something done lifts decisions and notes; the decisions that changed the best entity hits
    inherit a share of those hits' scores (a question about a part's change finds the part first,
    the decision through it); an exact part number or id lifts the chunks that have it. A bulk
    decision (a template's creation, an import) is never ranked above another decision. A
    decision's result carries the ids of the entities it changed."""
    store = open_store(repo)
    try:
        kinds = FAMILIES.get(family) if family else None
        pool = max(50, k * 5)
        ranks: dict[int, float] = {}
        if mode in ("hybrid", "vector"):
            from metaforge.knowledge.embed import query_embedder

            q = query_embedder().encode([question])[0]
            rowids, matrix = _matrix(store)
            if len(rowids):
                scores = matrix @ q
                top = np.argpartition(-scores, min(pool, len(scores) - 1))[:pool]
                ranks.update(zip(rowids[top].tolist(), scores[top].tolist()))
        fq = fts_query(question)
        if mode in ("hybrid", "keyword") and fq:
            weight = 1.0 if mode == "keyword" else KEYWORD_WEIGHT
            hits = store.keyword_hits(fq, pool)
            if mode == "hybrid" and len(rowids):
                missing = [rid for rid in hits if rid not in ranks]  # found by words only: its similarity too
                at = np.flatnonzero(np.isin(rowids, missing))
                ranks.update(zip(rowids[at].tolist(), (matrix[at] @ q).tolist()))
            for rank, rowid in enumerate(hits):
                ranks[rowid] = ranks.get(rowid, 0.0) + weight / (1 + rank)
        rows = {rid: store.chunk(rid) for rid in ranks}
        rows = {rid: row for rid, row in rows.items() if row is not None}
        # the decisions behind the best entity hits
        follow = sorted(((ranks[rid], row[0].removeprefix("entity:")) for rid, row in rows.items()
                         if row[0].startswith("entity:")), reverse=True)[:FOLLOW]
        inherited: dict[int, float] = {}
        best = dict((e, s) for s, e in reversed(follow))
        for entity, rid in store.decisions_touching(list(best)):
            inherited[rid] = max(inherited.get(rid, 0.0), INHERIT * best[entity])
        for rid in inherited:
            if rid not in rows and (row := store.chunk(rid)) is not None:
                rows[rid] = row
        exact = [w.lower() for w in _WORD.findall(question) if _is_code(w)]
        asks_decision = bool(_ASKS_DECISION.search(question))
        results = []
        for rowid, (key, kind, title, text, source, entities, bulk) in rows.items():
            if kinds and kind not in kinds:
                continue
            score = ranks.get(rowid, 0.0) + inherited.get(rowid, 0.0)
            if exact and any(w in text.lower() for w in exact):
                score += EXACT_BONUS  # a part number or id written out exactly is a strong signal
            if asks_decision and kind == "decision":
                score += DECISION_BONUS
            elif asks_decision and kind == "doc":
                score += DOC_BONUS
            hit = {"key": key, "kind": kind, "title": title, "source": source, "score": round(score, 5),
                   "snippet": snippet(text, question)}
            if kind == "decision":
                hit["entities"] = list(entities)
                hit["bulk"] = bulk
            results.append(hit)
        results.sort(key=lambda r: -r["score"])
        return _bulk_after_decisions(results)[:k]
    finally:
        store.close()


def _is_code(word: str) -> bool:
    """A part number or an id (AP2112K-3.3TRG1, REQ-003, FC-SN-20260301-001), not a value (3.3, 50C)."""
    return len(word) >= 5 and any(ch.isdigit() for ch in word) and sum(ch.isalpha() for ch in word) >= 2


def _bulk_after_decisions(results: list[dict]) -> list[dict]:
    """Move each bulk decision below the last other decision it was ranked above."""
    last = max((i for i, r in enumerate(results) if r["kind"] == "decision" and not r["bulk"]), default=-1)
    early_bulk = [r for r in results[:last] if r.get("bulk")]
    if not early_bulk:
        return results
    moved = {id(r) for r in early_bulk}
    rest = [r for r in results if id(r) not in moved]
    at = rest.index(results[last]) + 1
    return rest[:at] + early_bulk + rest[at:]


_matrices: dict[str, tuple] = {}


def _matrix(store):
    """The store's vectors as one matrix: kept in memory between searches of a process, and in
    `.metaforge/cache/` between processes (reading 100,000 rows out of vec0 takes a second; the
    cached copy maps in milliseconds). Both are keyed by the store's version."""
    key = str(store.path)
    version = store.meta("version", "0")
    held = _matrices.get(key)
    if held is None or held[0] != version:
        cache = store.path.parent / "cache"
        mfile, rfile = cache / f"knowledge-{version}.vectors.npy", cache / f"knowledge-{version}.rowids.npy"
        try:
            rowids, matrix = np.load(rfile), np.load(mfile, mmap_mode="r")
        except (OSError, ValueError):
            rowids, matrix = store.vectors()
            _save_matrix(cache, version, rowids, matrix)
        held = _matrices[key] = (version, rowids, matrix)
    return held[1], held[2]


def _save_matrix(cache, version: str, rowids, matrix) -> None:
    try:
        cache.mkdir(exist_ok=True)
        for old in cache.glob("knowledge-*.npy"):
            old.unlink(missing_ok=True)
        for name, array in (("rowids", rowids), ("vectors", matrix)):
            tmp = cache / f".knowledge-{version}.{name}.{os.getpid()}.npy"
            np.save(tmp, array)
            os.replace(tmp, cache / f"knowledge-{version}.{name}.npy")
    except OSError:
        pass  # a cache that cannot be written only costs time


def snippet(text: str, question: str, width: int = 220) -> str:
    words = [w.lower() for w in _WORD.findall(question) if w.lower() not in _STOP]
    low = text.lower()
    at = min((low.find(w) for w in words if low.find(w) >= 0), default=0)
    start = max(0, at - width // 3)
    piece = text[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(text) else "")
