"""EngineProcess: JSON lines become signals, stderr is kept, stop/kill/crash/failed start end cleanly.

The "engine" here is a small Python script standing in for `python -m cxrscreen.engine` (the command is
a setting), so every way a process can end is produced on purpose and quickly.
"""
from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cxrscreen.app.engine_process import EngineProcess, ProcessOutcome, _Tail

FAKE = textwrap.dedent("""
    import json, signal, sys, time
    mode = sys.argv[1]
    def say(**kw):
        print(json.dumps(kw), flush=True)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, lambda *a: None)
    elif mode in ("term-stops", "run"):
        def on_term(*a):
            say(event="stopped")
            sys.exit(3)
        signal.signal(signal.SIGTERM, on_term)
    say(event="phase", phase="train", total=3)
    sys.stdout.write("a plain line, not JSON\\n")
    sys.stdout.write(json.dumps({"event": "progress", "step": 1}) + "\\n" + json.dumps({"event": "progress", "step": 2}))
    sys.stdout.flush()
    time.sleep(0.05)
    sys.stdout.write("\\n")  # the second event completed in a later read
    sys.stdout.flush()
    print("warming up", file=sys.stderr, flush=True)
    if mode == "done":
        say(event="done", run_dir="x")
        sys.exit(0)
    if mode == "error":
        say(event="error", message="found 2 readable radiographs; at least 3 known normals are needed")
        print("ERROR engine: details", file=sys.stderr)
        sys.exit(1)
    if mode == "traceback":
        raise RuntimeError("boom in the engine")
    say(event="ready")
    while True:
        time.sleep(0.05)
""")


@pytest.fixture
def fake_engine(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE, encoding="utf-8")
    return [sys.executable, str(script)]


def _run(qtbot, proc: EngineProcess, args: list[str], timeout: int = 15_000) -> tuple[ProcessOutcome, list[dict]]:
    events: list[dict] = []
    proc.events.connect(events.extend)
    with qtbot.waitSignal(proc.finished, timeout=timeout) as done:
        proc.start(args)
    return done.args[0], events


def test_json_lines_become_events_and_text_lines_are_kept(qtbot, fake_engine) -> None:
    proc = EngineProcess(fake_engine)
    outcome, events = _run(qtbot, proc, ["done"])
    assert [e["event"] for e in events] == ["phase", "progress", "progress", "done"]
    assert events[2]["step"] == 2  # a line split across two reads is one event
    assert outcome.status == "done" and outcome.exit_code == 0 and outcome.final_event["run_dir"] == "x"
    assert "warming up" in outcome.stderr_tail
    assert "a plain line, not JSON" in proc.stdout_text_tail
    with qtbot.waitSignal(proc.finished, timeout=15_000):  # the same wrapper runs again
        proc.start(["done"])


def test_an_engine_error_carries_its_message_and_log(qtbot, fake_engine) -> None:
    outcome, _ = _run(qtbot, EngineProcess(fake_engine), ["error"])
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.message.startswith("found 2 readable radiographs")  # the error event, not the exit code
    assert "ERROR engine: details" in outcome.stderr_tail
    # an uncaught exception: exit code 1 without an error event; the message is stderr's last line
    outcome, _ = _run(qtbot, EngineProcess(fake_engine), ["traceback"])
    assert outcome.status == "failed" and "RuntimeError: boom in the engine" in outcome.message
    assert "Traceback" in outcome.stderr_tail


def test_terminate_is_a_graceful_stop(qtbot, fake_engine) -> None:
    proc = EngineProcess(fake_engine)
    events: list[dict] = []
    proc.events.connect(events.extend)
    with qtbot.waitSignal(proc.finished, timeout=15_000) as done:
        proc.start(["term-stops"])
        qtbot.waitUntil(lambda: any(e["event"] == "ready" for e in events), timeout=10_000)
        proc.terminate(grace_ms=5000)
    outcome = done.args[0]
    assert outcome.status == "stopped" and outcome.exit_code == 3 and not outcome.killed
    assert outcome.final_event == {"event": "stopped"}


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period(qtbot, fake_engine) -> None:
    proc = EngineProcess(fake_engine)
    events: list[dict] = []
    proc.events.connect(events.extend)
    crashed: list[ProcessOutcome] = []
    proc.crashed.connect(crashed.append)
    with qtbot.waitSignal(proc.finished, timeout=15_000) as done:
        proc.start(["ignore-term"])
        qtbot.waitUntil(lambda: any(e["event"] == "ready" for e in events), timeout=10_000)
        t0 = time.monotonic()
        proc.terminate(grace_ms=300)
    assert 0.25 < time.monotonic() - t0 < 5.0
    outcome = done.args[0]
    assert outcome.status == "stopped" and outcome.killed and outcome.exit_code is None
    assert not crashed  # the app asked for it: not a crash


