"""The locks hold every distribution make, Binder and CI install, at the top-level pins' versions.

requirements/book.txt and dev.txt name the top-level pins; `make lock` (uv pip compile) writes
requirements/book-lock.txt (Binder) and dev-lock.txt (make, CI) with every dependency locked too,
and everything installs from a lock. These tests keep the pins, the locks and this virtualenv in
step, so a transitive release can no longer change the book unnoticed.
"""

import importlib.metadata as metadata
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements"
BOOK_PINS, DEV_PINS = REQUIREMENTS / "book.txt", REQUIREMENTS / "dev.txt"
BOOK_LOCK, DEV_LOCK = REQUIREMENTS / "book-lock.txt", REQUIREMENTS / "dev-lock.txt"
# Each lock and the top-level files it is compiled from (dev.txt includes book.txt).
LOCKS = {BOOK_LOCK: [BOOK_PINS], DEV_LOCK: [DEV_PINS, BOOK_PINS]}
# The platforms a reader runs `make` on; the locks are universal, so each must be covered.
PLATFORMS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
}
LOCK_LINE = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+?)\s*(?:;\s*(?P<marker>.+))?$")


@dataclass(frozen=True)
class Locked:
    """One line of a lock: a distribution, its exact version, the platforms it applies to."""

    name: str
    version: str
    marker: Marker | None

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        """Whether this line installs anything on a platform (default: this machine)."""
        return self.marker is None or self.marker.evaluate(environment)


def lock_entries(path: Path) -> list[Locked]:
    """Return a lock's requirement lines; fail on any line that is not an exact pin."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LOCK_LINE.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        marker = Marker(match["marker"]) if match["marker"] else None
        entries.append(Locked(canonicalize_name(match["name"]), match["version"], marker))
    return entries


def top_level_pins(path: Path) -> list[Requirement]:
    """Return a requirements file's own requirements (comments and -r includes left out)."""
    lines = (
        line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
    )
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def locked_version(entries: list[Locked], name: str, environment: dict[str, str]) -> str | None:
    """Return the version a lock installs of a distribution on a platform, or None."""
    versions = {e.version for e in entries if e.name == name and e.applies(environment)}
    assert len(versions) <= 1, f"{name} is locked at several versions at once: {versions}"
    return versions.pop() if versions else None


def lock_header_command(path: Path) -> list[str]:
    """Return the regenerating command uv writes into a lock's header."""
    header = path.read_text(encoding="utf-8").splitlines()[:3]
    commands = [line.lstrip("# ").split() for line in header if "uv pip compile" in line]
    assert len(commands) == 1, f"{path.name}: no `uv pip compile` command in its header"
    return commands[0]


def binder_python() -> str:
    """Return the Python version environment.yml gives Binder (e.g. '3.11')."""
    environment = yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    return next(d.split("=", 1)[1] for d in conda if d.startswith("python="))


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_top_level_pin_is_locked_at_its_version(lock: Path, platform: str) -> None:
    environment = PLATFORMS[platform]
    entries = lock_entries(lock)
    wrong = []
    for source in LOCKS[lock]:
        for pin in top_level_pins(source):
            if pin.marker is not None and not pin.marker.evaluate(environment):
                continue
            (wanted,) = [s.version for s in pin.specifier if s.operator == "=="]
            got = locked_version(entries, canonicalize_name(pin.name), environment)
            if got != wanted:
                wrong.append(f"{pin.name}: {source.name} pins {wanted}, the lock has {got}")
    assert wrong == [], f"{lock.name} on {platform} (run `make lock`): {wrong}"


def test_binder_lock_takes_the_versions_make_installs() -> None:
    assert lock_entries(BOOK_LOCK), "book-lock.txt locks nothing"
    for platform, environment in PLATFORMS.items():
        dev_versions = {e.name: e.version for e in lock_entries(DEV_LOCK) if e.applies(environment)}
        differing = [
            f"{e.name} {e.version} (dev-lock: {dev_versions.get(e.name)})"
            for e in lock_entries(BOOK_LOCK)
            if e.applies(environment) and dev_versions.get(e.name) != e.version
        ]
        assert differing == [], f"on {platform}, Binder's lock differs from make's: {differing}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_lock_header_regenerates_it_for_binders_python(lock: Path) -> None:
    command = lock_header_command(lock)
    assert command[:3] == ["uv", "pip", "compile"]
    assert "--universal" in command, f"{lock.name}: lock for every platform (--universal)"
    python = command[command.index("--python-version") + 1]
    assert python == binder_python(), (
        f"{lock.name} is resolved for Python {python}, Binder runs {binder_python()}"
    )
    assert f"requirements/{LOCKS[lock][0].name}" in command
    assert command[command.index("-o") + 1] == f"requirements/{lock.name}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"--python-version {python}" in makefile, "`make lock` resolves for another Python"


def installs_from(text: str) -> list[str]:
    """Return the requirement files a script or workflow installs with `-r FILE`."""
    return re.findall(r"-r\s+(requirements/[^\s;\"]+)", text)


def test_make_and_binder_install_from_a_lock() -> None:
    places = {
        "tools/ensure_venv.sh": (REPO / "tools" / "ensure_venv.sh").read_text(encoding="utf-8"),
        "environment.yml": (REPO / "environment.yml").read_text(encoding="utf-8"),
    }
    for workflow in sorted((REPO / ".github" / "workflows").glob("*.yml")):
        places[f".github/workflows/{workflow.name}"] = workflow.read_text(encoding="utf-8")
    installs = {place: installs_from(text) for place, text in places.items()}
    assert installs["tools/ensure_venv.sh"] == ["requirements/dev-lock.txt"]
    assert installs["environment.yml"] == ["requirements/book-lock.txt"]
    unlocked = {place: f for place, files in installs.items() for f in files if "-lock" not in f}
    assert unlocked == {}, f"installs top-level pins without their lock: {unlocked}"


def test_this_virtualenv_holds_the_locked_versions() -> None:
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = [
        f"{e.name} {installed.get(e.name)} (locked {e.version})"
        for e in lock_entries(DEV_LOCK)
        if e.applies() and installed.get(e.name) != e.version
    ]
    assert wrong == [], (
        f"{sys.prefix} differs from requirements/dev-lock.txt (run `make venv`): {wrong}"
    )


def test_pip_check_passes_in_this_virtualenv() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"pip check in {sys.prefix}:\n{done.stdout}{done.stderr}"
