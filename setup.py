"""Package discovery; the metadata and dependencies are in setup.cfg.

The repository has three import roots, two of them in folders under another name (export/ is
limuse_export, runtime/ is limuse_runtime). setup.cfg's `packages = find:` discovers packages by folder
name, so it cannot map those; here every tree is discovered and mapped, so a new subpackage
(limuse_edge/train was once left out of a hand-written list) always reaches the wheel.
"""
import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOTS = {"limuse_edge": "limuse_edge", "limuse_export": "export", "limuse_runtime": "runtime"}


def discovered_packages() -> list[str]:
    return [package for name, folder in ROOTS.items()
            for package in [name] + [f"{name}.{sub}" for sub in find_packages(folder)]]


def native_engine_build_py() -> type:
    """build_py that also compiles the native engine, as `pip install ./runtime` does (runtime/native/build.py:
    stdlib only, loaded by path since the packages are not importable before they are installed)."""
    spec = importlib.util.spec_from_file_location("native_build", Path(__file__).resolve().parent / "runtime" / "native" / "build.py")
    native_build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(native_build)
    return native_build.with_native_engine(build_py)


if __name__ == "__main__":
    setup(packages=discovered_packages(), package_dir={name: folder for name, folder in ROOTS.items() if name != folder},
          cmdclass={"build_py": native_engine_build_py()})
