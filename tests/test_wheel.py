"""The wheel works outside the repository: it carries the bundled data and checks it.

The wheel is built offline from a copy of the files a build needs (pyproject.toml,
setup.py, README.md, course_lib/, data/), installed with ``pip install --target`` into
a temporary folder, and used from another temporary folder by a fresh Python whose
``PYTHONPATH`` is only that folder: ``course_lib`` and its data come from the wheel,
the dependencies (TensorFlow, NumPy, ...) from the virtual environment.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from course_lib.data import BUNDLED_SHA256

REPO = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "course_lib", "data")
TIMEOUT = 600


def _pip(*args, cwd):
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """Path of a wheel built offline (no index, no build isolation) from a copy of the sources."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(source),
         cwd=root)
    (built,) = (root / "dist").glob("course_lib-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A folder holding the installed wheel (``pip install --target``)."""
    target = tmp_path_factory.mktemp("installed")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=target)
    return target


def run_outside(code_or_args, pythonpath, tmp_path):
    """Run Python in an empty folder outside the repository with only ``pythonpath`` added."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(pythonpath), TF_CPP_MIN_LOG_LEVEL="2")
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


LOAD = """
import json
import course_lib
import course_lib.data as data

checked = []
original = data.sha256_of
def counting_sha256_of(path):
    checked.append(str(path))
    return original(path)
data.sha256_of = counting_sha256_of

images, labels, info = data.load_dataset("mnist", "test", source="bundled", return_info=True)
print(json.dumps({
    "package": course_lib.__file__, "location": info.location, "source": info.source,
    "shape": list(images.shape), "classes": sorted(set(labels.tolist())), "checked": checked,
}))
"""


def test_wheel_holds_the_package_and_the_bundled_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for file_name in BUNDLED_SHA256:
        assert f"course_lib/_bundled/{file_name}" in names
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "course_lib").rglob("*.py")
               if "__pycache__" not in path.parts}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert not any(name.startswith("data/") for name in names), "data/ must not land at the top of site-packages"


def test_installed_wheel_loads_and_checks_bundled_data_outside_the_repository(installed, tmp_path):
    result = run_outside(LOAD, installed, tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(installed), "course_lib did not come from the wheel"
    expected = installed / "course_lib" / "_bundled" / "mnist_test.npz"
    assert Path(found["location"]) == expected
    assert found["source"] == "bundled"
    assert found["shape"] == [10_000, 28, 28]
    assert found["classes"] == list(range(10))
    assert [Path(path) for path in found["checked"]] == [expected], "the sha256 check did not run"


def test_installed_wheel_refuses_a_modified_data_file(installed, tmp_path):
    copy = tmp_path / "installed"
    shutil.copytree(installed, copy)
    path = copy / "course_lib" / "_bundled" / "mnist_test.npz"
    content = bytearray(path.read_bytes())
    content[-100] ^= 0xFF
    path.write_bytes(bytes(content))
    result = run_outside(LOAD, copy, tmp_path)
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "corrupt or modified" in result.stderr
    assert str(path) in result.stderr


@pytest.mark.slow
def test_installed_wheel_trains_from_the_command_line_in_any_folder(installed, tmp_path):
    out = tmp_path / "run"
    result = run_outside(
        ["-m", "course_lib", "train", "--dataset", "mnist", "--source", "bundled", "--epochs", "1",
         "--steps-per-epoch", "5", "--eval-limit", "500", "--out", str(out)],
        installed, tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert str(installed / "course_lib" / "_bundled" / "mnist_train.npz") in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics, "metrics.json is empty"
    assert (out / "model.keras").is_file()
