"""Run one untrusted command in a fresh folder: bubblewrap when it works, else the limits left.

With Debian's bubblewrap (`bwrap`, https://github.com/containers/bubblewrap) the command sees
only the system's read-only programs, the Python environment, the code it is given (read-only)
and its own folder (writable); it has no network, its own process and IPC namespaces, and dies
with the grader. Without it the grader warns and still applies what needs no tool: the fresh
folder, its own session and process group, resource limits (`prlimit`), and, when the grader
runs as root, an unprivileged user id of its own.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Where the submission's own folder appears inside bubblewrap.
INSIDE = Path("/grading")
# Each parallel slot runs as its own unprivileged user when the grader is root, so a limit on
# processes (RLIMIT_NPROC counts per user) or a kill(-1) touches that slot's processes only.
# Far above the ids that Debian and systemd hand out (https://systemd.io/UIDS-GIDS/), so no
# account's processes share them.
FIRST_UID = 2_000_000_000
_WARNING = """\
******************************************************************************
WARNING: bubblewrap (bwrap) is not usable here, so student code is NOT sandboxed:
it can use the network and read files outside its folder{write}.
Only the time, memory, process and file-size limits, a fresh folder and its own
session apply. Install it: apt-get install bubblewrap
******************************************************************************"""


@dataclass(frozen=True)
class Limits:
    """What one submission may use: wall-clock seconds and per-process resources."""

    seconds: float = 300.0
    memory_mb: int = 4096  # address space per process (TensorFlow alone maps about 1.7 GB)
    processes: int = 512  # threads count too: TensorFlow starts dozens
    file_mb: int = 64  # largest file it may write

    def __post_init__(self) -> None:
        for name in ("seconds", "memory_mb", "processes", "file_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Outcome:
    """How the command ended: its exit status (negative: killed by that signal) and time."""

    returncode: int
    timed_out: bool
    seconds: float


def bwrap_works() -> bool:
    """True when bubblewrap is installed and can create its namespaces here."""
    tool = shutil.which("bwrap")
    if tool is None:
        return False
    probe = [tool, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--", "true"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def warn_unsandboxed(own_users: bool) -> None:
    """Say loudly, on stderr, that student code will run without bubblewrap."""
    write = (
        " (each slot runs as its own user, so it cannot write yours)"
        if own_users
        else ",\nwrite any file you can write, and signal your processes"
    )
    print(_WARNING.format(write=write), file=sys.stderr, flush=True)


def _ancestors(path: Path) -> list[Path]:
    return [parent for parent in reversed(path.parents) if parent != Path("/")]


def bwrap_command(
    argv: list[str], folder: Path, readable: list[Path], uid: int | None
) -> list[str]:
    """The bwrap command line running argv in INSIDE (= folder) with only readable visible."""
    command = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
        "--ro-bind",
        "/etc",
        "/etc",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
    ]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            command += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            command += ["--ro-bind", top, top]
    made: set[Path] = {Path("/tmp"), Path("/usr"), Path("/etc")}
    for path in readable:
        # bwrap creates missing parents as 0700; an unprivileged user must be able to pass.
        for parent in _ancestors(path):
            if parent not in made and not str(parent).startswith(("/usr/", "/etc/")):
                command += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        command += ["--ro-bind", str(path.resolve()), str(path)]
        made.add(path)
    command += ["--bind", str(folder), str(INSIDE), "--chdir", str(INSIDE)]
    if uid is not None:
        # bwrap runs as root (no user namespace, so the limit on processes applies to uid) and
        # keeps only the right to become uid; setpriv then drops every privilege.
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        command += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [*command, "--", *argv]


def _set_limits(limits: Limits) -> None:
    # Runs in the child between fork and exec, only when prlimit is missing.
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _prlimit(limits: Limits) -> list[str]:
    tool = shutil.which("prlimit")
    if tool is None:
        return []
    return [
        tool,
        f"--as={limits.memory_mb * 2**20}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_mb * 2**20}",
        "--core=0",
        "--",
    ]


def slot_uid(slot: int) -> int | None:
    """The unprivileged user id of a parallel slot when the grader is root, else None."""
    return FIRST_UID + slot if os.geteuid() == 0 else None


def runs_unprivileged(python: str, env: dict[str, str]) -> bool:
    """True when an unprivileged user can start this Python and import the checks."""
    uid = slot_uid(0)
    if uid is None:
        return False
    try:
        check = subprocess.run(
            [python, "-c", "import gradclinic.checks._core, nbconvert"],
            env=env,
            user=uid,
            group=uid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
        )
    except OSError:  # e.g. Python lives under a folder only its owner may enter
        return False
    return check.returncode == 0


def prepare_folder(folder: Path, uid: int | None) -> None:
    """Hand a fresh folder and its files to the slot's user (nobody else may enter it)."""
    folder.chmod(0o700)
    if uid is not None:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)


def _kill_user(uid: int) -> None:
    # Processes that left the session (setsid) would outlive the job; they all run as uid.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


def run(
    argv: list[str],
    folder: Path,
    *,
    readable: list[Path],
    env: dict[str, str],
    limits: Limits,
    uid: int | None,
    sandboxed: bool,
    log: Path,
) -> Outcome:
    """Run argv on folder within limits; kill everything it started when it ends or overruns."""
    limit = _prlimit(limits)  # [] without prlimit: the limits are then set before exec
    if sandboxed:
        # prlimit inside: an unprivileged bwrap runs in its own user namespace, whose process
        # count starts at zero, instead of counting every process of yours.
        command, user = bwrap_command([*limit, *argv], folder, readable, uid), None
    else:
        command, user = [*limit, *argv], uid
    start = time.monotonic()
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user is not None else None,
            preexec_fn=None if limit else lambda: _set_limits(limits),
        )
        timed_out = False
        try:
            returncode = process.wait(timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            returncode = process.wait()
    # The group outlives its leader when the leader died first; the id is not reused meanwhile.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if uid is not None and not sandboxed:
        _kill_user(uid)
    return Outcome(returncode, timed_out, time.monotonic() - start)
