"""`pip install gradclinic` keeps the TensorFlow a user already has.

Each case builds gradclinic's wheel, makes a fresh virtual environment that already holds a
supported TensorFlow and Keras (tiny stand-in distributions: the resolver reads only names,
versions and requirements), installs the wheel offline and compares what is installed.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# pip must see only the stand-ins: no index, no site configuration (find-links, constraints).
PIP_ENV = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
STANDINS = (
    ("tensorflow-cpu", "2.19.1"),
    ("tensorflow", "2.21.0"),
    ("tensorflow", "2.22.0rc0"),
    ("keras", "3.10.0"),
    ("keras", "3.15.1"),
    ("keras", "2.15.0"),
    ("numpy", "2.0.2"),
    ("matplotlib", "3.9.0"),
)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_standin_wheel(folder: Path, name: str, version: str) -> Path:
    """Write a wheel that installs only metadata for `name` `version`, with no requirements."""
    stem = name.replace("-", "_")
    info = f"{stem}-{version}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: gradclinic-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = [_record_line(path, data) for path, data in files.items()] + [f"{info}/RECORD,,"]
    path = folder / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with gradclinic's wheel and the stand-in distributions."""
    folder = tmp_path_factory.mktemp("wheels")
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "code", source / "code", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), "."],
        cwd=source,
        check=True,
    )
    for name, version in STANDINS:
        write_standin_wheel(folder, name, version)
    return folder


def _pip(env: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", *args],
        env=PIP_ENV,
        capture_output=True,
        text=True,
    )


def installed(env: Path) -> dict[str, str]:
    """Name -> version of every distribution in env."""
    listing = _pip(env, "list", "--format=json")
    assert listing.returncode == 0, listing.stderr
    return {row["name"].lower(): row["version"] for row in json.loads(listing.stdout)}


def fresh_env(tmp_path: Path, wheels: Path, preinstalled: list[str]) -> Path:
    """A new virtual environment holding the given stand-ins (name==version)."""
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    if preinstalled:
        done = _pip(env, "install", "--no-index", "--find-links", str(wheels), *preinstalled)
        assert done.returncode == 0, done.stderr
    return env


def gradclinic_wheel(wheels: Path) -> str:
    """The path of the built gradclinic wheel."""
    (wheel,) = wheels.glob("gradclinic-*.whl")
    return str(wheel)


@pytest.mark.parametrize(
    "preinstalled",
    [
        # A Colab-era stack, on the CPU build: a plain `tensorflow` requirement would add a second TF.
        ["tensorflow-cpu==2.19.1", "keras==3.10.0", "numpy==2.0.2", "matplotlib==3.9.0"],
        ["tensorflow==2.22.0rc0", "keras==3.15.1", "numpy==2.0.2", "matplotlib==3.9.0"],
    ],
    ids=["tf-cpu-2.19-keras-3.10", "tf-2.22rc0"],
)
def test_installing_gradclinic_replaces_and_adds_no_tensorflow(
    tmp_path: Path, wheels: Path, preinstalled: list[str]
) -> None:
    env = fresh_env(tmp_path, wheels, preinstalled)
    before = installed(env)
    done = _pip(env, "install", "--no-index", "--find-links", str(wheels), gradclinic_wheel(wheels))
    assert done.returncode == 0, done.stderr
    after = installed(env)
    assert after.pop("gradclinic") == "0.1.0"
    assert after == before


def test_the_tensorflow_extra_brings_the_plain_distribution_in_range(
    tmp_path: Path, wheels: Path
) -> None:
    env = fresh_env(tmp_path, wheels, [])
    wheel = gradclinic_wheel(wheels)
    done = _pip(env, "install", "--no-index", "--find-links", str(wheels), f"{wheel}[tensorflow]")
    assert done.returncode == 0, done.stderr
    got = installed(env)
    # The newest final release in range; the release candidate only when asked for.
    assert got["tensorflow"] == "2.21.0"
    assert "tensorflow-cpu" not in got
    assert got["keras"] == "3.15.1"


def test_an_unsupported_keras_is_upgraded_into_the_declared_range(
    tmp_path: Path, wheels: Path
) -> None:
    env = fresh_env(tmp_path, wheels, ["keras==2.15.0", "numpy==2.0.2", "matplotlib==3.9.0"])
    done = _pip(env, "install", "--no-index", "--find-links", str(wheels), gradclinic_wheel(wheels))
    assert done.returncode == 0, done.stderr
    # Keras 2 cannot run the book: the declared range (keras>=3.10,<4) makes pip replace it.
    assert installed(env)["keras"] == "3.15.1"
