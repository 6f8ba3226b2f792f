"""Saboteurs of shared resources graded beside an honest classmate: CPU, RAM-backed folders, disk.

Chapter 9 exists only here (the grader loads it with --checks). A saboteur that starts many
busy processes slows its neighbour and never stops it; one that fills /tmp, /dev/shm or its
working folder meets a bound; without bubblewrap the notebook runs as an unprivileged user
and nothing it started outlives it.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sandbox  # noqa: E402
from _checks import write_check_pair  # noqa: E402
from _grading import CHECKS, PROBES, read_scores, require_bubblewrap, run_grader  # noqa: E402

HONEST = ("def double(x):\n    return 2 * x", "word = 'gradient'")
TIME_LIMIT = 60
FOLDER_MB = 32

# 128 processes, each in a session of its own (so each would weigh as one more user), all busy.
SPINNER = """
import os
for _ in range(128):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
while True:
    pass
"""

# Answers 9.2 only if /tmp and its working folder each refused to grow beyond FOLDER_MB, and
# /dev/shm beyond SHM_MB (each file stays under the 64 MB file-size limit), and /dev itself is
# read-only.
FILLER = f"""
import errno, os

def fill(folder):
    written = 0
    for n in range(40):
        try:
            with open(os.path.join(folder, f"fill{{n}}"), "wb") as handle:
                for _ in range(8):
                    handle.write(b"x" * 2**20)
                    handle.flush()
                    written += 1
        except OSError as error:
            return written if error.errno == errno.ENOSPC else -1
    return -2

bounds = {{"/tmp": {FOLDER_MB}, "/dev/shm": {sandbox.SHM_MB}, ".": {FOLDER_MB}}}
sizes = {{folder: fill(folder) for folder in bounds}}
try:
    open("/dev/filler", "w")
    dev = "writable"
except OSError:
    dev = "read-only"
word = "gradient" if all(
    0 <= sizes[folder] <= bound for folder, bound in bounds.items()
) and dev == "read-only" else f"{{sizes}} {{dev}}"
"""


def _notebook(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(metadata={"gradclinic": {"chapter": "9"}})
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(cell)) for cell in cells]
    return nb


def _write_class(base: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    for student, nb in notebooks.items():
        (base / "in" / student).mkdir(parents=True)
        nbformat.write(nb, base / "in" / student / "09_test.ipynb")
    (base / "work").mkdir()
    return write_check_pair(base, "checks9", PROBES, CHECKS)


def _totals(out: Path) -> dict[str, str]:
    return {r["student"]: r["passed"] for r in read_scores(out) if r["chapter"] == "all"}


def _seconds(run: subprocess.CompletedProcess[str], student: str) -> float:
    (line,) = [
        line for line in run.stdout.splitlines() if re.match(rf"\[\d+/\d+\] {student} ", line)
    ]
    return float(re.search(r"\((\d+) s\)$", line).group(1))


def _require_bwrap() -> None:
    require_bubblewrap()


def test_many_busy_processes_slow_a_neighbour_but_never_stop_it(tmp_path: Path) -> None:
    _require_bwrap()
    shares = sandbox.CpuShares.make()
    shares.close()
    if shares.kind == "none":
        pytest.skip("no cgroup the grader may use here: no CPU share per notebook")
    checks = _write_class(tmp_path, {"ada": _notebook(*HONEST), "spinner": _notebook(SPINNER)})
    run = run_grader(
        tmp_path / "in",
        tmp_path / "out",
        *("--checks", str(checks), "--chapters", "9", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--work", str(tmp_path / "work")),
        timeout=TIME_LIMIT * 4,
    )
    assert run.returncode == 0, run.stderr
    assert "no CPU share per notebook" not in run.stderr
    assert _totals(tmp_path / "out") == {"ada": "2", "spinner": "0"}
    # Without a share, ada got 2 cores / 129 sessions and timed out; with one, it gets a core.
    assert _seconds(run, "ada") < TIME_LIMIT / 2
    assert list((tmp_path / "work").iterdir()) == []


def test_ram_backed_folders_and_dev_are_bounded(tmp_path: Path) -> None:
    _require_bwrap()
    checks = _write_class(tmp_path, {"ada": _notebook(*HONEST), "filler": _notebook(FILLER)})
    run = run_grader(
        tmp_path / "in",
        tmp_path / "out",
        *("--checks", str(checks), "--chapters", "9", "--jobs", "2"),
        *("--time-limit", str(TIME_LIMIT), "--work", str(tmp_path / "work")),
        *("--folder-limit", str(FOLDER_MB), "--sandbox", "bwrap"),
        timeout=TIME_LIMIT * 4,
    )
    assert run.returncode == 0, run.stderr
    rows = {(r["student"], r["exercise"]): r for r in read_scores(tmp_path / "out")}
    assert rows[("filler", "9.2")]["passed"] == "1", rows[("filler", "9.2")]["message"]
    assert _totals(tmp_path / "out") == {"ada": "2", "filler": "1"}
    # Nothing it wrote reached the host: the work folder is empty again.
    assert list((tmp_path / "work").iterdir()) == []


# Without bubblewrap: runs as root? (then it answers "root"); a daemon in a session of its own
# that would keep writing into a folder anyone may write, and files in /tmp and /dev/shm.
DAEMON = """
import os, time
word = "gradient" if os.getuid() != 0 and os.getgid() != 0 else "root"
with open("/tmp/gradclinic-test-left", "w") as handle:
    handle.write("left behind")
