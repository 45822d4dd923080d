"""Package layout that pyproject.toml cannot express: ``data/`` ships as ``course_lib/_bundled/``.

The bundled subsets stay at the top of the repository (``data/``, the source of the
build); a wheel carries them inside the package, where ``course_lib.data`` looks
first. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["course_lib", "course_lib.*"]) + ["course_lib._bundled"],
    package_dir={"course_lib._bundled": "data"},
    package_data={"course_lib._bundled": ["*.npz", "README.md"]},
)
