"""`mf drift watch` as a real process following real saves: a plain write, a save by rename,
a cosmetic save, a revert; exactly one drift.detected per save that changes the disagreement,
drift.resolved when the file goes back, what changed while nothing watched, and Ctrl-C."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import read_log
from kicad_edits import C1, PCB, SCH, demo_twin, drift_events, move_symbol, set_value


@pytest.fixture
def board(twin, mf):
    return demo_twin(twin, mf)


class Watch:
    """A running `mf drift watch --json`, its JSON lines read as they come."""

    def __init__(self, cwd, *args):
        self.proc = subprocess.Popen([sys.executable, "-m", "metaforge", "drift", "watch", "--json",
                                      "--debounce", "100", *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, kind, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                event = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                break
            if event["event"] == kind:
                return event
        raise AssertionError(f"no {kind} event within {timeout} s; stderr: {self.stop()[1]}")

    def quiet(self, seconds):
        """Nothing reported for this long."""
        try:
            event = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError(f"unexpected: {event}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def rename_save(path, text):
    """Save the way many editors do: write a new file beside it, rename it over the old one."""
    tmp = path.with_name(path.name + ".saving")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_watch_records_each_save_once_and_the_revert(board):
    pcb = board / PCB
    pcb_before = pcb.read_text()
    pcb.write_text(pcb_before.replace('"100µF"', '"101uF"'))  # changed while nothing watched
    watch = Watch(board)
    try:
        started = watch.next("started")
        assert [(d["path"], d["direction"]) for d in started["detected"]] == [(PCB, "file")]
        sch = board / SCH
        original = sch.read_text()

        set_value(sch, "C1", "221uF")  # a plain write (truncate, write)
        d = watch.next("reconciled")["detected"]
        assert [(x["path"], x["items"][0]["file"]) for x in d] == [(SCH, "221uF")]

        scratch = board.parent / "scratch.kicad_sch"  # outside the watched tree
        scratch.write_text(sch.read_text())
        set_value(scratch, "C1", "222uF")
        rename_save(sch, scratch.read_text())  # the next edit, saved by rename
        d = watch.next("reconciled")["detected"]
        assert [(x["path"], x["items"][0]["file"]) for x in d] == [(SCH, "222uF")]

        move_symbol(sch, "C1")  # a cosmetic save while the drift is open: nothing new
        watch.quiet(2.0)

        rename_save(sch, original)  # back to what the graph holds
        r = watch.next("reconciled")["resolved"]
        assert [(x["path"], x["how"]) for x in r] == [(SCH, "reverted")]
        pcb.write_text(pcb_before)
        r = watch.next("reconciled")["resolved"]
        assert [(x["path"], x["how"]) for x in r] == [(PCB, "reverted")]
    finally:
        code, err = watch.stop()
    assert code == 0, err
    assert "stopped watching" in err and "Traceback" not in err
    log = read_log(board)
    detected = drift_events(log, "drift.detected", SCH)
    assert [e["payload"]["items"][0]["file"] for e in detected] == ["221uF", "222uF"]  # one per save
    assert [e["payload"]["how"] for e in drift_events(log, "drift.resolved", SCH)] == ["reverted"]
    assert len(drift_events(log, "drift.detected", PCB)) == 1
    assert len(drift_events(log, "drift.resolved", PCB)) == 1


def test_watch_accept_takes_a_persons_saves_into_the_graph(board, mf):
    watch = Watch(board, "--accept")
    try:
        watch.next("started")
        set_value(board / SCH, "C1", "150uF")
        accepted = watch.next("accepted")
        assert accepted["path"] == SCH and accepted["actor"] == "user:tester" and accepted["changes"] == 1
        # the graph moved: the board, which still says 100µF, is now behind it
        d = watch.next("reconciled")["detected"]
        assert [(x["path"], x["direction"]) for x in d] == [(PCB, "graph")]
    finally:
        code, err = watch.stop()
    assert code == 0, err
    assert mf("show", C1, "--json", cwd=board).json["properties"]["value"] == "150uF"
    log = read_log(board)
    assert [e["type"] for e in log[-5:]] == ["drift.detected", "property.set", "artifact.mapped", "drift.resolved",
                                             "drift.detected"]
    assert log[-2]["payload"]["how"] == "accept-file" and log[-1]["payload"]["path"] == PCB


def test_watch_notices_the_graph_moving_under_the_files(board, mf):
    """A mutation made by another process (the log changed) is drift too: graph newer than file."""
    watch = Watch(board)
    try:
        watch.next("started")
        assert mf("mutate", "set", C1, "value=47uF", cwd=board).code == 0
        d = watch.next("reconciled")["detected"]
        assert sorted((x["path"], x["direction"]) for x in d) == [(PCB, "graph"), (SCH, "graph")]
    finally:
        code, err = watch.stop()
    assert code == 0, err
