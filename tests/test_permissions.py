"""Permissions: one clear line for a queue this user may not use, and queues shared by a group.

Root ignores permission bits, so these tests run jobq as other users, in child processes
(``subprocess.run(user=, group=, extra_groups=)``, numeric ids with no /etc/passwd entry). That
needs root: they are skipped only when the suite does not run as root (CI runs as root). The
children run a copy of jobq (and structlog and filelock) in a directory every user can read, with
the first Python interpreter such a user can run: the suite's own may live under a 0700 /root.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from jobq import Queue
from jobq.local import permissions
from jobq.errors import QueuePermissionError

from jobtasks import add

ALICE, BOB, CAROL = 61001, 61002, 61003  # uids no one on the machine uses
TEAM = 61100  # the group alice and bob share the queue with; carol is not in it

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="runs jobq as other users, which needs root (CI is root)")

TASKS = '''
from jobq import current_job

def add(a, b):
    return a + b

def count(n):
    ctx = current_job()
    i = ctx.checkpoint or 0
    while i < n:
        i += 1
        ctx.save(i, progress=i / n)
    return i
'''


@dataclass(frozen=True)
class Sandbox:
    base: str  # every user may enter it; the users' own directories are made in it
    lib: str
    python: str

    def home(self, uid: int) -> str:
        path = os.path.join(self.base, f"home-{uid}")
        if not os.path.isdir(path):
            os.mkdir(path, 0o755)
            os.chown(path, uid, uid)
        return path

    def run(self, uid: int, *argv: str, groups: tuple[int, ...] = (), umask: int = 0o022,
            timeout: float = 120, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """Run ``python argv...`` as ``uid`` (its own group, plus ``groups``), with ``env`` added
        to a minimal environment."""
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": self.lib, "HOME": self.home(uid),
               "PYTHONDONTWRITEBYTECODE": "1", "JOBQ_HOME": os.path.join(self.base, "unused"),
               **(env or {})}
        return subprocess.run([self.python, *argv], user=uid, group=uid,
                              extra_groups=list(groups), umask=umask, env=env,
                              cwd=self.home(uid), capture_output=True, text=True,
                              timeout=timeout)

    def jobq(self, uid: int, *args: str, **options: object) -> subprocess.CompletedProcess[str]:
        return self.run(uid, "-m", "jobq.cli", *args, **options)  # type: ignore[arg-type]


def _copy_packages(lib: str) -> None:
    for name in ("jobq", "workers", "structlog", "filelock", "cronsim"):
        source = os.path.dirname(importlib.import_module(name).__file__ or "")
        shutil.copytree(source, os.path.join(lib, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    try:
        import typing_extensions  # structlog needs it on old Pythons
        shutil.copy(typing_extensions.__file__ or "", lib)
    except ImportError:
        pass
    with open(os.path.join(lib, "permtasks.py"), "w") as f:
        f.write(TASKS)


def _interpreter(base: str, lib: str) -> str | None:
    """The first Python 3.10+ that a user with no rights on this machine can run on ``lib``."""
    candidates = [sys.executable, os.path.realpath(sys.executable), shutil.which("python3"),
                  "/usr/bin/python3", *sorted(glob.glob("/usr/bin/python3.1[0-9]")),
                  *sorted(glob.glob("/usr/local/bin/python3.1[0-9]"))]
    check = "import sys, sqlite3; assert sys.version_info >= (3, 10); import jobq.cli, workers"
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            done = subprocess.run([candidate, "-c", check], user=CAROL, group=CAROL,
                                  env={"PYTHONPATH": lib, "HOME": base}, cwd=base,
                                  capture_output=True, timeout=60)
        except OSError:  # EACCES on the way to it
            continue
        if done.returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("runs jobq as other users, which needs root (CI is root)")
    base = tempfile.mkdtemp(prefix="jobq-perms-")
    try:
        os.chmod(base, 0o755)
        lib = os.path.join(base, "lib")
        os.mkdir(lib, 0o755)
        _copy_packages(lib)
        for path, dirs, files in os.walk(lib):
            for name in dirs:
                os.chmod(os.path.join(path, name), 0o755)
            for name in files:
                os.chmod(os.path.join(path, name), 0o644)
        python = _interpreter(base, lib)
        if python is None:
            pytest.fail("no Python 3.10+ interpreter that another user can run was found"
                        f" (tried {sys.executable} and /usr/bin/python3*)")
        subprocess.run([python, "-m", "compileall", "-q", lib], check=True,
                       capture_output=True)  # as root: the users' runs start faster
        for path, dirs, files in os.walk(lib):
            for name in dirs:
                os.chmod(os.path.join(path, name), 0o755)
        yield Sandbox(base, lib, python)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr (no traceback); that line."""
    assert done.returncode != 0, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobq: error: "), done.stderr
    return lines[0]


