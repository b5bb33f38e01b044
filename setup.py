"""Build hook: every wheel carries the top-level ``resources/`` as ``studio/resources``.

The repository keeps ``resources/`` at its top level (the design card's layout); the wheel
maps it into the package as ``studio.resources`` package data, so an installed studio reads
it with ``importlib.resources`` (``studio.paths.resources_dir``). Everything else about the
build lives in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["studio", "studio.*"]), "studio.resources"],
    package_dir={"studio.resources": "resources"},
)
