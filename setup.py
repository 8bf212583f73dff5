"""Package discovery; the metadata and dependencies are in setup.cfg.

The repository has three import roots, two of them in folders under another name (export/ is
limuse_export, runtime/ is limuse_runtime). setup.cfg's `packages = find:` discovers packages by folder
name, so it cannot map those; here every tree is discovered and mapped, so a new subpackage
(limuse_edge/train was once left out of a hand-written list) always reaches the wheel.
"""
from setuptools import find_packages, setup

ROOTS = {"limuse_edge": "limuse_edge", "limuse_export": "export", "limuse_runtime": "runtime"}


def discovered_packages() -> list[str]:
    return [package for name, folder in ROOTS.items()
            for package in [name] + [f"{name}.{sub}" for sub in find_packages(folder)]]


if __name__ == "__main__":
    setup(packages=discovered_packages(), package_dir={name: folder for name, folder in ROOTS.items() if name != folder})