with open("/dev/shm/gradclinic-test-left", "w") as handle:
    handle.write("left behind")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for n in range(600):
            time.sleep(0.5)
            try:
                open(os.path.join({drop!r}, f"alive-{{n}}"), "w").close()
            except OSError:
                pass
        os._exit(0)
    os._exit(0)
time.sleep(1)
"""


def _unprivileged_python(shared: Path) -> str:
    """A Python the slot users can run: this one, else a venv of /usr/bin/python3 with ours."""
    import sysconfig

    env = {"PYTHONPATH": str(ROOT / "code"), "PATH": "/usr/bin:/bin", "HOME": "/"}
    if sandbox.runs_unprivileged(sys.executable, env):
        return sys.executable
    base = Path("/usr/bin/python3")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists() or os.path.realpath(base).rsplit("/", 1)[-1] != version:
        pytest.skip("no Python an unprivileged user can run here")
    venv = shared / "venv"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / version / "site-packages"
    (site / "ours.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(venv / "bin" / "python")
    if not sandbox.runs_unprivileged(python, env):
        pytest.skip("no Python an unprivileged user can run here")
    return python


def test_without_bubblewrap_each_notebook_runs_as_a_slot_user_and_leaves_nothing_running(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the slot users need a grader that runs as root")
    # Where the slot users can reach (pytest's tmp_path is under a folder only root may enter).
    shared = Path(tempfile.mkdtemp(prefix="gradclinic-test-"))
    shared.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    python = _unprivileged_python(shared)
    drop = shared / "drop"
    drop.mkdir()
    drop.chmod(0o777)
    notebooks = {"ada": _notebook(*HONEST), "daemon": _notebook(DAEMON.format(drop=str(drop)))}
    checks = _write_class(tmp_path, notebooks)
    run = subprocess.run(
        [
            python,
            str(ROOT / "tools" / "grade.py"),
            *("--out", str(tmp_path / "out"), "--checks", str(checks), "--chapters", "9"),
            *("--jobs", "2", "--time-limit", str(TIME_LIMIT)),
            *("--sandbox", "none", str(tmp_path / "in")),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "code")},
        timeout=TIME_LIMIT * 4,
    )
    assert run.returncode == 0, run.stderr
    first = int(re.search(r"each slot runs as its own user, from user id (\d+)", run.stderr)[1])
    # It answered as an unprivileged user (as root it would have answered "root").
    assert _totals(tmp_path / "out") == {"ada": "2", "daemon": "1"}
    # Nothing of the slot users runs any more, and the daemon writes nothing after the run.
    written = set(drop.iterdir())
    time.sleep(2)
    assert set(drop.iterdir()) == written
    uids = {first, first + 1}
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    alive.append(entry.name)
            except FileNotFoundError:
                continue
    assert alive == []
    # What it left in the folders everyone may write was removed.
    assert not Path("/tmp/gradclinic-test-left").exists()
    assert not Path("/dev/shm/gradclinic-test-left").exists()


def test_without_a_cgroup_the_share_is_empty_and_slot_ids_stay_apart() -> None:
    share = sandbox.CpuShares("none").slot(3)
    assert share == sandbox.Share((), None)
    if os.geteuid() == 0:
        # Ids of this grader's own range, one per slot, none of them root's.
        ids = [sandbox.slot_uid(slot) for slot in range(3)]
        assert len(set(ids)) == 3 and min(ids) >= sandbox.FIRST_UID
        with pytest.raises(ValueError, match="at most 256 slots"):
            sandbox.slot_uid(sandbox.SLOTS)


def test_a_bubblewrap_without_size_still_sandboxes_with_unbounded_folders(tmp_path: Path) -> None:
    # bubblewrap before 0.7 (Ubuntu 22.04 has 0.6) has no --size: the same sandbox, unbounded.
    (tmp_path / "evidence.json").touch()
    command = sandbox.bwrap_command(
        ["python"], tmp_path, [], None, keep=("evidence.json",), sized=False
    )
    assert "--size" not in command
    assert "--unshare-net" in command and command.count("--tmpfs") == 3
    assert command[command.index("--bind") + 2] == str(sandbox.INSIDE / "evidence.json")


def test_a_user_systemd_scope_gets_its_bus_and_the_notebook_does_not() -> None:
    environ = {"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/ada"}
    prefix = sandbox.CpuShares.systemd_prefix("/usr/bin/systemd-run", True, environ)
    assert prefix == (
        "env",
        "XDG_RUNTIME_DIR=/run/user/1000",
        "/usr/bin/systemd-run",
        "--user",
        *("--scope", "--quiet", "--collect", "-p", "CPUWeight=100", "--"),
        *("env", "-u", "XDG_RUNTIME_DIR"),
    )
    as_root = sandbox.CpuShares.systemd_prefix("/usr/bin/systemd-run", False, environ)
    assert as_root[0] == "/usr/bin/systemd-run" and as_root[-1] == "--"
