"""The lock files the image installs from (deploy/*.lock) agree with pyproject.toml.

The Dockerfile installs each lock with `pip install --require-hashes --no-deps`, so a lock that
lacks a dependency, pins a version pyproject.toml excludes, or has a line without a hash
breaks the image build or, worse, the daemon at run time. No network here: these are checks
of the files' text.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
RUNTIME_LOCK = DEPLOY / "requirements.lock"
SUPERVISOR_LOCK = DEPLOY / "supervisor.lock"
BUILD_LOCK = DEPLOY / "build.lock"
LOCKS = (RUNTIME_LOCK, SUPERVISOR_LOCK, BUILD_LOCK)
# The image: Amazon Linux 2023's python3.11 on Linux, x86_64 or aarch64.
TARGETS = [{"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
            "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "platform_machine": machine}
           for machine in ("x86_64", "aarch64")]


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: Version
    marker: Marker | None
    hashes: tuple[str, ...]


def read_lock(path: Path) -> dict[str, list[Pin]]:
    """Pins by canonical name (a name may appear once per marker)."""
    pins: dict[str, list[Pin]] = {}
    logical = re.sub(r"\\\n", " ", path.read_text())
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        hashes = tuple(w.removeprefix("--hash=") for w in words if w.startswith("--hash="))
        rest = [w for w in words if not w.startswith("--hash=")]
        assert all(not w.startswith("-") for w in rest), f"{path.name}: option in {line!r}"
        requirement = Requirement(" ".join(rest))
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", \
            f"{path.name}: {requirement.name} is not pinned with =="
        specifier = specifiers[0]
        assert requirement.url is None and not requirement.extras, line
        pin = Pin(canonicalize_name(requirement.name), Version(specifier.version),
                  requirement.marker, hashes)
        pins.setdefault(pin.name, []).append(pin)
    return pins


def pin_for(pins: dict[str, list[Pin]], name: str, target: dict[str, str]) -> Pin | None:
    """The pin that applies on `target`, if any."""
    applying = [p for p in pins.get(canonicalize_name(name), [])
                if p.marker is None or p.marker.evaluate(target)]
    assert len(applying) <= 1, f"{name}: several pins apply on {target['platform_machine']}"
    return applying[0] if applying else None


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements(section: list[str]) -> list[Requirement]:
    return [Requirement(spec) for spec in section]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    pins = read_lock(lock)
    assert pins, f"{lock.name} pins nothing"
    for versions in pins.values():
        for pin in versions:
            assert pin.hashes, f"{lock.name}: {pin.name} has no --hash"
            for digest in pin.hashes:
                assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), (pin.name, digest)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t["platform_machine"])
def test_runtime_dependencies_are_locked_at_allowed_versions(target: dict[str, str]) -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    pins = read_lock(RUNTIME_LOCK)
    dependencies = requirements(project["dependencies"])
    assert {canonicalize_name(r.name) for r in dependencies} == {
        "boto3", "jinja2", "requests", "tenacity", "structlog"}
    for requirement in dependencies:
        if requirement.marker is not None and not requirement.marker.evaluate(target):
            continue
        pin = pin_for(pins, requirement.name, target)
        assert pin is not None, f"{requirement.name} is not in {RUNTIME_LOCK.name}"
        assert requirement.specifier.contains(pin.version, prereleases=True), \
            f"{requirement.name}=={pin.version} does not satisfy {requirement.specifier}"


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t["platform_machine"])
def test_runtime_lock_is_closed_under_dependencies(target: dict[str, str]) -> None:
    """Every dependency of a locked package is locked too (--no-deps installs nothing else).

    The dependency lists come from the packages installed in the test venv, for those whose
    installed version is the locked one (the venv and the lock come from the same index, so
    usually all of them); the others cannot be checked offline.
    """
    pins = read_lock(RUNTIME_LOCK)
    checked = []
    for versions in pins.values():
        for pin in versions:
            try:
                installed = metadata.distribution(pin.name)
            except metadata.PackageNotFoundError:
                continue
            if Version(installed.version) != pin.version:
                continue
            checked.append(pin.name)
            for spec in installed.requires or []:
                requirement = Requirement(spec)
                if requirement.marker is not None and not requirement.marker.evaluate(
                        {**target, "extra": ""}):
                    continue
                locked = pin_for(pins, requirement.name, target)
                assert locked is not None, f"{pin.name} needs {requirement}: not locked"
                assert requirement.specifier.contains(locked.version, prereleases=True), \
                    f"{pin.name} needs {requirement}, the lock has {locked.version}"
    if not checked:
        pytest.skip("no locked version is installed in this venv: nothing to check offline")


def test_supervisor_is_locked_with_hashes_and_satisfies_the_tests() -> None:
    """The supervisord the image runs is one the test extras accept (the tests run it)."""
    pins = read_lock(SUPERVISOR_LOCK)
    assert set(pins) == {"supervisor"}
    [pin] = pins["supervisor"]
    assert pin.hashes
    project = pyproject()["project"]
    assert isinstance(project, dict)
    [tested] = [r for r in requirements(project["optional-dependencies"]["test"])
                if canonicalize_name(r.name) == "supervisor"]
    assert tested.specifier.contains(pin.version)


def test_build_lock_satisfies_the_build_system() -> None:
    build_system = pyproject()["build-system"]
    assert isinstance(build_system, dict)
    pins = read_lock(BUILD_LOCK)
    for requirement in requirements(build_system["requires"]):
        pin = pin_for(pins, requirement.name, TARGETS[0])
        assert pin is not None and requirement.specifier.contains(pin.version), requirement


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_header_says_how_to_regenerate(lock: Path) -> None:
    """The first lines carry the exact command, run from the repository root, for Python 3.11
    on every platform (--universal), so the lock can be remade without the Makefile."""
    header = "\n".join(lock.read_text().splitlines()[:3])
    match = re.search(r"^#\s+(uv pip compile .*)$", header, re.MULTILINE)
    assert match is not None, header
    argv = shlex.split(match.group(1))
    source = REPO / argv[3]
    assert source.is_file(), argv[3]
    for flag in ("--universal", "--generate-hashes"):
        assert flag in argv
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert REPO / argv[argv.index("-o") + 1] == lock
