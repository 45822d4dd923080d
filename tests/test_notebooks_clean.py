"""Lessons are stored clean: no outputs, no execution counts, the standard kernel,
and the cells that exist only for CI kept out of the learner's way.

Outputs would go stale as the library changes and bloat diffs; learners run
the cells themselves, and nbval runs them in CI.

These tests read what is **committed** (``git show HEAD:notebooks/X.ipynb``),
not the working copy: a learner who plays with a lesson and lets JupyterLab
autosave it (outputs, execution counts, filled-in exercises) must not break
``make test``. ``make reset-lessons`` puts the committed lessons back. Outside
a git checkout (a source archive) the files on disk are read instead.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

#: A code cell that moves a widget from code: it must be a collapsed ci-check cell.
SETS_CONTROL = re.compile(r"\.controls\[[^\]]+\]\.value\s*=(?!=)")


def committed_text(path: Path, repo: Path = REPO) -> str:
    """The notebook as committed in HEAD; the working copy when there is no git history for it."""
    relative = path.relative_to(repo).as_posix()
    try:
        result = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{relative}"],
                                capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return path.read_text(encoding="utf-8")
    return result.stdout if result.returncode == 0 else path.read_text(encoding="utf-8")


def load(path: Path) -> dict:
    return json.loads(committed_text(path))


def code_cells(notebook: dict) -> list[dict]:
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def is_hidden(cell: dict) -> bool:
    return cell.get("metadata", {}).get("jupyter", {}).get("source_hidden") is True


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_the_course_has_lessons():
    assert len(NOTEBOOKS) >= 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    code = code_cells(load(path))
    with_outputs = [i for i, c in enumerate(code) if c.get("outputs")]
    counted = [i for i, c in enumerate(code) if c.get("execution_count") is not None]
    assert not with_outputs, f"{path.name}: code cells {with_outputs} have stored outputs; clear them"
    assert not counted, f"{path.name}: code cells {counted} have execution counts; clear them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_python3_kernel_and_checks_itself(path):
    notebook = load(path)
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    sources = [source(c) for c in code_cells(notebook)]
    assert any("assert " in s for s in sources), f"{path.name} has no assert self-check"
    assert any("course_lib" in s for s in sources), f"{path.name} does not use course_lib"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_that_move_widgets_are_collapsed_ci_checks(path):
    """A cell that sets ``.controls[...].value`` exists for CI: tag ``ci-check``, source hidden."""
    offenders = [f"cell {i} ({c.get('id')}): {SETS_CONTROL.search(source(c)).group(0)!r}"
                 for i, c in enumerate(load(path)["cells"])
                 if c["cell_type"] == "code" and SETS_CONTROL.search(source(c))
                 and not ("ci-check" in tags(c) and is_hidden(c))]
    assert not offenders, (
        f"{path.name}: these cells move a widget from code but are not collapsed CI checks "
        '(cell metadata {"tags": ["ci-check"], "jupyter": {"source_hidden": true}}): ' + "; ".join(offenders))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ci_checks_and_solutions_are_collapsed(path):
    """ci-check and solution cells are stored with their source hidden."""
    visible = [f"cell {i} ({c.get('id')}, {'/'.join(tags(c))})"
               for i, c in enumerate(load(path)["cells"])
               if {"ci-check", "solution"} & set(tags(c)) and not is_hidden(c)]
    assert not visible, (f"{path.name}: ci-check / solution cells stored expanded; add "
                         '"jupyter": {"source_hidden": true} to their metadata: ' + ", ".join(visible))


def test_the_control_pattern_catches_what_it_should():
    """The regex the widget test relies on: assignments yes, comparisons and reads no."""
    assert SETS_CONTROL.search('explorer.controls["mining"].value = "hard"')
    assert SETS_CONTROL.search("w.controls['k'].value=3")
    assert not SETS_CONTROL.search('assert w.controls["k"].value == 3')
    assert not SETS_CONTROL.search('print(w.controls["k"].value)')


def test_committed_version_is_what_is_checked(tmp_path):
    """In the checkout HEAD's version is read; outside git, the working copy."""
    first = NOTEBOOKS[0]
    head = subprocess.run(["git", "-C", str(REPO), "show", f"HEAD:notebooks/{first.name}"],
                          capture_output=True, text=True, check=False)
    if head.returncode == 0:
        assert committed_text(first) == head.stdout
    (tmp_path / "notebooks").mkdir()
    loose = tmp_path / "notebooks" / "lesson.ipynb"
    loose.write_text('{"cells": []}', encoding="utf-8")
    assert committed_text(loose, repo=tmp_path) == '{"cells": []}'


def test_nbval_ignores_stored_outputs():
    """nbval runs the lessons in lax mode: a learner's saved outputs are never compared."""
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    addopts = re.search(r'^addopts\s*=\s*"([^"]*)"', pyproject, re.MULTILINE)
    assert addopts and "--nbval-lax" in addopts.group(1).split(), (
        "pytest's addopts must keep --nbval-lax, or stale outputs in a learner's copy fail nbval")
