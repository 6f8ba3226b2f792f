"""Binder's environment is the book's pinned environment, and it holds all the notebooks need.

Binder builds the repository root with repo2docker: environment.yml installs
requirements/book-lock.txt (the book's exact pins of requirements/book.txt with every dependency
locked; `make` installs the same versions from dev-lock.txt), then ./postBuild installs
gradclinic with --no-deps. gradclinic itself declares ranges in pyproject.toml; these tests keep
the three in step, and tests/test_lock.py keeps the locks in step with the pins.
"""

import ast
import importlib.metadata as metadata
import json
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
BOOK_PINS = REPO / "requirements" / "book.txt"
DEV_PINS = REPO / "requirements" / "dev.txt"
BINDER_INSTALLS = "-r requirements/book-lock.txt"
# Binder and CI run Linux: that is the branch of the platform markers Binder gets.
LINUX = {"sys_platform": "linux", "platform_system": "Linux", "extra": ""}
# The kernel itself: no notebook imports it, Binder needs it to run any.
KERNEL = "ipykernel"
# JupyterLab's MyST renderer: no notebook imports it, but without it Binder shows {exercise}
# and {solution} as raw text, the worked solution in plain view.
MYST_RENDERER = "jupyterlab-myst"
LOCAL_PACKAGE = "gradclinic"


def pyproject() -> dict:
    """Return pyproject.toml, parsed."""
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def environment() -> dict:
    """Return environment.yml, parsed."""
    return yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))


def requirement_lines(path: Path) -> list[str]:
    """Return a requirements file's requirement lines, without comments and include lines."""
    lines = (
        line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()
    )
    return [line for line in lines if line and not line.startswith("-")]


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """Map canonical name -> exact version for the requirements that apply on Linux."""
    pins = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(LINUX):
            continue
        versions = [s.version for s in requirement.specifier if s.operator == "=="]
        assert len(versions) == 1, f"{text!r}: pin an exact version (==)"
        pins[canonicalize_name(requirement.name)] = versions[0]
    return pins


def binder_pins() -> dict[str, str]:
    """Return the top-level pins Binder installs: environment.yml installs the book's lock."""
    pip_sections = [d["pip"] for d in environment()["dependencies"] if isinstance(d, dict)]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    assert pip_sections[0] == [BINDER_INSTALLS], (
        f"environment.yml's pip section should only install requirements/book-lock.txt, "
        f"got {pip_sections[0]}"
    )
    return exact_pins(requirement_lines(BOOK_PINS))


def test_make_installs_the_book_pins_plus_tools() -> None:
    includes = [
        line.split()
        for line in DEV_PINS.read_text(encoding="utf-8").splitlines()
        if line.startswith("-r")
    ]
    assert includes == [["-r", "book.txt"]], "requirements/dev.txt must include book.txt once"
    tools = exact_pins(requirement_lines(DEV_PINS))
    overlap = sorted(set(tools) & set(binder_pins()))
    assert overlap == [], f"pinned in both requirements files (keep one place): {overlap}"
    assert KERNEL in binder_pins()
    assert MYST_RENDERER in binder_pins(), "Binder would show exercises as raw MyST"


def test_gradclinic_declares_ranges_that_admit_the_book_pins() -> None:
    project = pyproject()["project"]
    pins = binder_pins()
    declared = [Requirement(text) for text in project["dependencies"]]
    declared += [Requirement(t) for t in project["optional-dependencies"]["tensorflow"]]
    for requirement in declared:
        assert not any(s.operator == "==" for s in requirement.specifier), (
            f"{requirement}: a library declares a range, the book pins (requirements/book.txt)"
        )
        name = canonicalize_name(requirement.name)
        # The book installs the CPU build on Linux; the extra names the plain distribution.
        pinned = pins.get(name) or pins.get(f"{name}-cpu")
        assert pinned is not None, f"{requirement.name} is declared but the book pins no version"
        assert requirement.specifier.contains(pinned, prereleases=True), (
            f"the book pins {requirement.name} {pinned}, outside gradclinic's {requirement}"
        )


@cache
def requirement_closure(name: str) -> frozenset[str]:
    """Return a distribution and everything it requires on Linux, as installed here."""
    found = {canonicalize_name(name)}
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(LINUX):
            found |= requirement_closure(requirement.name)
    return frozenset(found)


@cache
def providers() -> dict[str, set[str]]:
    """Map an importable top-level module to the canonical names of the distributions shipping it."""
    return {
        module: {canonicalize_name(d) for d in dists}
        for module, dists in metadata.packages_distributions().items()
    }


def imported_modules(source: str) -> set[str]:
    """Return the top-level modules a piece of Python code imports (absolute imports only)."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def notebook_imports(path: Path) -> set[str]:
    """Return the top-level modules a notebook's code cells import."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    # IPython turns magics (`%pip install ...`) into the Python calls they stand for.
    as_python = TransformerManager().transform_cell
    return set().union(
        *(
            imported_modules(as_python("".join(c["source"])))
            for c in cells
            if c["cell_type"] == "code"
        )
    )


def module_imports() -> set[str]:
    """Return the third-party top-level modules the gradclinic package imports."""
    package = REPO / "code" / LOCAL_PACKAGE
    found = set().union(
        *(imported_modules(p.read_text(encoding="utf-8")) for p in package.rglob("*.py"))
    )
    return found - set(sys.stdlib_module_names) - {LOCAL_PACKAGE}


def distributions_for(modules: set[str]) -> set[str]:
    """Return the distributions providing third-party modules; fail on any nothing provides."""
    third_party = modules - set(sys.stdlib_module_names) - {LOCAL_PACKAGE}
    shipped = providers()
    missing = sorted(m for m in third_party if m not in shipped)
    assert missing == [], f"imported but installed by no distribution here: {missing}"
    return set().union(*(shipped[m] for m in third_party))


def test_binder_python_satisfies_requires_python() -> None:
    conda = [d for d in environment()["dependencies"] if isinstance(d, str)]
    pythons = [d.split("=", 1)[1] for d in conda if d.startswith("python=")]
    assert len(pythons) == 1, "environment.yml pins python=X.Y once"
    assert SpecifierSet(pyproject()["project"]["requires-python"]).contains(f"{pythons[0]}.0")


def test_binder_carries_nothing_the_notebooks_do_not_need() -> None:
    imported = set().union(*(notebook_imports(p) for p in NOTEBOOKS)) | module_imports()
    needed = set().union(*(requirement_closure(d) for d in distributions_for(imported)))
    unneeded = sorted(set(binder_pins()) - needed - {KERNEL, MYST_RENDERER})
    assert unneeded == [], (
        f"environment.yml pins what no notebook or gradclinic imports: {unneeded}"
    )


def test_gradclinic_imports_are_in_binder() -> None:
    available = set().union(*(requirement_closure(name) for name in binder_pins()))
    assert distributions_for(module_imports()) <= available


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_are_in_binder(notebook: Path) -> None:
    available = set().union(*(requirement_closure(name) for name in binder_pins()))
    needed = distributions_for(notebook_imports(notebook))
    assert needed <= available, f"{notebook.name} imports from {sorted(needed - available)}"


def test_post_build_installs_gradclinic_without_resolving_dependencies() -> None:
    post_build = REPO / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable for repo2docker"
    commands = [
        line.split()
        for line in post_build.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    installs = [c for c in commands if "install" in c]
    assert installs, "postBuild installs nothing"
    for install in installs:
        assert "--no-deps" in install, f"{' '.join(install)}: would resolve unpinned dependencies"
        assert install[-1] == ".", f"{' '.join(install)}: should install this repository"