def alice_queue(sandbox: Sandbox, name: str) -> str:
    """A queue alice created, with one job in it."""
    path = os.path.join(sandbox.home(ALICE), name)
    done = sandbox.jobq(ALICE, "enqueue", "--dir", path, "permtasks:add", "1", "2")
    assert done.returncode == 0, done.stderr
    return path


COMMANDS = [("status",), ("list",), ("show", "0"), ("verify",),
            ("enqueue", "permtasks:add", "1", "2"), ("worker", "--burst"), ("compact",)]


@needs_root
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_another_users_queue_is_a_permission_error_not_no_queue(sandbox, command):
    """A queue bob may not even look into: one line naming the directory, its owner and the
    way out, for every command; never "no queue at" (there is one)."""
    path = alice_queue(sandbox, f"private-{command[0]}")
    line = one_line_error(sandbox.jobq(BOB, command[0], "--dir", path, *command[1:]))
    assert "no queue" not in line
    assert f"uid {BOB} cannot read {path} (owner uid {ALICE}" in line, line
    assert "mode 0700" in line and "--shared-group" in line, line
    assert not os.path.exists(os.path.join(path, "workers")), "the refused worker wrote nothing"


@needs_root
def test_no_queue_is_still_no_queue(sandbox):
    """Where there is no queue (and bob may look), the message stays "no queue at"."""
    line = one_line_error(sandbox.jobq(BOB, "status", "--dir",
                                       os.path.join(sandbox.home(ALICE), "nothing-here")))
    assert "no queue at" in line


@needs_root
@pytest.mark.parametrize("command", [("status",), ("list",), ("verify",)], ids=lambda c: c[0])
def test_read_only_access_is_one_line_saying_jobq_must_write(sandbox, command):
    """Bob may read alice's queue but not write it: reads fail too, with one line, because
    every command indexes the log into the state database and takes its locks (and SQLite opens
    a WAL database read-only only while a writer holds it open)."""
    path = alice_queue(sandbox, f"readable-{command[0]}")
    for where, dirs, files in os.walk(path):
        os.chmod(where, 0o755)
        for name in files:
            os.chmod(os.path.join(where, name), 0o644)
    line = one_line_error(sandbox.jobq(BOB, command[0], "--dir", path))
    assert f"uid {BOB} cannot write {path}" in line, line
    assert "every jobq command writes to its queue, reads included" in line
    assert f"run jobq as uid {ALICE}" in line


def _modes(path: str) -> dict[str, tuple[int, int]]:
    """(group, mode) of every directory and file under ``path``, by relative path."""
    found = {".": (os.stat(path).st_gid, stat.S_IMODE(os.stat(path).st_mode))}
    for where, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(where, name)
            st = os.lstat(full)
            found[os.path.relpath(full, path)] = (st.st_gid, stat.S_IMODE(st.st_mode))
    return found


def _assert_shared(path: str) -> None:
    for name, (gid, mode) in _modes(path).items():
        assert gid == TEAM, (name, gid)
        is_dir = os.path.isdir(os.path.join(path, name))
        assert mode in ((0o2770,) if is_dir else (0o660, 0o440)), (name, oct(mode))


PRODUCE = '''
import json, sys
from jobq import Queue
with Queue(sys.argv[1]) as q:
    print(json.dumps([q.enqueue("permtasks:count", 5), q.enqueue("permtasks:add", 2, 3)]))
'''

READ_BACK = '''
import json, sys
from jobq import Queue
with Queue(sys.argv[1]) as q:
    states = [q.state(j) for j in json.loads(sys.argv[2])]
    print(json.dumps([[s.status.value, s.result, s.checkpoint] for s in states]))
'''


