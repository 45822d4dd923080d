"""environment.yml installs exactly what ``make install`` installs (no conda channel here to try it).

``make install`` runs ``pip install -c constraints.txt -e ".[lessons,test]"``. The conda
environment must come down to the same command: conda itself provides only Python and
pip, and its pip section names the same constraints file and the same extras. Then both
install the same set of packages at the same versions provided constraints.txt pins the
whole dependency closure of pyproject.toml (every package those extras pull in, and
nothing else), each pin within pyproject's own bounds; the tests below check all of it.
"""

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
ENVIRONMENT = yaml.safe_load((REPO / "environment.yml").read_text())


def constraint_pins():
    """``{canonical name: version}`` from constraints.txt; every line must be ``name==version``."""
    pins = {}
    for number, line in enumerate((REPO / "constraints.txt").read_text().splitlines(), start=1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"constraints.txt line {number} is not an exact pin name==version: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt pins {match[1]} twice"
        pins[name] = match[2]
    return pins


def makefile_extras():
    """The extras of the Makefile's install command, e.g. ``{"lessons", "test"}``."""
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"pip install .*-c constraints\.txt -e \"?\.\[([a-z,_-]+)\]\"?", makefile)
    assert match, "the Makefile's install command (pip install -c constraints.txt -e .[...]) was not found"
    return set(match[1].split(","))


def environment_parts():
    """``(conda dependencies other than the pip section, pip section lines)`` of environment.yml."""
    conda, pip = [], None
    for entry in ENVIRONMENT["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"unexpected section in environment.yml: {entry}"
            pip = entry["pip"]
        else:
            conda.append(entry)
    assert pip is not None, "environment.yml has no pip section"
    return conda, pip


def project_requirements(extras):
    requirements = list(PROJECT["dependencies"])
    for extra in sorted(extras):
        requirements += PROJECT["optional-dependencies"][extra]
    return [Requirement(text) for text in requirements]


def dependency_closure(requirements):
    """Canonical names of every distribution the requirements pull in (installed metadata)."""
    seen, todo = set(), [(requirement, frozenset(requirement.extras)) for requirement in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is required but not installed: run `make install`")
        for text in distribution.requires or []:
            child = Requirement(text)
            wanted = child.marker is None or any(child.marker.evaluate({"extra": extra})
                                                 for extra in (extras or {""}))
            if wanted:
                todo.append((child, frozenset(child.extras)))
    return {name for name, _ in seen}


def test_conda_provides_only_python_and_pip():
    conda, _ = environment_parts()
    names = {re.split(r"[=<>! ]", entry, maxsplit=1)[0] for entry in conda}
    assert names == {"python", "pip"}, (
        f"environment.yml installs {sorted(names - {'python', 'pip'})} with conda: those would not "
        f"follow constraints.txt; list them in pyproject.toml instead"
    )
    (python,) = [entry for entry in conda if entry.startswith("python")]
    version = python.split("=", 1)[1].lstrip("=")
    assert Version(version) in SpecifierSet(PROJECT["requires-python"]), (
        f"environment.yml asks for {python}, pyproject.toml requires Python {PROJECT['requires-python']}"
    )


def test_pip_section_is_the_makefile_install_command():
    _, pip = environment_parts()
    lines = [" ".join(line.split()) for line in pip]
    assert "-c constraints.txt" in lines, "environment.yml's pip section must use -c constraints.txt"
    assert (REPO / "constraints.txt").is_file()
    installs = [line for line in lines if line != "-c constraints.txt"]
    assert len(installs) == 1, f"environment.yml's pip section installs more than the project: {installs}"
    match = re.fullmatch(r"-e \.\[([a-z,_-]+)\]", installs[0])
    assert match, f"expected -e .[extras], got {installs[0]!r}"
    assert set(match[1].split(",")) == makefile_extras(), "environment.yml and the Makefile install different extras"
    assert set(match[1].split(",")) <= set(PROJECT["optional-dependencies"])


def test_constraints_pin_exactly_the_dependency_closure():
    pins = constraint_pins()
    closure = dependency_closure(project_requirements(makefile_extras()))
    assert not closure - set(pins), f"needed but not pinned in constraints.txt: {sorted(closure - set(pins))}"
    assert not set(pins) - closure, f"pinned but not needed by pyproject.toml: {sorted(set(pins) - closure)}"


def test_pins_satisfy_pyproject_bounds():
    pins = constraint_pins()
    for requirement in project_requirements(set(PROJECT["optional-dependencies"])):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} (pyproject.toml) has no pin in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {requirement.name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_this_environment_has_the_pinned_versions():
    """The environment the tests run in (``make install``) is what environment.yml reproduces."""
    wrong = {}
    for name, version in constraint_pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = (version, "not installed")
            continue
        if Version(installed) != Version(version):
            wrong[name] = (version, installed)
    assert not wrong, f"pinned vs installed (run `make install`): {wrong}"
    assert sys.version_info[:2] >= (3, 11)
