"""workers.forked: a worker's children and its pipes to them, with real forks and real pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import child_env

from workers import forked


def _write(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _exit_with(code: object) -> None:
    raise SystemExit(code)


def _raise() -> None:
    raise ValueError("the target failed")


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


@pytest.mark.parametrize("target, args, code", [
    (_write, ("{path}", "ran"), 0),
    (_exit_with, (3,), 3),
    (_exit_with, (None,), 0),
    (_exit_with, ("a message",), 1),
    (_raise, (), 1),
])
def test_a_child_s_exit_code_says_how_its_target_ended(tmp_path: Path, target, args, code):
    path = str(tmp_path / "out")
    child = forked.fork(target, tuple(a.format(path=path) if a == "{path}" else a for a in args))
    child.join(timeout=30)
    assert child.exitcode == code
    assert not child.is_alive()
    if target is _write:
        assert Path(path).read_text() == "ran"


def test_a_failing_target_s_traceback_goes_to_stderr(children):
    code = ("from workers import forked\n"
            "def fail():\n    raise ValueError('the target failed')\n"
            "c = forked.fork(fail, ())\nc.join()\nprint(c.exitcode)\n")
    proc = children.run(code, timeout=30)
    assert proc.stdout.strip() == "1"
    assert "jobq child process" in proc.stderr
    assert "ValueError: the target failed" in proc.stderr


def test_a_killed_child_s_exit_code_is_minus_the_signal():
    child = forked.fork(_sleep, (60,))
    assert child.is_alive()
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=30)
    assert child.exitcode == -signal.SIGKILL


def test_join_with_a_timeout_returns_while_the_child_runs():
    child = forked.fork(_sleep, (60,))
    try:
        started = time.monotonic()
        child.join(timeout=0.1)
        assert child.exitcode is None and child.is_alive()
        assert 0.09 <= time.monotonic() - started < 10
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert child.exitcode == -signal.SIGKILL


def test_the_sentinel_is_readable_once_the_child_has_exited():
    child = forked.fork(_sleep, (0.2,))
    assert forked.wait([child.sentinel], 0) == []
    assert forked.wait([child.sentinel], 30) == [child.sentinel]
    child.join()
    assert child.exitcode == 0


def _threads_then_return(path: str) -> None:
    def later() -> None:
        time.sleep(0.3)
        _write(path, "thread")

    threading.Thread(target=later).start()  # not a daemon: the child waits for it


def test_a_child_ends_once_its_threads_that_are_not_daemons_have(tmp_path: Path):
    path = str(tmp_path / "out")
    child = forked.fork(_threads_then_return, (path,))
    child.join(timeout=30)
    assert child.exitcode == 0
    assert Path(path).read_text() == "thread"


def _read_stdin(path: str) -> None:
    _write(path, repr(sys.stdin.read()))


def test_a_child_s_stdin_is_empty(tmp_path: Path):
    """Even when its parent's stdin has input waiting (it is not the child's to take)."""
    path = str(tmp_path / "out")
    code = ("import sys\nsys.path.insert(0, sys.argv[2])\nfrom workers import forked\n"
            "import test_forked as t\nc = forked.fork(t._read_stdin, (sys.argv[1],))\n"
            "c.join()\nprint(c.exitcode, repr(sys.stdin.read()))\n")
    proc = subprocess.run([sys.executable, "-c", code, path, str(Path(__file__).parent)],
                          input="the parent's input", capture_output=True, text=True,
                          env=child_env(), timeout=30)
    assert proc.stdout == "0 \"the parent's input\"\n", proc.stderr
    assert Path(path).read_text() == "''"


def test_output_buffered_before_the_fork_is_written_once(children):
    code = ("import sys\nfrom workers import forked\nsys.stdout.write('before')\n"
            "c = forked.fork(print, (' child',))\nc.join()\n")
    proc = children.run(code, timeout=30)
    assert proc.stdout == "before child\n"


def test_messages_go_both_ways_whole():
    ours, theirs = forked.pipe()
    try:
        big = b"x" * (1 << 20)  # past a pipe's buffer: written while the other side reads
        sender = threading.Thread(target=ours.send, args=(("big", big),))
        sender.start()
        assert theirs.poll(30)
        assert theirs.recv() == ("big", big)
        sender.join()
        theirs.send(None)
        theirs.send(("recorded", 3, ["a"]))
        assert ours.recv() is None
        assert ours.recv() == ("recorded", 3, ["a"])
        assert not ours.poll(0)
    finally:
        ours.close()
        theirs.close()


def test_poll_waits_for_a_message_up_to_its_timeout():
    ours, theirs = forked.pipe()
    try:
        started = time.monotonic()
        assert not ours.poll(0.1)
        assert time.monotonic() - started >= 0.09
        threading.Timer(0.1, theirs.send, args=(("wake",),)).start()
        assert ours.poll(None)
        assert ours.recv() == ("wake",)
    finally:
        ours.close()
        theirs.close()


def test_a_closed_end_is_seen_from_the_other_and_refused_on_its_own():
    ours, theirs = forked.pipe()
    theirs.close()
    assert ours.poll(0)  # the end of the pipe is there to read
    with pytest.raises(EOFError):
        ours.recv()
    with pytest.raises(BrokenPipeError):
        ours.send(("wake",))
    ours.close()
    for call in (ours.fileno, lambda: ours.send(None), ours.recv, ours.poll):
        with pytest.raises(OSError, match="closed"):
            call()
    ours.close()  # twice: nothing more to do


def test_a_message_cut_by_its_sender_s_death_is_the_end_of_the_pipe():
    ours, theirs = forked.pipe()
    os.write(theirs._write, forked._LENGTH.pack(100) + b"only part of it")
    theirs.close()
    with pytest.raises(EOFError):
        ours.recv()
    ours.close()


def test_wait_returns_the_objects_that_are_ready():
    a, b = forked.pipe()
    c, d = forked.pipe()
    read, write = os.pipe()
    try:
        assert forked.wait([a, c, read], 0) == []
        b.send(1)
        os.write(write, b"!")
        assert sorted(map(id, forked.wait([a, c, read], 5))) == sorted(map(id, [a, read]))
    finally:
        for end in (a, b, c, d):
            end.close()
        os.close(read)
        os.close(write)