@needs_root
def test_a_producer_and_a_worker_of_two_users_share_a_queue(sandbox):
    """Alice (the web app) shares her queue with group TEAM; bob (the worker) runs its jobs and
    saves checkpoints; both compact and start new segments; every file ends up TEAM's, 0660 (or
    0440 when sealed) in 2770 directories, whatever each one's umask; carol is refused."""
    team = (TEAM,)
    path = alice_queue(sandbox, "shared")  # made owner-only first: init converts it
    done = sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group", str(TEAM), groups=team)
    assert done.returncode == 0 and "shared with group" in done.stdout, done.stderr
    _assert_shared(path)

    made = sandbox.run(ALICE, "-c", PRODUCE, path, groups=team)
    assert made.returncode == 0, made.stderr
    jobs = json.loads(made.stdout)
    work = sandbox.jobq(BOB, "worker", "--burst", "--dir", path, groups=team, umask=0o077)
    assert work.returncode == 0, work.stderr
    read = sandbox.run(ALICE, "-c", READ_BACK, path, json.dumps(jobs), groups=team)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == [["succeeded", 5, 5], ["succeeded", 5, None]]

    # Bob compacts: he seals alice's segment (not his to chmod) and starts a new one.
    purge = sandbox.jobq(ALICE, "purge", "--dir", path, "--older-than", "0s", groups=team)
    assert purge.returncode == 0, purge.stderr
    compact = sandbox.jobq(BOB, "compact", "--dir", path, groups=team, umask=0o077)
    assert compact.returncode == 0, compact.stderr
    segments = sorted(os.listdir(os.path.join(path, "log")))
    owners = {name: os.stat(os.path.join(path, "log", name)).st_uid for name in segments}
    assert owners["000000000002.log"] == BOB, owners
    # Alice appends to bob's new segment; bob runs it; alice compacts his segment in turn.
    again = sandbox.jobq(ALICE, "enqueue", "--dir", path, "permtasks:add", "40", "2",
                         groups=team)
    assert again.returncode == 0, again.stderr
    work = sandbox.jobq(BOB, "worker", "--burst", "--dir", path, groups=team, umask=0o077)
    assert work.returncode == 0, work.stderr
    shown = sandbox.jobq(ALICE, "show", "--dir", path, again.stdout.strip(), groups=team)
    assert "result       int 42" in shown.stdout, shown
    for user, umask in ((ALICE, 0o022), (BOB, 0o077)):
        purge = sandbox.jobq(user, "purge", "--dir", path, "--older-than", "0s", groups=team)
        compact = sandbox.jobq(user, "compact", "--dir", path, groups=team, umask=umask)
        assert purge.returncode == 0 and compact.returncode == 0, (purge.stderr, compact.stderr)
        status = sandbox.jobq(user, "status", "--dir", path, groups=team)
        assert status.returncode == 0, status.stderr
    _assert_shared(path)
    created_by = {os.stat(os.path.join(where, name)).st_uid
                  for where, _, files in os.walk(path) for name in files}
    assert BOB in created_by

    status = sandbox.jobq(BOB, "status", "--dir", path, groups=team)
    assert status.stdout.splitlines()[0] == f"queue {path} (shared with group {TEAM})", status
    # A backup is for the same users: shared too, and alice can open bob's copy.
    copy = os.path.join(sandbox.home(BOB), "shared-backup")
    backup = sandbox.jobq(BOB, "backup", "--dir", path, copy, groups=team, umask=0o077)
    assert backup.returncode == 0, backup.stderr
    _assert_shared(copy)
    status = sandbox.jobq(ALICE, "status", "--dir", copy, "--json", groups=team)
    assert json.loads(status.stdout)["counts"]["succeeded"] == 0, status  # all purged
    assert json.loads(status.stdout)["shared_group"] == str(TEAM)
    _assert_shared(copy)

    line = one_line_error(sandbox.jobq(CAROL, "status", "--dir", path))
    assert f"uid {CAROL} cannot read {path}" in line
    assert f"the queue is shared with group {TEAM}: add uid {CAROL} to it" in line, line


@needs_root
def test_a_queue_shared_by_hand_only_in_part_is_finished_by_its_owner(sandbox):
    """``jobq.json`` says the queue is shared but a directory is not (changed by hand, or the
    sharing was interrupted): a member is told the owner must finish it; the owner's next
    command does."""
    path = os.path.join(sandbox.home(ALICE), "half")
    done = sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group", str(TEAM),
                        groups=(TEAM,))
    assert done.returncode == 0, done.stderr
    os.chmod(os.path.join(path, "log"), 0o700)
    line = one_line_error(sandbox.jobq(BOB, "status", "--dir", path, groups=(TEAM,)))
    assert f"{path}/log is not" in line and f"--shared-group {TEAM}" in line, line
    assert sandbox.jobq(ALICE, "status", "--dir", path, groups=(TEAM,)).returncode == 0
    _assert_shared(path)
    assert sandbox.jobq(BOB, "status", "--dir", path, groups=(TEAM,)).returncode == 0


@needs_root
def test_only_the_owner_in_the_group_can_share(sandbox):
    """Sharing needs the queue's owner (or root), who must be in the group."""
    path = alice_queue(sandbox, "not-shared")
    line = one_line_error(sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group",
                                       str(TEAM)))
    assert f"uid {ALICE} is not in group {TEAM}" in line


