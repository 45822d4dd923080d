"""Lessons are stored clean: no outputs, no execution counts, the standard kernel.

Outputs would go stale as the library changes and bloat diffs; learners run
the cells themselves, and nbval runs them in CI.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_course_has_lessons():
    assert len(NOTEBOOKS) >= 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    with_outputs = [i for i, c in enumerate(code) if c.get("outputs")]
    counted = [i for i, c in enumerate(code) if c.get("execution_count") is not None]
    assert not with_outputs, f"{path.name}: code cells {with_outputs} have stored outputs; clear them"
    assert not counted, f"{path.name}: code cells {counted} have execution counts; clear them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_python3_kernel_and_checks_itself(path):
    notebook = json.loads(path.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    sources = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    assert any("assert " in s for s in sources), f"{path.name} has no assert self-check"
    assert any("course_lib" in s for s in sources), f"{path.name} does not use course_lib"
