"""The board a worker child shares with its supervisor: what runs, since when, and stop."""

from __future__ import annotations

import os
import time

from workers.board import Board, Running


def test_board_shows_the_running_claim_and_its_time_limit_then_idle():
    board = Board()
    assert board.read() is None and not board.stop_requested()
    before = time.monotonic()
    board.running("job-é" * 40, 7)  # 200 characters, some of them two bytes long
    seen = board.read()
    assert isinstance(seen, Running)
    assert (seen.job_id, seen.token, seen.timeout) == ("job-é" * 40, 7, None)
    assert before <= seen.started <= time.monotonic()
    board.time_limit(seen.job_id, 7, 2.5)
    limited = board.read()
    assert limited is not None and (limited.timeout, limited.started) == (2.5, seen.started)
    board.idle()
    assert board.read() is None
    board.close()


def test_a_forked_child_writes_what_its_parent_reads_and_reads_its_stop_request():
    board = Board()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: publish a claim, wait for the stop request, then leave
        try:
            board.running("abc", 3, 9.0)
            os.write(write_end, b"x")
            deadline = time.monotonic() + 10
            while not board.stop_requested() and time.monotonic() < deadline:
                time.sleep(0.001)
            board.idle()
        finally:
            os._exit(0 if board.stop_requested() else 1)
    os.close(write_end)
    assert os.read(read_end, 1) == b"x"
    seen = board.read()
    assert seen is not None and (seen.job_id, seen.token, seen.timeout) == ("abc", 3, 9.0)
    board.request_stop()
    _, status = os.waitpid(pid, 0)
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert board.read() is None
    board.close()