@needs_root
def test_a_member_of_the_group_rotates_the_key_of_a_shared_queue(sandbox):
    """Bob (in the group, not the owner) rotates alice's shared signed queue and re-keys it with
    umask 077; alice then drops the old key: every file stays the group's and shared, the queue
    stays format 3, and alice reads what bob's worker did."""
    team = (TEAM,)
    old = {"JOBQ_SECRET_KEY": "old-key-0123456789abcdef"}
    both = {"JOBQ_SECRET_KEY": "new-key-0123456789abcdef",
            "JOBQ_OLD_SECRET_KEYS": old["JOBQ_SECRET_KEY"]}
    new = {"JOBQ_SECRET_KEY": both["JOBQ_SECRET_KEY"]}
    path = os.path.join(sandbox.home(ALICE), "shared-signed")
    done = sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group", str(TEAM), groups=team,
                        env=old)
    assert done.returncode == 0, done.stderr
    made = sandbox.jobq(ALICE, "enqueue", "--dir", path, "permtasks:add", "1", "2", groups=team,
                        env=old)
    assert made.returncode == 0, made.stderr
    for command in (("worker", "--burst"), ("rekey",)):
        done = sandbox.jobq(BOB, *command, "--dir", path, groups=team, umask=0o077, env=both)
        assert done.returncode == 0, (command, done.stderr)
    assert os.stat(os.path.join(path, "jobq.json")).st_uid == BOB  # bob's rotation rewrote it
    _assert_shared(path)
    shown = sandbox.jobq(ALICE, "show", "--dir", path, made.stdout.strip(), groups=team, env=new)
    assert "result       int 3" in shown.stdout, shown  # and the old key is retired
    with open(os.path.join(path, "jobq.json")) as f:
        info = json.load(f)
    assert (info["format"], info["shared_group"], "old_key_checks" in info) == (3, TEAM, False)
    _assert_shared(path)


def test_shared_queue_files_are_group_writable_whatever_the_umask(qpath):
    """In-process (any user: the group is one's own): with umask 077, a shared queue's new
    segments, lock files, state database and its WAL are 0660, its directories 2770."""
    gid = os.getegid()
    Queue(qpath, segment_size=4096).close()
    from jobq.local.directory import share
    share(str(qpath), gid)
    old = os.umask(0o077)
    try:
        with Queue(qpath) as q:
            for i in range(200):
                q.enqueue(add, i, i)
            assert q.counts()["queued"] == 200
            assert q.shared_group == gid
            from jobq.maintenance import compact
            compact(q)
    finally:
        os.umask(old)
    info = json.loads((qpath / "jobq.json").read_text())
    assert (info["format"], info["shared_group"]) == (3, gid)
    modes = _modes(str(qpath))
    assert len([n for n in modes if n.startswith("log/") and n.endswith(".log")]) > 2
    for name, (group, mode) in modes.items():
        assert group == gid, name
        assert mode in ((0o2770,) if (qpath / name).is_dir() else (0o660, 0o440)), \
            (name, oct(mode))


def test_a_shared_queue_is_refused_by_a_jobq_of_format_2(qpath):
    """Sharing is a format step (3): a jobq that knows format 2 would create owner-only files
    in it, so it must refuse it; and a queue that is not shared stays format 2."""
    Queue(qpath).close()
    assert json.loads((qpath / "jobq.json").read_text())["format"] == 2
    from jobq.local.directory import share
    share(str(qpath), os.getegid())
    assert json.loads((qpath / "jobq.json").read_text())["format"] == 3


def test_permission_error_pickles_with_its_fields():
    err = QueuePermissionError("no", path="/q", uid=5)
    import pickle
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, PermissionError) and (back.path, back.uid) == ("/q", 5)
    assert permissions.SHARED_DIR_MODE == 0o2770


IDLE_PRODUCER = '''
import json, sys
from jobq import Queue
with Queue(sys.argv[1]) as q:
    first = q.enqueue("permtasks:add", 1, 2)
    print(json.dumps(q.log.segments()), flush=True)
    sys.stdin.readline()  # meanwhile bob seals and compacts the segment this Queue writes to
    print(json.dumps([first, q.enqueue("permtasks:add", 3, 4), q.log.segments()]), flush=True)
'''


