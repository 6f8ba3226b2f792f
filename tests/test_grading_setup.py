"""The autograder's setup.sh on an image whose python3 is too old (Gradescope's Ubuntu 22.04).

Stand-in programs on PATH play apt-get and the Pythons, so the script's choices are seen
without installing anything.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import make_autograder  # noqa: E402

# A Python stand-in: `fits` asks it to exit 0 when >= 3.11; `-m venv DIR` makes DIR/bin/python
# a stand-in that records how it was called.
PYTHON = """#!/bin/bash
case "$1" in
  -V) echo "Python {version}" ;;
  -c) exit {too_old} ;;
  -m) if [ "$2" = venv ]; then
        /bin/mkdir -p "$3/bin"
        printf '#!/bin/bash\\necho "$@" >> %s/pip-args\\n' "$3" > "$3/bin/python"
        /bin/chmod +x "$3/bin/python"
      else exit 1; fi ;;
esac
"""


# The account and permission tools record how they were called; no account exists yet.
RECORDER = '#!/bin/bash\necho "$(/usr/bin/basename "$0") $*" >> "$AUTOGRADER_ROOT.calls"\n'


def _stand_ins(folder: Path, pythons: dict[str, str]) -> None:
    folder.mkdir()
    (folder / "apt-get").write_text("#!/bin/bash\nexit 100\n")  # no package can be installed
    (folder / "getent").write_text("#!/bin/bash\nexit 2\n")
    (folder / "nproc").write_text("#!/bin/bash\necho 2\n")
    for name in ("groupadd", "useradd", "chmod", "setpriv"):
        (folder / name).write_text(RECORDER)
    for name, version in pythons.items():
        too_old = int(tuple(map(int, version.split(".")[:2])) < (3, 11))
        (folder / name).write_text(PYTHON.format(version=version, too_old=too_old))
    for path in folder.iterdir():
        path.chmod(0o755)


def _setup(tmp_path: Path, pythons: dict[str, str]) -> subprocess.CompletedProcess[str]:
    _stand_ins(tmp_path / "bin", pythons)
    script = tmp_path / "setup.sh"
    script.write_text(make_autograder.SETUP_SH.format(packages="'nbconvert==7'"))
    return subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": str(tmp_path / "bin"), "AUTOGRADER_ROOT": str(tmp_path / "root")},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_setup_stops_with_a_clear_message_when_only_python_3_10_is_there(tmp_path: Path) -> None:
    run = _setup(tmp_path, {"python3": "3.10.12"})
    assert run.returncode == 1
    assert "the grader needs Python 3.11 or newer" in run.stderr
    assert "python3 here is Python 3.10.12" in run.stderr
    assert "Pick Gradescope's newest Ubuntu" in run.stderr
    assert not (tmp_path / "root" / "venv").exists()


def test_setup_uses_a_python_3_11_beside_an_old_python3(tmp_path: Path) -> None:
    run = _setup(tmp_path, {"python3": "3.10.12", "python3.11": "3.11.0"})
    assert run.returncode == 0, run.stderr
    assert f"grading with {tmp_path / 'bin' / 'python3.11'} (Python 3.11.0)" in run.stdout
    args = (tmp_path / "root" / "venv" / "pip-args").read_text()
    assert args.startswith("-m pip install --quiet -r ") and "nbconvert==7" in args


def test_setup_creates_a_user_per_slot_that_reaches_the_python_but_not_the_checks(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "source" / "code").mkdir(parents=True)
    (root / "source" / "checks").mkdir()
    run = _setup(tmp_path, {"python3": "3.11.4"})
    assert run.returncode == 0, run.stderr
    calls = Path(f"{root}.calls").read_text().splitlines()
    for slot in (0, 1):
        uid = 2_000_000_000 + slot
        assert f"groupadd --gid {uid} gradclinic{slot}" in calls
        assert (
            f"useradd --uid {uid} --gid {uid} --no-log-init --no-create-home --home-dir "
            f"/nonexistent --shell /usr/sbin/nologin gradclinic{slot}"
        ) in calls
    # Every folder above the venv and the code may be passed through; they may be read.
    for path in (root, root / "source", tmp_path):
        assert f"chmod o+x {path}" in calls
    assert f"chmod -R o+rX {root / 'venv'}" in calls
    assert f"chmod -R o+rX {root / 'source' / 'code'}" in calls
    assert f"chmod -R go-rwx {root / 'source' / 'checks'}" in calls
    # It checks that the first slot's user can run the grading Python.
    assert any(call.startswith("setpriv --reuid=2000000000 --regid=2000000000") for call in calls)