def test_wait_kills_at_the_grace_deadline_of_a_pending_terminate(qtbot, fake_engine) -> None:
    # wait() blocks the event loop, so the kill timer cannot fire during it: wait must keep the
    # deadline itself, or a stop on a busy machine would last the whole wait
    proc = EngineProcess(fake_engine, nice=0)
    events: list[dict] = []
    proc.events.connect(events.extend)
    ended: list[ProcessOutcome] = []
    proc.finished.connect(ended.append)
    proc.start(["ignore-term"])
    qtbot.waitUntil(lambda: any(e["event"] == "ready" for e in events), timeout=10_000)
    proc.terminate(grace_ms=300)
    t0 = time.monotonic()
    assert proc.wait(10_000)
    assert time.monotonic() - t0 < 3.0
    assert len(ended) == 1 and ended[0].killed and ended[0].status == "stopped"


def test_a_process_killed_from_outside_is_a_crash(qtbot, fake_engine) -> None:
    proc = EngineProcess(fake_engine)
    events: list[dict] = []
    proc.events.connect(events.extend)
    crashed: list[ProcessOutcome] = []
    proc.crashed.connect(crashed.append)
    with qtbot.waitSignal(proc.finished, timeout=15_000) as done:
        proc.start(["run"])
        qtbot.waitUntil(lambda: any(e["event"] == "ready" for e in events), timeout=10_000)
        os.kill(proc.pid, signal.SIGKILL)  # the system's OOM killer, say
    outcome = done.args[0]
    assert outcome.status == "crashed" and crashed == [outcome]
    assert "ended unexpectedly" in outcome.message and "warming up" in outcome.stderr_tail


def test_a_missing_engine_fails_to_start_with_a_readable_message(qtbot, tmp_path: Path) -> None:
    proc = EngineProcess([str(tmp_path / "no-such-engine")])
    outcome, events = _run(qtbot, proc, ["score"])
    assert outcome.status == "crashed" and not events
    assert "could not be started" in outcome.message and "no-such-engine" in outcome.message
    assert not proc.is_running()


def test_the_child_runs_at_a_lower_priority(qtbot, fake_engine) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("nice values are a Linux feature here")
    proc = EngineProcess(fake_engine, nice=10)
    events: list[dict] = []
    proc.events.connect(events.extend)
    with qtbot.waitSignal(proc.finished, timeout=15_000):
        proc.start(["run"])
        qtbot.waitUntil(lambda: any(e["event"] == "ready" for e in events), timeout=10_000)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) >= 10
        proc.terminate(grace_ms=2000)


def test_bad_commands_are_refused() -> None:
    with pytest.raises(ValueError):
        EngineProcess(["python", ""])


def test_tail_keeps_the_last_lines() -> None:
    tail = _Tail(limit=2)
    assert tail.feed("a\nb") == ["a"]  # "b" is not complete yet
    tail.feed("\nc\nd")
    assert tail.text() == "b\nc\nd"  # two complete lines and the partial one


def test_a_burst_of_lines_is_handed_on_in_bounded_slices_before_finished(qtbot, tmp_path: Path) -> None:
    from cxrscreen.app.engine_process import LINES_PER_TURN

    script = tmp_path / "burst.py"
    script.write_text("import json, sys\n"
                      "sys.stdout.write(''.join(json.dumps({'event': 'record', 'seq': i}) + '\\n' for i in range(1000)))\n"
                      "print(json.dumps({'event': 'done', 'count': 1000}), flush=True)\n")
    proc = EngineProcess([sys.executable, str(script)], nice=0)
    sizes: list[int] = []
    seqs: list[int] = []
    order: list[str] = []
    proc.events.connect(lambda evs: (sizes.append(len(evs)), seqs.extend(e["seq"] for e in evs if "seq" in e),
                                     order.append("events")))
    proc.finished.connect(lambda outcome: order.append("finished"))
    with qtbot.waitSignal(proc.finished, timeout=20_000) as done:
        proc.start([])
    outcome: ProcessOutcome = done.args[0]
    assert seqs == list(range(1000)) and max(sizes) <= LINES_PER_TURN and len(sizes) >= 1001 // LINES_PER_TURN
    assert order[-1] == "finished" and order.count("finished") == 1
    assert outcome.status == "done" and outcome.final_event == {"event": "done", "count": 1000}
    assert not proc.is_running()


def test_wait_hands_on_every_line_before_returning(tmp_path: Path, qapp) -> None:
    script = tmp_path / "burst.py"
    script.write_text("import json\nfor i in range(600): print(json.dumps({'event': 'record', 'seq': i}))\n")
    proc = EngineProcess([sys.executable, str(script)], nice=0)
    seqs: list[int] = []
    ended: list[ProcessOutcome] = []
    proc.events.connect(lambda evs: seqs.extend(e["seq"] for e in evs))
    proc.finished.connect(ended.append)
    proc.start([])
    assert proc.wait(20_000)
    assert seqs == list(range(600)) and len(ended) == 1 and ended[0].status == "done"