@needs_root
def test_a_writer_idle_on_a_segment_another_user_sealed_moves_on(sandbox):
    """Only a segment's owner may chmod it: bob seals alice's segment by putting a read-only
    copy in its place, and alice's producer, idle on the old file, appends to the new segment,
    where bob's worker finds the job."""
    team = (TEAM,)
    path = os.path.join(sandbox.home(ALICE), "idle")
    done = sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group", str(TEAM), groups=team)
    assert done.returncode == 0, done.stderr
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": sandbox.lib, "HOME": sandbox.home(ALICE)}
    producer = subprocess.Popen([sandbox.python, "-c", IDLE_PRODUCER, path], user=ALICE,
                                group=ALICE, extra_groups=[TEAM], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=sandbox.home(ALICE))
    try:
        assert json.loads(producer.stdout.readline()) == [1]
        segment = os.path.join(path, "log", "000000000001.log")
        assert os.stat(segment).st_uid == ALICE
        for command in (("worker", "--burst"), ("purge", "--older-than", "0s"), ("compact",)):
            done = sandbox.jobq(BOB, command[0], "--dir", path, *command[1:], groups=team)
            assert done.returncode == 0, (command, done.stderr)
        assert not os.path.exists(segment), "sealed, then compacted away"
        out, err = producer.communicate("go\n", timeout=60)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    assert producer.returncode == 0, err
    first, second, segments = json.loads(out)
    assert segments == [2]
    done = sandbox.jobq(BOB, "worker", "--burst", "--dir", path, groups=team)
    assert done.returncode == 0, done.stderr
    shown = sandbox.jobq(ALICE, "show", "--dir", path, second, groups=team)
    assert "result       int 7" in shown.stdout, shown
    _assert_shared(path)


@needs_root
def test_sealing_another_users_segment_leaves_a_read_only_copy_of_it(sandbox):
    """Bob seals alice's segment: it is his read-only copy now, with every record, and the
    next enqueue goes to a new segment."""
    team = (TEAM,)
    path = alice_queue(sandbox, "seal")
    done = sandbox.jobq(ALICE, "init", "--dir", path, "--shared-group", str(TEAM), groups=team)
    assert done.returncode == 0, done.stderr
    segment = os.path.join(path, "log", "000000000001.log")
    seal = "import sys; from jobq import Queue; print(Queue(sys.argv[1]).log.seal(1))"
    done = sandbox.run(BOB, "-c", seal, path, groups=team)
    assert (done.returncode, done.stdout.strip()) == (0, "True"), done.stderr
    st = os.stat(segment)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (BOB, TEAM, 0o440)
    again = sandbox.jobq(ALICE, "enqueue", "--dir", path, "permtasks:add", "5", "6", groups=team)
    assert again.returncode == 0, again.stderr
    done = sandbox.jobq(BOB, "worker", "--burst", "--dir", path, groups=team)
    assert done.returncode == 0, done.stderr
    status = sandbox.jobq(ALICE, "status", "--dir", path, "--json", groups=team)
    assert json.loads(status.stdout)["counts"]["succeeded"] == 2, status
    assert sorted(os.listdir(os.path.join(path, "log"))) == [
        "000000000001.log", "000000000002.log", "append.lock"]
    _assert_shared(path)


def test_a_directory_made_in_a_shared_queue_is_shared_whatever_the_umask(qpath):
    """The workers' directory, made by the first worker: 2770 and the queue's group."""
    from jobq.local import durable
    from jobq.local.directory import share
    Queue(qpath).close()
    share(str(qpath), os.getegid())
    old = os.umask(0o077)
    try:
        assert durable.make_dir(str(qpath / "workers"))
        assert not durable.make_dir(str(qpath / "workers"))
    finally:
        os.umask(old)
    st = os.stat(qpath / "workers")
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2770, os.getegid())
    assert sorted(os.listdir(qpath)) == ["jobq.json", "keys.lock", "log", "quarantine",
                                         "state.lock", "state.sqlite3", "workers"]


def test_a_file_removed_during_the_check_is_not_a_denial(tmp_path, children):
    """SQLite removes the WAL and its index as the last connection closes: a process opening
    the queue while another closes it checked a file that was gone by its access test, and was
    told it could not use the queue (17 times in 3 s of this loop, before)."""
    from jobq.local import directory

    path = str(tmp_path / "q")
    Queue(path).close()
    churn = children.start("import sys, time; from jobq import Queue\n"
                           "end = time.time() + 2\n"
                           "while time.time() < end: Queue(sys.argv[1]).close()", path)
    paths = directory._paths(directory.QueueDir(path, {}, False, None, ()))
    denied = []
    while churn.poll() is None:
        try:
            permissions.check(path, paths)
        except QueuePermissionError as exc:
            denied.append(str(exc))
    assert churn.returncode == 0
    assert denied == []
