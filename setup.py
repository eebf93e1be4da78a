"""The package layout that pyproject.toml cannot say: the top-level configs/ folder (the one copy of
the shipped configs in the repository) goes into the wheel as mser/configs/."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mser", "mser.*"]) + ["mser.configs"],
    package_dir={"mser.configs": "configs"},
    package_data={"mser.configs": ["*.yml", "*.txt"]},
)
