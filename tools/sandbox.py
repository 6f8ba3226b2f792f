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
import functools
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Where the submission's own folder appears inside bubblewrap.
INSIDE = Path("/grading")
# Each parallel slot runs as its own unprivileged user when the grader is root, so a limit on
# processes (RLIMIT_NPROC counts per user) or a kill(-1) touches that slot's processes only.
# Far above the ids that Debian and systemd hand out (https://systemd.io/UIDS-GIDS/), so no
# account's processes share them.
FIRST_UID = 2_000_000_000
# Graders that run at once on one machine get different ids: FIRST_UID + a range of SLOTS
# ids picked by the grader's process id (which no running process shares), so that neither
# one's limit on processes nor its ending of a slot user's processes touches the other's.
SLOTS = 256
_RUN_UIDS = FIRST_UID + (os.getpid() % 2**22) * SLOTS
# setup.sh (tools/make_autograder.py) creates users of these names for the slots; they are
# preferred to the grader's own range (one grader per Gradescope container).
SLOT_USER = "gradclinic{slot}"
# /dev/shm inside bubblewrap (POSIX shared memory, semaphores): small, RAM-backed.
SHM_MB = 64
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
    # With bubblewrap, /tmp and the working folder are each a RAM-backed folder of this size
    # (their pages are the host's RAM, beyond memory_mb), and /dev/shm holds SHM_MB.
    folder_mb: int = 512

    def __post_init__(self) -> None:
        for name in ("seconds", "memory_mb", "processes", "file_mb", "folder_mb"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


# Runs a notebook top to bottom in a fresh kernel ("python3"), every cell even after an error,
# with no time limit of its own (the sandbox has one), in the notebook's folder; writes nothing
# back. nbclient, not nbconvert: the same executor without the exporters. jsonschema's optional
# IRI format checker (rfc3987_syntax, which nbformat's schema never uses) builds a grammar on
# import, 4 s of CPU per notebook; it is left out.
RUN_NOTEBOOK = """\
import os, sys
sys.modules["rfc3987_syntax"] = None
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
NotebookClient(
    nbformat.read(path, as_version=4),
    timeout=None,
    allow_errors=True,
    kernel_name="python3",
    resources={"metadata": {"path": os.path.dirname(path)}},
).execute()
"""


def notebook_argv(python: str, notebook: Path) -> list[str]:
    """The command that runs a notebook with this Python (see RUN_NOTEBOOK)."""
    return [python, "-c", RUN_NOTEBOOK, str(notebook)]


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


@functools.cache
def bwrap_sizes_tmpfs() -> bool:
    """True when bwrap can bound a RAM-backed folder (--size: bubblewrap 0.7 and later)."""
    tool = shutil.which("bwrap") or "bwrap"
    probe = [tool, "--ro-bind", "/", "/", "--size", str(2**20), "--tmpfs", "/tmp", "--", "true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def warn_unsized() -> None:
    """Say, on stderr, that this bubblewrap cannot bound /tmp and the working folder."""
    print(
        "warning: this bubblewrap has no --size (0.7 and later have it): /tmp, /dev/shm and "
        "the working folder of each notebook are RAM-backed without a bound (up to half the "
        "RAM each). Install a newer bubblewrap to bound them.",
        file=sys.stderr,
        flush=True,
    )


def warn_unsandboxed(own_users: bool) -> None:
    """Say loudly, on stderr, that student code will run without bubblewrap."""
    write = (
        f" (each slot runs as its own user, from user id {slot_uid(0)}, so it cannot write yours)"
        if own_users
        else ",\nwrite any file you can write, and signal your processes"
    )
    print(_WARNING.format(write=write), file=sys.stderr, flush=True)


def _ancestors(path: Path) -> list[Path]:
    return [parent for parent in reversed(path.parents) if parent != Path("/")]


def bwrap_command(
    argv: list[str],
    folder: Path,
    readable: list[Path],
    uid: int | None,
    limits: Limits = Limits(),
    keep: tuple[str, ...] = (),
    sized: bool = True,
) -> list[str]:
    """The bwrap command line running argv in INSIDE with only readable visible.

    INSIDE, /tmp and /dev/shm are RAM-backed folders of bounded size (limits.folder_mb, SHM_MB),
    so nothing written there reaches the host's disk or takes more of its RAM. The files in
    folder appear in INSIDE read-only, except those named in keep: they are bound writable,
    and are all the command can leave behind.
    """

    def size(megabytes: int) -> list[str]:
        return ["--size", str(megabytes * 2**20)] if sized else []

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
        *("--perms", "1777", *size(SHM_MB), "--tmpfs", "/dev/shm"),
        *("--remount-ro", "/dev"),  # /dev/shm stays writable: a mount of its own
        "--proc",
        "/proc",
        *("--perms", "1777", *size(limits.folder_mb), "--tmpfs", "/tmp"),
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
    command += ["--perms", "0777", *size(limits.folder_mb), "--tmpfs", str(INSIDE)]
    for entry in sorted(folder.iterdir()):
        bind = "--bind" if entry.name in keep else "--ro-bind"
        command += [bind, str(entry), str(INSIDE / entry.name)]
    command += ["--chdir", str(INSIDE)]
    if uid is not None:
        # bwrap runs as root (no user namespace, so the limit on processes applies to uid) and
        # keeps only the right to become uid; setpriv then drops every privilege.
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        command += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [*command, "--", *argv]


@dataclass(frozen=True)
class Share:
    """One slot's CPU share: a prefix that starts a command in it, and its processes file."""

    prefix: tuple[str, ...]
    procs: Path | None  # cgroup.procs of the slot's own control group, when the grader made one


class CpuShares:
    """An equal CPU share per slot: a slot's processes, however many, weigh as one.

    With a CPU controller the grader may use: cgroup v1 or v2 written directly (as root), else
    a transient systemd scope per notebook (systemd-run --scope, also as a user whose manager
    delegates the cpu controller). Without one (kind "none", e.g. in a Docker container) each
    process weighs as much as any other, so a notebook that starts many busy processes slows
    the notebooks graded beside it; one notebook at a time (--jobs 1) has no neighbours.
    """

    def __init__(self, kind: str, base: Path | None = None, prefix: tuple[str, ...] = ()):
        self.kind, self.base, self._prefix = kind, base, prefix
        self._made: list[Path] = []

    @classmethod
    def make(cls) -> CpuShares:
        """The first kind that works here, or kind "none"."""
        for attempt in (cls._v1, cls._v2, cls._systemd):
            with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
                shares = attempt()
                if shares is not None:
                    return shares
        return cls("none")

    @staticmethod
    def _own(controller: str) -> tuple[Path, str] | None:
        # (mount point, this process's group in it) of the hierarchy with that controller.
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
        groups = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().split()]
        for _, where, fstype, options, *_ in mounts:
            if controller == "" and fstype == "cgroup2":
                own = next((path for n, names, path in groups if n == "0" and not names), None)
            elif controller and fstype == "cgroup" and controller in options.split(","):
                own = next(
                    (path for _, names, path in groups if controller in names.split(",")), None
                )
            else:
                continue
            if own is not None:
                return Path(where), own.lstrip("/")
        return None

    @classmethod
    def _v1(cls) -> CpuShares | None:
        found = cls._own("cpu") if os.geteuid() == 0 else None
        if found is None:
            return None
        base = found[0] / found[1] / f"gradclinic-{os.getpid()}"
        base.mkdir()
        return cls("cgroup v1", base)

    @classmethod
    def _v2(cls) -> CpuShares | None:
        found = cls._own("") if os.geteuid() == 0 else None
        if found is None:
            return None
        own = found[0] / found[1]
        if "cpu" not in (own / "cgroup.controllers").read_text().split():
            return None
        # Fails (EBUSY) when this group holds processes and is not the root: no internal ones.
        (own / "cgroup.subtree_control").write_text("+cpu")
        base = own / f"gradclinic-{os.getpid()}"
        base.mkdir()
        try:
            (base / "cgroup.subtree_control").write_text("+cpu")
        except OSError:
            base.rmdir()
            raise
        return cls("cgroup v2", base)

    @classmethod
    def _systemd(cls) -> CpuShares | None:
        tool = shutil.which("systemd-run")
        if tool is None or not os.path.isdir("/run/systemd/system"):
            return None
        prefix = cls.systemd_prefix(tool, os.geteuid() != 0, os.environ)
        probe = subprocess.run(
            [*prefix, "cat", "/proc/self/cgroup"],
            env={"PATH": "/usr/bin:/bin"},  # as bare as a notebook's: the prefix brings the rest
            capture_output=True,
            text=True,
            timeout=30,
        )
        found = cls._own("")
        scope = next(
            (line[3:] for line in probe.stdout.splitlines() if line.startswith("0::")), None
        )
        # The weight only counts where the cpu controller is enabled for the scope.
        if probe.returncode or found is None or scope is None:
            return None
        if not (found[0] / scope.lstrip("/") / "cpu.weight").exists():
            return None
        return cls("systemd scope", None, prefix)

    @staticmethod
    def systemd_prefix(tool: str, user: bool, environ: Mapping[str, str]) -> tuple[str, ...]:
        """systemd-run in a scope of its own; as a user, with the bus it needs, which the
        command then loses again (a notebook's environment is the grader's own, bare)."""
        bus = [name for name in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS") if name in environ]
        set_bus = ("env", *(f"{name}={environ[name]}" for name in bus)) if user and bus else ()
        unset = ("env", *(arg for name in bus for arg in ("-u", name))) if user and bus else ()
        scope = ("--scope", "--quiet", "--collect", "-p", "CPUWeight=100", "--")
        return (*set_bus, tool, *(["--user"] if user else []), *scope, *unset)

    def slot(self, slot: int) -> Share:
        """The share of one slot (its control group made on first use)."""
        if self.base is None:
            return Share(self._prefix, None)
        group = self.base / f"slot{slot}"
        if not group.exists():
            group.mkdir()
            self._made.append(group)
            if self.kind == "cgroup v1":
                (group / "cpu.shares").write_text("1024")
            else:
                (group / "cpu.weight").write_text("100")
        procs = group / "cgroup.procs"
        # The command joins the group before it execs anything, so all it starts is inside.
        return Share(("/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs)), procs)

    def close(self) -> None:
        """End what is left in the groups and remove them."""
        for group in reversed(self._made):
            kill_group(group / "cgroup.procs")
            with contextlib.suppress(OSError):
                group.rmdir()
        if self.base is not None:
            with contextlib.suppress(OSError):
                self.base.rmdir()


def kill_group(procs: Path) -> None:
    """SIGKILL every process in a control group until none is left (or ten rounds)."""
    for _ in range(10):
        try:
            pids = [int(pid) for pid in procs.read_text().split()]
        except OSError:
            return
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


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


def _mapped(uid: int) -> bool:
    # A container's user namespace maps only some ids; setuid to any other fails.
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return True
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and int(fields[0]) <= uid < int(fields[0]) + int(fields[2]):
            return True
    return False


def slot_uid(slot: int) -> int | None:
    """The unprivileged user id of a parallel slot when the grader is root, else None.

    The user setup.sh created for the slot (SLOT_USER) when there is one, else an id of this
    grader's own range when the user namespace maps it.
    """
    if os.geteuid() != 0:
        return None
    if not 0 <= slot < SLOTS:
        raise ValueError(f"at most {SLOTS} slots, got slot {slot}")
    entry = _slot_user(slot)
    uid = entry.pw_uid if entry is not None else _RUN_UIDS + slot
    return uid if _mapped(uid) else None


def _slot_user(slot: int) -> pwd.struct_passwd | None:
    # The slot's named user, when it exists with a group id equal to its user id (the sandbox
    # takes both from one number) and is no one's account.
    try:
        entry = pwd.getpwnam(SLOT_USER.format(slot=slot))
    except KeyError:
        return None
    return entry if entry.pw_uid == entry.pw_gid and entry.pw_uid >= 1000 else None


def runs_unprivileged(python: str, env: dict[str, str]) -> bool:
    """True when an unprivileged user can start this Python and import the probes."""
    uid = slot_uid(0)
    if uid is None:
        return False
    try:
        check = subprocess.run(
            [python, "-c", "import gradclinic.probes._core, nbclient"],
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
    # kill(-1) sent as uid reaches every process of uid in one call, which no fork outruns.
    tool = shutil.which("setpriv")
    if tool is not None:
        ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run([tool, *ids, "kill", "-KILL", "-1"], capture_output=True, timeout=30)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue


# Where any user may leave files: emptied of the slot user's after each notebook run without
# bubblewrap (with it, these are the sandbox's own RAM-backed folders).
SHARED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")


def _remove_files_of(uid: int) -> None:
    for top in SHARED_FOLDERS:
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
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
    keep: tuple[str, ...] = (),
    share: Share | None = None,
) -> Outcome:
    """Run argv on folder within limits; kill everything it started when it ends or overruns.

    With bubblewrap only the files named in keep can be written back to folder (an empty one
    is removed afterwards, as if never written). With a share, everything runs in the slot's
    CPU share.
    """
    limit = _prlimit(limits)  # [] without prlimit: the limits are then set before exec
    prefix = list(share.prefix) if share is not None else []
    if sandboxed:
        for name in keep:
            path = folder / name
            path.touch(0o600)
            if uid is not None:
                os.chown(path, uid, uid)
        # prlimit inside: an unprivileged bwrap runs in its own user namespace, whose process
        # count starts at zero, instead of counting every process of yours.
        bwrap = bwrap_command(
            [*limit, *argv], folder, readable, uid, limits, keep, bwrap_sizes_tmpfs()
        )
        command, user = [*prefix, *bwrap], None
    elif uid is not None and prefix:
        # The prefix joins the share as root; setpriv then becomes uid, as user= would.
        ids = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
        command, user = [*prefix, shutil.which("setpriv") or "setpriv", *ids, *limit, *argv], None
    else:
        command, user = [*prefix, *limit, *argv], uid
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
    if share is not None and share.procs is not None:
        kill_group(share.procs)
    if uid is not None and not sandboxed:
        _kill_user(uid)
        _remove_files_of(uid)
    for name in keep:
        with contextlib.suppress(OSError):
            path = folder / name
            if sandboxed and path.stat(follow_symlinks=False).st_size == 0:
                path.unlink()
    return Outcome(returncode, timed_out, time.monotonic() - start)
